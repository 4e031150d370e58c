"""A real Triton Inference Server for tests: the ``tritonserver`` binary that ``nvidia-pytriton`` ships.

pytriton's wheel carries Triton (2.51) with its Python backend only, so the exported ensemble is
served as Python-backend models that wrap ONNX Runtime: one model per member, with the names,
inputs, outputs, dims, ``max_batch_size`` and dynamic batching of the configs the triton stage
writes (``deepfake.stages.triton``); only ``platform: onnxruntime_onnx`` becomes ``backend: python``.

Install (nvidia-pytriton 0.7.0 declares numpy<2, which the binary and the stub do not need):
``pip install --no-deps nvidia-pytriton==0.7.0``. Its Python-backend stub embeds an old pybind11
whose numpy bridge (``Tensor.as_numpy``, ``Tensor(name, array)``) misreads numpy 2's dtype layout
(inputs arrive as garbage, outputs with a wrong byte size), so the model moves tensors through
DLPack (``np.from_dlpack``, ``Tensor.from_dlpack``), which is exact.

``running_triton(models_dir, tmp)`` serves a models/ folder on 127.0.0.1 and yields its URLs;
``triton_unavailable_reason()`` says why the binary cannot run here (for ``pytest.skip``), or None.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from deepfake.modeling.store import ModelStore
from deepfake.stages import triton

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
INSTALL = "pip install --no-deps nvidia-pytriton==0.7.0"
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 20.0

# The Python-backend model: the member's ONNX graph (next to this file) on ONNX Runtime's CPU
# provider. The dynamic batcher hands execute() several requests: they run as one batch.
MODEL_PY = '''\
"""Triton Python-backend model: model.onnx beside this file on ONNX Runtime (tests/triton_live.py)."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        path = Path(__file__).with_name("model.onnx")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        try:
            return self._execute(requests)
        except Exception as err:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(repr(err))) for _ in requests]

    def _execute(self, requests):
        # DLPack, not as_numpy()/Tensor(name, array): this stub's pybind11 misreads numpy 2 arrays
        feeds = [{n: np.from_dlpack(pb_utils.get_input_tensor_by_name(r, n)) for n in self.inputs} for r in requests]
        sizes = [len(feed[self.inputs[0]]) for feed in feeds]
        wanted = [set(r.requested_output_names()) or set(self.outputs) for r in requests]
        names = [n for n in self.outputs if any(n in w for w in wanted)]
        batch = {n: np.concatenate([feed[n] for feed in feeds]) for n in self.inputs}
        results = dict(zip(names, self.session.run(names, batch)))
        responses, start = [], 0
        for size, want in zip(sizes, wanted):
            tensors = [
                pb_utils.Tensor.from_dlpack(n, np.ascontiguousarray(results[n][start : start + size]))
                for n in names
                if n in want
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
'''


class TritonStartError(RuntimeError):
    """tritonserver did not become ready; the message ends with its log's tail."""


@dataclass(frozen=True)
class TritonUrls:
    http: str  # "127.0.0.1:PORT", the backend's and tritonclient.http's form
    grpc: str  # "grpc://127.0.0.1:PORT"
    models: tuple[str, ...]  # the model names served
    log: Path  # the server's stdout and stderr


@dataclass(frozen=True)
class _Dist:
    """Where nvidia-pytriton's pieces lie (nothing here imports pytriton itself: it pins numpy<2)."""

    binary: Path
    backend: Path  # backends/python: libtriton_python.so, triton_python_backend_utils.py
    stub: Path  # the Python backend stub for this interpreter's version
    libs: Path  # the wheel's bundled shared libraries

    @classmethod
    def find(cls) -> _Dist | None:
        spec = importlib.util.find_spec("pytriton")  # finds the package without running its __init__
        if spec is None or not spec.submodule_search_locations:
            return None
        package = Path(next(iter(spec.submodule_search_locations)))
        server = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return cls(
            binary=server / "bin" / "tritonserver",
            backend=server / "backends" / "python",
            stub=server / "python_backend_stubs" / version / "triton_python_backend_stub",
            libs=package.parent / "nvidia_pytriton.libs",
        )


def _own_libpython_dir() -> str | None:
    """The folder of this interpreter's shared libpython, when it is a shared build."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).is_file():
        return str(libdir)
    return None


def server_env(dist: _Dist) -> dict[str, str]:
    """The server's environment: its bundled libraries, and for the stub this interpreter and venv.

    The stub embeds libpython3.X: this interpreter's own when it is a shared build (then its
    stdlib too, by ``PYTHONHOME``), else the system's. ``PYTHONPATH`` gives it this venv's
    site-packages (numpy, onnxruntime).
    """
    env = dict(os.environ)
    own = _own_libpython_dir()
    ld_path = [str(dist.libs), *([own] if own else []), *filter(None, env.get("LD_LIBRARY_PATH", "").split(":"))]
    env["LD_LIBRARY_PATH"] = ":".join(ld_path)
    paths = sysconfig.get_paths()
    site_dirs = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    env["PYTHONPATH"] = ":".join([*site_dirs, *filter(None, env.get("PYTHONPATH", "").split(":"))])
    env["PYTHONNOUSERSITE"] = "1"
    if own:
        env["PYTHONHOME"] = f"{sys.base_prefix}:{sys.base_exec_prefix}"
    else:
        env.pop("PYTHONHOME", None)
    return env


def _missing_libraries(dist: _Dist, env: dict[str, str]) -> list[str]:
    """ldd's "not found" lines (libraries, or symbol versions such as GLIBC_2.35) for the three binaries."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    missing = []
    for binary in (dist.binary, dist.backend / "libtriton_python.so", dist.stub):
        result = subprocess.run([ldd, str(binary)], env=env, capture_output=True, text=True, check=False)
        lines = (result.stdout + result.stderr).splitlines()
        missing += [f"{binary.name}: {line.strip()}" for line in lines if "not found" in line]
    return missing


def triton_unavailable_reason() -> str | None:
    """Why pytriton's tritonserver cannot run on this machine, or None when it can."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"nvidia-pytriton's tritonserver is built for Linux x86-64, not {sys.platform} {platform.machine()}"
    dist = _Dist.find()
    if dist is None:
        return f"nvidia-pytriton is not installed ({INSTALL})"
    if not os.access(dist.binary, os.X_OK):
        return f"nvidia-pytriton has no executable tritonserver at {dist.binary}"
    if not (dist.backend / "libtriton_python.so").is_file():
        return f"nvidia-pytriton has no Python backend at {dist.backend}"
    if not os.access(dist.stub, os.X_OK):
        have = sorted(p.name for p in dist.stub.parent.parent.iterdir()) if dist.stub.parent.parent.is_dir() else []
        version = dist.stub.parent.name
        return f"nvidia-pytriton has no Python backend stub for Python {version} (it has {', '.join(have)})"
    missing = _missing_libraries(dist, server_env(dist))
    if missing:
        return "tritonserver's shared libraries are missing: " + "; ".join(missing)
    if not os.access("/dev/shm", os.W_OK):
        return "the Python backend needs a writable /dev/shm"
    return None


def params_config() -> triton.Config:
    """The triton section of the project's params.yaml (what models/triton is built with)."""
    section = yaml.safe_load(PARAMS_YAML.read_text())["triton"]
    return triton.Config(
        section["max_batch_size"], tuple(section["preferred_batch_sizes"]), section["max_queue_delay_us"]
    )


def build_repository(models_dir: Path, out: Path, config: triton.Config | None = None) -> list[str]:
    """A Python-backend model repository in ``out`` for the ensemble of ``models_dir/onnx``.

    Each member's config is the triton stage's: ``models_dir/triton/<member>/config.pbtxt`` when
    the stage has run and no ``config`` is given, else built by the stage's own ``model_config``
    from ``config`` (default: params.yaml's triton section). Returns the model names.
    """
    from google.protobuf import text_format

    store = ModelStore(models_dir)
    staged = store.folder("triton")
    names = []
    for member in store.read_manifest("onnx")["members"]:
        name = member["name"]
        onnx_path = store.graph(name, "onnx")
        if config is None and (staged / name / triton.CONFIG_FILE).is_file():
            message = triton.parse_config(staged / name / triton.CONFIG_FILE)
            onnx_path = staged / name / triton.VERSION / "model.onnx"
        else:
            message = triton.model_config(name, "onnxruntime_onnx", onnx_path, config or params_config())
        if message.platform != "onnxruntime_onnx":
            raise ValueError(f"{name}: expected an onnxruntime_onnx model, got {message.platform!r}")
        message.ClearField("platform")
        message.backend = "python"
        version = out / name / triton.VERSION
        version.mkdir(parents=True)
        shutil.copyfile(onnx_path, version / "model.onnx")
        (version / "model.py").write_text(MODEL_PY)
        (out / name / triton.CONFIG_FILE).write_text(text_format.MessageToString(message))
        names.append(name)
    return names


def _backend_dir(dist: _Dist, out: Path) -> Path:
    """A --backend-directory whose python/ holds pytriton's backend and the stub for this Python."""
    python = out / "python"
    python.mkdir(parents=True)
    for source in (dist.backend / "libtriton_python.so", dist.backend / "triton_python_backend_utils.py", dist.stub):
        (python / source.name).symlink_to(source)
    return out


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError as err:
        return f"(no log: {err})"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the server gets SIGTERM if the process (thread) that started it dies."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, in the parent: no dlopen after fork

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


def _ready(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(server: subprocess.Popen, shm_prefix: str) -> None:
    """SIGTERM (Triton unloads its models and ends their stubs), then SIGKILL to the whole group."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.pid, signal.SIGKILL)  # any stub left in the server's process group
    for region in Path("/dev/shm").glob(f"{shm_prefix}*"):  # left only by a killed server
        region.unlink(missing_ok=True)


def _start(
    dist: _Dist, repo: Path, backends: Path, log: Path, timeout: float
) -> tuple[subprocess.Popen, str, int, int]:
    """One start on fresh ports; returns the server, its shm prefix, HTTP and gRPC ports once ready."""
    http_port, grpc_port = _free_ports(2)
    shm_prefix = f"deepfake_test_{uuid.uuid4().hex[:12]}"
    command = [
        str(dist.binary),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--exit-timeout-secs=10",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--backend-config=python,shm-default-byte-size=4194304",
        "--backend-config=python,shm-growth-byte-size=4194304",
    ]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(dist),
            cwd=repo.parent,
            start_new_session=True,  # its own process group: the stubs are stopped with it
            preexec_fn=_die_with_parent(),  # fork-safe: prctl only, resolved before the fork
        )
    deadline = time.monotonic() + timeout
    try:
        while not _ready(http_port):
            if server.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with status {server.returncode} before it was ready; log {log}:\n"
                    + log_tail(log)
                )
            if time.monotonic() > deadline:
                raise TritonStartError(
                    f"tritonserver was not ready after {timeout:.0f} s; log {log}:\n" + log_tail(log)
                )
            time.sleep(0.2)
    except BaseException:
        _stop(server, shm_prefix)
        raise
    return server, shm_prefix, http_port, grpc_port


@contextlib.contextmanager
def running_triton(
    models_dir: Path, tmp: Path, config: triton.Config | None = None, timeout: float = START_TIMEOUT_S
) -> Iterator[TritonUrls]:
    """tritonserver serving ``models_dir``'s ensemble on 127.0.0.1 (HTTP and gRPC; no metrics).

    ``tmp`` receives the model repository, the backend folder and ``tritonserver.log``. Call
    ``triton_unavailable_reason()`` first and skip when it gives a reason; a server that does not
    become ready within ``timeout`` seconds raises ``TritonStartError`` with its log's tail. On
    exit the server gets SIGTERM, then SIGKILL (with its process group: no stub outlives it); it
    also gets SIGTERM if the thread that entered this context dies first.
    """
    reason = triton_unavailable_reason()
    if reason is not None:
        raise TritonStartError(f"tritonserver cannot run here: {reason}")
    dist = _Dist.find()
    assert dist is not None
    tmp.mkdir(parents=True, exist_ok=True)
    repo = tmp / "model_repository"
    names = build_repository(Path(models_dir), repo, config)
    backends = _backend_dir(dist, tmp / "backends")
    log = tmp / "tritonserver.log"
    for attempt in range(3):  # a free port can be taken between choosing it and the server's bind
        try:
            server, shm_prefix, http_port, grpc_port = _start(dist, repo, backends, log, timeout)
            break
        except TritonStartError as err:
            if attempt == 2 or "already in use" not in str(err):
                raise
    try:
        yield TritonUrls(f"127.0.0.1:{http_port}", f"grpc://127.0.0.1:{grpc_port}", tuple(names), log)
    finally:
        _stop(server, shm_prefix)
