"""DPU xmodels (``models/dpu/<member>.xmodel``) on a VCK5000 with Vitis AI's VART runtime.

Written against VART's Python API (xir.Graph, vart.Runner); it needs the Vitis AI runtime and the
card, and has not been run on the machines this project is built on.
"""

from __future__ import annotations

import numpy as np

from deepfake.backends.base import Backend
from deepfake.core.errors import InputError, ToolchainError
from deepfake.core.params import Params
from deepfake.media.face_input import FaceInput
from deepfake.modeling.store import ModelStore, ensemble, params_face_input


class VartBackend(Backend):
    name = "vart"

    def __init__(self, store: ModelStore, member_names: list[str], face_input: FaceInput) -> None:
        try:
            import vart
            import xir
        except ImportError as err:
            raise ToolchainError(
                f"VART is not installed ({err}): run inside the Vitis AI runtime on a VCK5000"
            ) from err
        self.face_input = face_input
        self.runners = {}
        for name in member_names:
            path = store.graph(name, "xmodel")
            if not path.is_file():
                raise InputError(f"{path}: no xmodel; run `dvc repro {store.stage('xmodel')}`")
            graph = xir.Graph.deserialize(str(path))
            subgraphs = [
                s
                for s in graph.get_root_subgraph().toposort_child_subgraph()
                if s.has_attr("device") and s.get_attr("device").upper() == "DPU"
            ]
            if len(subgraphs) != 1:
                raise InputError(f"{path}: expected one DPU subgraph, found {len(subgraphs)}")
            self.runners[name] = vart.Runner.create_runner(subgraphs[0], "run")
        self.members = list(self.runners)

    @classmethod
    def create(cls, store: ModelStore, params: Params, url: str | None = None) -> VartBackend:
        names = [m.name for m in ensemble(params)]
        return cls(store, names, params_face_input(params))

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # the DPU takes NHWC
        for name, runner in self.runners.items():
            tensor_in, tensor_out = runner.get_input_tensors()[0], runner.get_output_tensors()[0]
            batch = int(tensor_in.dims[0])
            scale_in = 2.0 ** tensor_in.get_attr("fix_point")
            scale_out = 2.0 ** -tensor_out.get_attr("fix_point")
            values = []
            for start in range(0, len(nhwc), batch):
                chunk = nhwc[start : start + batch]
                data_in = np.zeros(tuple(tensor_in.dims), np.int8)
                data_in[: len(chunk)] = np.clip(np.round(chunk * scale_in), -128, 127)
                data_out = np.zeros(tuple(tensor_out.dims), np.int8)
                runner.wait(runner.execute_async([data_in], [data_out]))
                values.append(data_out[: len(chunk)].reshape(len(chunk), -1)[:, 0].astype(np.float32) * scale_out)
            out[name] = np.concatenate(values)
        return out
