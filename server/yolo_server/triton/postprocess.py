"""``NAME_postprocess``: raw ``[yolo]`` tensors of a whole dynamic batch -> ragged detections per request.

Example:
    >>> post = Postprocessor.from_parameters(parameters, version_dir, instance_device("GPU", 0))
    >>> dets = post.run(heads, resize_params)             # heads: per head float32 [B, A*(5+C), h, w]
    >>> outputs = pack_ragged(dets[:2])              # BOXES [2, K, 4], SCORES [2, K], CLASSES [2, K], COUNT [2, 1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from yolo_client.contract import BOXES, CLASSES, COUNT, SCORES, ModelInfo
from yolo_client.geometry import ResizeParams
from yolo_server.darknet.cfg import YoloSpec, parse_cfg_file
from yolo_server.ops.config import PostprocessConfig
from yolo_server.ops.postprocess import Detections, postprocess
from yolo_server.triton.settings import PostprocessSettings


@dataclass(frozen=True)
class Postprocessor:
    """Decode + threshold + NMS + map back for one repository's detector."""

    heads: tuple[YoloSpec, ...]
    net_width: int
    net_height: int
    config: PostprocessConfig
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_parameters(
        cls, parameters: Mapping[str, str], version_dir: str | Path, device: torch.device = torch.device("cpu")
    ) -> Postprocessor:
        """From the model's config parameters and the cfg copy beside ``model.py``; torch ops run on ``device``."""
        info = ModelInfo.from_parameters(parameters)
        settings = PostprocessSettings.from_parameters(parameters)
        heads = parse_cfg_file(Path(version_dir) / settings.cfg).yolo_layers
        if settings.num_threads:
            torch.set_num_threads(settings.num_threads)
        return cls(
            heads,
            info.input_width,
            info.input_height,
            PostprocessConfig.from_model_info(info, settings.pre_nms_top_k),
            device,
        )

    def run(self, heads: Sequence[np.ndarray], resize: Sequence[ResizeParams]) -> list[Detections]:
        """Per head float32 ``[B, A*(5+C), h, w]`` + ``B`` placements -> ``B`` :class:`Detections` (with their
        candidate counts)."""
        tensors = [torch.from_numpy(np.ascontiguousarray(head)).to(self.device) for head in heads]
        return postprocess(tensors, self.heads, self.net_width, self.net_height, resize, self.config)


def instance_device(kind: str, device_id: int | str = 0) -> torch.device:
    """Where one Triton model instance runs its torch ops: ``cuda:ID`` for a ``GPU`` instance when torch sees
    CUDA, else the CPU (``kind`` and ``device_id`` are ``args["model_instance_kind"]`` and ``..._device_id``)."""
    if kind == "GPU" and torch.cuda.is_available():
        return torch.device("cuda", int(device_id))
    return torch.device("cpu")


def pack_ragged(detections: Sequence[Detections]) -> dict[str, np.ndarray]:
    """One request's detections -> its output tensors, padded to the longest and counted.

    Returns:
        ``BOXES`` float32 ``[b, K, 4]``, ``SCORES`` float32 ``[b, K]``, ``CLASSES`` int32 ``[b, K]``
        (rows past ``COUNT`` are zero) and ``COUNT`` int32 ``[b, 1]``, ``K = max COUNT``.
    """
    counts = np.array([len(d) for d in detections], dtype=np.int32)
    size = int(counts.max(initial=0))
    boxes = np.zeros((len(detections), size, 4), dtype=np.float32)
    scores = np.zeros((len(detections), size), dtype=np.float32)
    classes = np.zeros((len(detections), size), dtype=np.int32)
    for row, dets in enumerate(detections):
        boxes[row, : len(dets)] = dets.boxes
        scores[row, : len(dets)] = dets.scores
        classes[row, : len(dets)] = dets.class_ids
    return {BOXES: boxes, SCORES: scores, CLASSES: classes, COUNT: counts.reshape(-1, 1)}


def pack_per_request(detections: Sequence[Detections], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """A dynamic batch's detections, ``sizes[i]`` images per request in order -> each request's :func:`pack_ragged`."""
    packed, start = [], 0
    for size in sizes:
        packed.append(pack_ragged(detections[start : start + size]))
        start += size
    return packed
