# CPU/GPU image of the pipeline. The torch wheel pinned in requirements.txt is a CUDA build:
# run with `--gpus all` on a host with the NVIDIA container toolkit, or without it on the CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DVC_NO_ANALYTICS=1 \
    DVC_SITE_CACHE_DIR=/tmp/dvc-site

RUN apt-get update \
    && apt-get install -y --no-install-recommends git libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 deepfake
WORKDIR /workspace

COPY requirements.txt pyproject.toml README.md ./
COPY src ./src
RUN pip install -r requirements.txt && pip install --no-deps -e .

COPY --chown=deepfake:deepfake . .
USER deepfake
CMD ["deepfake", "--help"]
