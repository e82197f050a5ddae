#!/usr/bin/env bash
# The GPU check of the tensorrt path, for a host with an NVIDIA GPU and pip (under 8 minutes):
#
#   tests/gpu/check.sh [check.py options]      e.g. tests/gpu/check.sh --report /tmp/report.json
#
# It makes a fresh venv (build/gpu-check/venv) with torch-tensorrt from PyPI, which brings its matching CUDA torch
# and TensorRT, installs this project into it, and runs tests/gpu/check.py: the `tensorrt` mode. Where no registry
# is reachable, CHECK_PYTHON=python3 skips the venv and uses that interpreter (with this checkout's sources) as it
# is: without torch_tensorrt it runs the `torch` mode. The report says which mode ran.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -n "${CHECK_PYTHON:-}" ]; then
    python=$CHECK_PYTHON
else
    venv=${CHECK_VENV:-build/gpu-check/venv}
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q torch-tensorrt
    # the project on top, keeping the torch that torch-tensorrt chose
    "$venv/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$venv/torch-constraint.txt"
    "$venv/bin/python" -m pip install -q --constraint "$venv/torch-constraint.txt" ./client ./server
    python=$venv/bin/python
fi
exec timeout "${CHECK_TIMEOUT:-900}" "$python" tests/gpu/check.py "$@"
