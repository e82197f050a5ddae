# syntax=docker/dockerfile:1.7
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
FROM nvcr.io/nvidia/pytorch:25.10-py3

WORKDIR /opt/yolo
COPY client client
COPY server server
COPY models/darknet models/darknet
COPY models/shapes models/shapes
COPY --chmod=755 docker/entrypoint.sh entrypoint.sh

# Keep the image's own torch (what torch_tensorrt and TensorRT were built against): pin it as a constraint so the
# install of yolo_server (numpy<2 and the rest of server/pyproject.toml) cannot replace it.
RUN python -c "import tensorrt, torch, torch_tensorrt as trt; print(torch.__version__, trt.__version__, tensorrt.__version__)" \
 && python -c "import torch; print('torch==' + torch.__version__)" > /tmp/ngc-torch.txt \
 && pip install --no-cache-dir --constraint /tmp/ngc-torch.txt ./client ./server \
 && python -c "import torch_tensorrt, yolo_server.export.tensorrt, yolo_server.repository.build" \
 && useradd --uid 10001 --create-home yolo \
 && mkdir -p /repository /models && chown yolo:yolo /repository

ENV TARGET=tensorrt \
    REPOSITORY=/repository \
    MODELS_DIR=/models
USER 10001
# NVIDIA's entrypoint first: it sets up CUDA forward compatibility on older drivers, then runs ours
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/yolo/entrypoint.sh"]
CMD ["build"]
