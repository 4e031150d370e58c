"""A running Triton server (``--url``: HTTP host:8000 or grpc://host:8001) serving ``models/triton``."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfake.backends.base import Backend
from deepfake.core.errors import ParamsError, ToolchainError
from deepfake.modeling.store import INPUT_NAME, ModelStore


class TritonBackend(Backend):
    name = "triton"

    def __init__(self, store: ModelStore, url: str) -> None:
        grpc = url.startswith("grpc://")
        try:
            if grpc:
                import tritonclient.grpc as client_module
            else:
                import tritonclient.http as client_module
        except (ImportError, RuntimeError) as err:  # tritonclient raises RuntimeError for a missing extra
            raise ToolchainError(f"tritonclient is not installed ({err}); pip install -r requirements.txt") from err
        address = url.removeprefix("grpc://").removeprefix("http://")
        self.module = client_module
        self.client = client_module.InferenceServerClient(url=address)
        try:
            live = self.client.is_server_live()
        except Exception as err:  # connection refused, DNS, timeouts: all mean "no server there"
            raise ToolchainError(f"no Triton server answers at {url}: {err}") from err
        if not live:
            raise ToolchainError(f"the Triton server at {url} is not live")
        manifest = store.read_manifest("onnx")
        self.members = [m["name"] for m in manifest["members"]]
        self.face_input = store.face_input("onnx")
        for member in self.members:
            if not self.client.is_model_ready(member):
                raise ToolchainError(
                    f"the Triton server at {url} has no ready model {member!r} ({store.folder('triton')})"
                )

    @classmethod
    def create(cls, store: ModelStore, params: Any, url: str | None = None) -> TritonBackend:
        if not url:
            raise ParamsError("the triton backend needs --url (host:8000, or grpc://host:8001)")
        return cls(store, url)

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for member in self.members:
            request = self.module.InferInput(INPUT_NAME, list(images.shape), "FP32")
            request.set_data_from_numpy(images)
            result = self.client.infer(member, [request], outputs=[self.module.InferRequestedOutput("logit")])
            out[member] = result.as_numpy("logit").reshape(-1)
        return out
