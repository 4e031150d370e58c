"""``deepfake serve``: the verdict service (FastAPI + uvicorn), its job store, worker pool and page."""
