"""A model package checked before any video is read, so a damaged or inconsistent one stops with one line
naming the file and what is wrong (never a traceback from a runtime half-way into a batch).

Shared by ``deepfake predict``, ``explain`` and ``serve``. The manifest's own checks (format, plain member
file names: nothing outside the package, the input contract) are ``modeling.store.read_manifest_in``'s;
here every member file the backend will load is checked to be there, to parse as an ONNX model, and to
take the input size the manifest promises. What only loading can tell (a runtime's own limits) is the
backend's to say.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf.message import DecodeError

from deepfake.core.errors import InputError
from deepfake.modeling.io_names import INPUT_NAME
from deepfake.modeling.store import ModelStore

# the manifest a backend loads its members from; the others (torch, tensorrt, vart) are checked by their loaders
MANIFEST_OF_BACKEND = {"onnx": "onnx", "onnx-int8": "onnx-int8", "triton": "onnx"}


def check_package(models: Path, backend: str) -> None:
    """Raise InputError naming the first member file of ``models`` that ``backend`` could not use."""
    fmt = MANIFEST_OF_BACKEND.get(backend)
    if fmt is None:
        return
    store = ModelStore(models)
    manifest = store.read_manifest(fmt)
    size = store.face_input(fmt).image_size
    for member in manifest["members"]:
        check_onnx_member(store.folder(fmt) / member["file"], member["name"], size)


def check_onnx_member(path: Path, name: str, image_size: int) -> None:
    """One member's ONNX file: present, a model, with the project's input at ``image_size`` px."""
    import onnx

    if not path.is_file():
        raise InputError(f"{path}: member {name!r} of the package is missing")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: member {name!r} of the package is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except DecodeError as err:
        raise InputError(f"{path}: member {name!r} is not an ONNX model (truncated or another file: {err})") from err
    inputs = {i.name: i for i in model.graph.input}
    if INPUT_NAME not in inputs:
        found = ", ".join(inputs) or "none"
        raise InputError(f"{path}: member {name!r} has no input {INPUT_NAME!r} (inputs: {found}); not this project's")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[INPUT_NAME].type.tensor_type.shape.dim]
    wanted = (3, image_size, image_size)
    if len(dims) != 4 or any(d is not None and d != w for d, w in zip(dims[1:], wanted, strict=True)):
        shape = "x".join("?" if d is None else str(d) for d in dims)
        raise InputError(
            f"{path}: member {name!r} takes input {shape} but the manifest says 3x{image_size}x{image_size}; "
            "the package is inconsistent (export it again)"
        )
