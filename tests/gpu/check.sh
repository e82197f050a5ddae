#!/usr/bin/env bash
# The GPU check of the tensorrt path, on the stack the project ships (NGC 25.10: torch 2.9, Torch-TensorRT 2.9,
# TensorRT 10.13), for a host with an NVIDIA GPU (under 8 minutes):
#
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD:/src" -w /src \
#       --entrypoint /opt/nvidia/nvidia_entrypoint.sh yolo-triton-builder:25.10 tests/gpu/check.sh
#
# (the builder image of docker/compose.yaml: `docker compose -f docker/compose.yaml build builder`). There it runs
# with the image's python, torch and torch_tensorrt, and this checkout's sources. Elsewhere:
#   tests/gpu/check.sh                  a fresh venv (build/gpu-check/venv) with the pinned torch and torch-tensorrt
#                                       (TensorRT's wheels download from NVIDIA's own index at install)
#   CHECK_PYTHON=python3 tests/gpu/check.sh   that interpreter as it is: without torch_tensorrt, the `torch` mode
# check.py refuses a torch_tensorrt other than the shipped one, with the reason (2.13+ ignores enabled_precisions
# and builds FP32). The report says which mode ran. Options go to tests/gpu/check.py (e.g. --report FILE, --quick).
set -euo pipefail
cd "$(dirname "$0")/../.."

# the builder's pair (docker/Dockerfile.builder; tests/tensorrt_dryrun/venv.sh runs the same in its dry run)
TORCH=2.9.0
TORCH_TENSORRT=2.9.0

if [ -n "${CHECK_PYTHON:-}" ]; then
    python=$CHECK_PYTHON
elif [ -n "${NVIDIA_PYTORCH_VERSION:-}" ]; then  # inside an NGC PyTorch image
    python=python
else
    venv=${CHECK_VENV:-build/gpu-check/venv}
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "torch==$TORCH" "torch-tensorrt==$TORCH_TENSORRT"
    # the project on top, keeping that torch
    "$venv/bin/python" -m pip install -q "torch==$TORCH" ./client ./server
    python=$venv/bin/python
fi
exec timeout "${CHECK_TIMEOUT:-900}" "$python" tests/gpu/check.py "$@"
