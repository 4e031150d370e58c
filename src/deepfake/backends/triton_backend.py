"""A running Triton server (``--url``: HTTP host:8000 or grpc://host:8001) serving ``models/triton``.

A batch larger than a model's ``max_batch_size`` (read from the server's config of that model) is
sent in chunks of at most that size: Triton refuses a request whose batch exceeds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfake.backends.base import Backend
from deepfake.core.errors import ParamsError, ToolchainError
from deepfake.core.params import Params
from deepfake.modeling.store import INPUT_NAME, LOGIT, ModelStore


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
        self.url = url
        self.members = [m["name"] for m in manifest["members"]]
        self.face_input = store.face_input("onnx")
        self.max_batch = {}  # member -> the server's max_batch_size for it (0: no limit known)
        for member in self.members:
            if not self.client.is_model_ready(member):
                raise ToolchainError(
                    f"the Triton server at {url} has no ready model {member!r} ({store.folder('triton')})"
                )
            self.max_batch[member] = max_batch_size(self.client, member, grpc)

    @classmethod
    def create(cls, store: ModelStore, params: Params, url: str | None = None) -> TritonBackend:
        if not url:
            raise ParamsError("the triton backend needs --url (host:8000, or grpc://host:8001)")
        return cls(store, url)

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for member in self.members:
            step = self.max_batch[member] or len(images)
            parts = [self._infer(member, images[i : i + step]) for i in range(0, len(images), max(step, 1))]
            out[member] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return out

    def _infer(self, member: str, images: np.ndarray) -> np.ndarray:
        request = self.module.InferInput(INPUT_NAME, list(images.shape), "FP32")
        request.set_data_from_numpy(images)
        try:
            result = self.client.infer(member, [request], outputs=[self.module.InferRequestedOutput(LOGIT)])
        except self.module.InferenceServerException as err:
            raise ToolchainError(f"the Triton server at {self.url} failed on model {member!r}: {err}") from err
        return result.as_numpy(LOGIT).reshape(-1)


def max_batch_size(client: Any, member: str, grpc: bool) -> int:
    """The ``max_batch_size`` of the server's config for ``member`` (0 when it has none)."""
    config = client.get_model_config(member, as_json=True) if grpc else client.get_model_config(member)
    config = config.get("config", config)  # gRPC's JSON wraps the config; HTTP's is the config
    return int(config.get("max_batch_size", 0))  # protobuf JSON leaves a 0 out
