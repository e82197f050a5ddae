"""The in-process pipeline: images in, detections out. The oracle the server is tested against.

Example:
    >>> detector = Detector("models/darknet/yolov4-tiny.cfg", "yolov4-tiny.weights", names="models/darknet/coco.names")
    >>> [dets] = detector.detect([image_rgb])          # uint8 [H, W, 3] RGB, any size
    >>> dets.boxes, dets.scores, dets.class_ids, dets.labels
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from yolo_client.geometry import ResizeParams, letterbox
from yolo_server.darknet import InputSize, load_darknet
from yolo_server.darknet.names import load_class_names
from yolo_server.export.wrapper import InferenceWrapper, torch_dtype
from yolo_server.ops.config import PostprocessConfig, postprocess_config_for
from yolo_server.ops.postprocess import Detections, postprocess
from yolo_server.precision import resolve_cpu_precision
from yolo_server.triton.imaging import DEFAULT_JPEG_DECODE, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from yolo_server.triton.preprocess import Preprocessor
from yolo_server.triton.settings import PreprocessSettings


@dataclass(frozen=True, eq=False)
class LabeledDetections(Detections):
    """:class:`Detections` plus ``labels``: one class name per detection."""

    labels: tuple[str, ...] = ()


class Detector:
    """A darknet detector run in this process, with the server's exact pre- and post-processing.

    Args:
        cfg: darknet cfg path.
        weights: darknet ``.weights`` path; ``None`` -> calibrated random weights (not a detector!).
        names: class-names file; ``None`` -> class ids as labels.
        input_size: network size override, int or (width, height), multiples of 32.
        precision: ``fp32``, ``bf16`` or ``auto`` (bf16 where the CPU has native bf16).
        config: thresholds and NMS settings; default: darknet's with the cfg's ``beta_nms``.
        device: torch device for the network and the post-process.
        network: run this instead of the torch module: float32 numpy ``[B, 3, H, W]`` -> one array per
            head, e.g. the served artifact (``OpenVINORunner``), so that parity tests cover what is served.
    """

    def __init__(
        self,
        cfg: str | Path,
        weights: str | Path | None = None,
        names: str | Path | None = None,
        input_size: InputSize = None,
        precision: str = "fp32",
        config: PostprocessConfig | None = None,
        device: str = "cpu",
        network: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None,
    ) -> None:
        model, self.spec = load_darknet(cfg, weights, input_size)
        self.precision = resolve_cpu_precision(precision) if device == "cpu" else precision
        self.device = torch.device(device)
        self.artifact = network
        # the torch network only when nothing replaces it: a second copy of yolov4's weights is 250 MB
        self.network: InferenceWrapper | None = None
        if network is None:
            self.network = InferenceWrapper(model, torch_dtype(self.precision)).to(self.device).eval()
        self.class_names = load_class_names(names, self.spec.num_classes)
        self.config = config or postprocess_config_for(self.spec)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network input."""
        return self.spec.net.width, self.spec.net.height

    def preprocess(self, image_rgb: np.ndarray) -> tuple[np.ndarray, ResizeParams]:
        """uint8 [H, W, 3] RGB -> (float32 [3, net_h, net_w], placement), as the server does it."""
        width, height = self.input_size
        return letterbox(image_rgb, width, height, self.spec.net.letter_box)

    @torch.inference_mode()
    def forward(self, batch: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """float32 [B, 3, H, W] -> raw [yolo] inputs, float32 [B, A*(5+C), h, w] per head."""
        if self.artifact is not None:
            heads = self.artifact(np.asarray(batch, dtype=np.float32))
            return [torch.from_numpy(np.asarray(head)).to(self.device) for head in heads]
        assert self.network is not None
        return list(self.network(torch.as_tensor(batch, dtype=torch.float32, device=self.device)))

    def detect_tensor(
        self, batch: np.ndarray, resize: Sequence[ResizeParams], config: PostprocessConfig | None = None
    ) -> list[LabeledDetections]:
        """Detections for already prepared inputs: float32 [B, 3, H, W] plus each image's placement."""
        width, height = self.input_size
        found = postprocess(self.forward(batch), self.spec.yolo_layers, width, height, resize, config or self.config)
        return [self._label(dets) for dets in found]

    def detect(self, images: Sequence[np.ndarray], config: PostprocessConfig | None = None) -> list[LabeledDetections]:
        """uint8 [H, W, 3] RGB images of any sizes -> one :class:`LabeledDetections` per image."""
        if len(images) == 0:
            return []
        prepared = [self.preprocess(image) for image in images]
        batch = np.stack([tensor for tensor, _ in prepared])
        return self.detect_tensor(batch, [params for _, params in prepared], config)

    def detect_encoded(
        self, encoded: Sequence[bytes], jpeg_decode: str = DEFAULT_JPEG_DECODE, config: PostprocessConfig | None = None
    ) -> list[LabeledDetections]:
        """Encoded images -> one :class:`LabeledDetections` each, decoded and placed by the server's own preprocess
        (:class:`yolo_server.triton.preprocess.Preprocessor`), its JPEG scale (``jpeg_decode``) included."""
        if len(encoded) == 0:
            return []
        width, height = self.input_size
        preprocess = Preprocessor(
            PreprocessSettings(
                width, height, self.spec.net.letter_box, DEFAULT_MAX_PIXELS, DEFAULT_MAX_BYTES, False, jpeg_decode
            )
        )
        prepared = preprocess(np.array([[bytes(data)] for data in encoded], dtype=object))
        return self.detect_tensor(prepared.inputs, prepared.params, config)

    def _label(self, dets: Detections) -> LabeledDetections:
        labels = tuple(self.class_names[int(i)] for i in dets.class_ids)
        return LabeledDetections(**{f.name: getattr(dets, f.name) for f in dataclasses.fields(dets)}, labels=labels)
