# The pipeline's environment: Python 3.11, the exact pins of requirements.txt and the `deepfake`
# package. The repository itself (with .git, data and the DVC cache) is mounted at /workspace:
#
#   docker build -t deepfake-pipeline .
#   docker run --rm --gpus all -v "$PWD":/workspace -u "$(id -u):$(id -g)" deepfake-pipeline dvc repro
#
# Leave out `--gpus all` to run on the CPU. See "Docker" in README.md. The verdict service:
#
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/models:/models:ro" -v deepfake-serve:/data \
#       -v "$PWD/keys.txt:/keys.txt:ro" deepfake-pipeline \
#       deepfake serve --host 0.0.0.0 --models /models --data /data --api-keys-file /keys.txt
#
# On 0.0.0.0 the service refuses to start without API keys (deepfake serve-key) unless given
# --allow-anonymous-remote (docs/service.md, "Docker").
#
# CUDA: the torch wheel pinned in requirements.txt is the CUDA 13.0 build and brings its own CUDA
# libraries (nvidia-*-cu13 wheels); the host only has to provide a driver that supports CUDA 13
# (through the NVIDIA Container Toolkit). The CUDA 13.0 runtime base provides the driver-facing
# runtime libraries (cudart, cuBLAS, ...) that TensorRT (WITH_TENSORRT=1) and other non-torch
# CUDA code load from the system.
FROM nvidia/cuda:13.0.2-runtime-ubuntu22.04

# 1 installs TensorRT 10 (the cu13 build, matching torch) for `dvc repro deploy/dvc.yaml:build_trt`
# and `deepfake predict --backend tensorrt`.
ARG WITH_TENSORRT=0
ARG TENSORRT_VERSION=10.16.1.11
ARG DEBIAN_FRONTEND=noninteractive

# HOME is writable by any uid (`docker run -u`), so are the DVC site cache and /tmp; LOGNAME keeps
# getpass.getuser() working for a uid with no passwd entry.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    DVC_SITE_CACHE_DIR=/tmp/dvc-site \
    HOME=/home/deepfake \
    LOGNAME=deepfake \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Python 3.11 from the deadsnakes PPA (Ubuntu 22.04's own python3.11 is a 3.11.0 release
# candidate); git for DVC; libgl1/libglib2.0-0 for OpenCV.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gnupg software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv git libgl1 libglib2.0-0 \
    && apt-get purge -y --auto-remove software-properties-common gnupg \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv \
    && pip install --upgrade pip

# The mounted repository belongs to the host user: let git (and so DVC) work in it whatever the uid.
RUN git config --system --add safe.directory /workspace \
    && useradd --create-home --uid 1000 --shell /bin/bash deepfake \
    && chmod 1777 /home/deepfake

# Dependencies first (the slow layer), then the package itself, non-editable.
COPY requirements.txt /opt/deepfake/requirements.txt
RUN pip install -r /opt/deepfake/requirements.txt \
    && if [ "$WITH_TENSORRT" = "1" ]; then pip install "tensorrt-cu13==${TENSORRT_VERSION}"; fi

# params.yaml: src/deepfake/params.yaml links to it, and the wheel carries it as the packaged defaults
COPY pyproject.toml README.md params.yaml /opt/deepfake/
COPY src /opt/deepfake/src
WORKDIR /opt/deepfake
RUN pip install --no-deps . \
    && rm -rf build src/*.egg-info

# dvc.yaml tracks src/ of the mounted checkout: put that src/ first on the path so the code DVC
# hashes is the code that runs (the installed copy serves when /workspace holds no checkout).
ENV PYTHONPATH=/workspace/src

USER deepfake
WORKDIR /workspace
EXPOSE 8000
CMD ["deepfake", "--help"]
