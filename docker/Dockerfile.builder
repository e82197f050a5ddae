# The model builder: darknet cfg/weights -> torch.export -> Torch-TensorRT (dynamo) -> TorchScript with embedded
# engines -> Triton model repository (TARGET=tensorrt). docker/compose.yaml runs it once as the `builder` service;
# docker/k8s/ as the pod's init container.
#
# The builder and the server are the SAME NGC release (25.10, with Triton's 2025 security fixes); upgrade both tags
# together:
#   nvcr.io/nvidia/pytorch:25.10-py3      PyTorch 2.9.0a0, Torch-TensorRT (dynamo frontend), TensorRT 10.13.3, CUDA 13.0
#   nvcr.io/nvidia/tritonserver:25.10-py3 Triton 2.62.0, PyTorch backend (libtorch + the Torch-TensorRT runtime),
#                                         TensorRT 10.13.3, CUDA 13.0
# A Torch-TensorRT engine is serialized for one TensorRT version and one GPU model: it deserializes only in a
# Triton whose TensorRT is the builder's, on the same GPU model (docker/entrypoint.sh stamps the GPU name).
# tests/unit/test_deploy_images.py checks that the two tags name the same release.
#
# Built by Docker 20.10's own BuildKit frontend (no `# syntax` line, nothing pulled but the base). Behind a mirror
# or an air gap (docs/deployment.md "Air-gapped builds and registry mirrors"): --build-arg BASE_IMAGE=... (the
# release from your registry), --build-arg PIP_INDEX_URL=..., wheels in docker/wheels/, and
# --secret id=ca,src=FILE for a CA bundle pip must trust.
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:25.10-py3
FROM ${BASE_IMAGE}
ARG PIP_INDEX_URL=https://pypi.org/simple

WORKDIR /opt/yolo
COPY client client
COPY server server
COPY models/darknet models/darknet
COPY models/shapes models/shapes
COPY --chmod=755 docker/entrypoint.sh entrypoint.sh

# Nothing here imports torch_tensorrt or tensorrt: Torch-TensorRT 2.9 asks CUDA for a device at import, and
# `docker build` steps get no GPU (compose's deploy.resources.devices applies at run time only; pytorch/TensorRT
# PR #4504). The GPU and torch_tensorrt are checked when the container starts (`yolo-server build --preflight`,
# docker/entrypoint.sh), with a message that says what is missing.
# The install keeps the image's packages: the NGC constraint file (/etc/pip/constraint.txt, since 25.03) where it
# exists, and the image's torch (what torch_tensorrt and TensorRT were built against) pinned on top.
RUN --mount=type=secret,id=ca --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python -c "import importlib.metadata as m; print(*(f'{p}=={m.version(p)}' for p in ('torch', 'torch_tensorrt', 'tensorrt')))" \
 && python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > /tmp/image-pins.txt \
 && constraints="--constraint /tmp/image-pins.txt" \
 && if [ -f /etc/pip/constraint.txt ]; then constraints="$constraints --constraint /etc/pip/constraint.txt"; fi \
 && pip install --no-cache-dir --find-links /wheels $constraints ./client './server[build]' \
 && python -c "import yolo_server.export.tensorrt, yolo_server.repository.build" \
 && useradd --uid 10001 --create-home yolo \
 && mkdir -p /repository /models && chown yolo:yolo /repository

ENV TARGET=tensorrt \
    REPOSITORY=/repository \
    MODELS_DIR=/models
USER 10001
# NVIDIA's entrypoint first: it sets up CUDA forward compatibility on older drivers, then runs ours
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/yolo/entrypoint.sh"]
CMD ["build"]
