#!/usr/bin/env bash
# The venv that runs the real Torch-TensorRT in dry-run mode on a machine without a GPU (tests/tensorrt_dryrun/).
# Prints its python on stdout; creates it first when it is missing (about 7 GB, 1-3 minutes from PyPI).
#
# It lives in a cache outside the checkout, keyed by the versions below and by this file's own text, so every
# checkout and CI run on one machine shares it. What goes in:
#   - torch==2.9.0, PyPI's CUDA build: the torch that Torch-TensorRT 2.9.0 (NGC 25.10's) is built against;
#   - torch-tensorrt==2.9.0 with --no-deps: its TensorRT wheels (tensorrt-cu13-libs) are placeholders that download
#     from NVIDIA's own index, which no registry here serves;
#   - its compiled lib/*.so set aside: they link TensorRT's libraries, so it runs in its Python-only mode (the
#     dynamo frontend; no TorchScript frontend, no runtime);
#   - its other requirements (packaging, dllist, typing-extensions, numpy).
# TensorRT's own Python bindings are stood in for by tests/tensorrt_dryrun/standin/ at run time.
set -euo pipefail

TORCH=2.9.0
TORCH_TENSORRT=2.9.0
PYTHON=${PYTHON:-python3}

here=$(cd "$(dirname "$0")" && pwd)
key=$("$PYTHON" -c 'import sys; print("py%d.%d" % sys.version_info[:2])')-$(sha256sum "$here/venv.sh" | cut -c1-12)
venv=${TENSORRT_DRYRUN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo-server}/tensorrt-dryrun-torch$TORCH-trt$TORCH_TENSORRT-$key

if [ ! -f "$venv/.complete" ]; then
    echo "tensorrt dry run: creating $venv (torch==$TORCH, torch-tensorrt==$TORCH_TENSORRT; about 7 GB)" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
    "${pip[@]}" "torch==$TORCH" numpy packaging dllist typing-extensions >&2
    "${pip[@]}" --no-deps "torch-tensorrt==$TORCH_TENSORRT" >&2
    package=$("$venv/bin/python" -c 'import importlib.util as u; print(u.find_spec("torch_tensorrt").submodule_search_locations[0])')
    mkdir -p "$package/lib-set-aside"
    mv "$package"/lib/*.so "$package/lib-set-aside/"
    touch "$venv/.complete"
fi
printf '%s\n' "$venv/bin/python"
