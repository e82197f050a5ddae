# syntax=docker/dockerfile:1.7
# The model builder: darknet cfg/weights -> Torch-TensorRT TorchScript -> Triton model repository (TARGET=tensorrt).
# docker/compose.yaml runs it once as the `builder` service; docker/k8s/ as the pod's init container.
#
# The builder and the server are the SAME NGC release (24.10); upgrade both tags together:
#   nvcr.io/nvidia/pytorch:24.10-py3      PyTorch 2.5.0a0, Torch-TensorRT 2.5.0a0, TensorRT 10.5.0.18, CUDA 12.6
#   nvcr.io/nvidia/tritonserver:24.10-py3 Triton 2.51.0, PyTorch backend (libtorch 2.5.0a0 + Torch-TensorRT runtime),
#                                         TensorRT 10.5.0.18, CUDA 12.6
# A Torch-TensorRT engine is serialized for one TensorRT version and one GPU model: it deserializes only in a
# Triton whose TensorRT is the builder's, on the same GPU model (docker/entrypoint.sh stamps the GPU name).
# tests/unit/test_deploy_images.py checks that the two tags name the same release.
FROM nvcr.io/nvidia/pytorch:24.10-py3

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
ENTRYPOINT ["/opt/yolo/entrypoint.sh"]
CMD ["build"]
