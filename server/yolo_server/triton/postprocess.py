"""``NAME_postprocess``: raw ``[yolo]`` tensors of a whole dynamic batch -> ragged detections per request.

Example:
    >>> post = Postprocessor.from_parameters(parameters, version_dir, instance_device("GPU", 0))
    >>> dets = post.run(heads, resize_params)             # heads: per head float32 [B, A*(5+C), h, w]
    >>> outputs = pack_ragged(dets[:2])              # BOXES [2, K, 4], SCORES [2, K], CLASSES [2, K], COUNT [2, 1]

On a CPU instance the ops run on the numpy heads as they come, and nothing here imports torch, which would take
some 200 MiB resident in every instance (bench/bench_stub_memory.py). A GPU instance (the tensorrt target's
postprocess) runs the same ops on torch tensors on its CUDA device, and only there is torch imported.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from yolo_client.contract import BOXES, CLASSES, COUNT, SCORES, ModelInfo
from yolo_client.geometry import ResizeParams
from yolo_server.darknet.cfg import YoloSpec, parse_cfg_file
from yolo_server.ops.config import PostprocessConfig
from yolo_server.ops.postprocess import Detections, postprocess
from yolo_server.triton.settings import PostprocessSettings

CPU = "cpu"


@dataclass(frozen=True)
class Postprocessor:
    """Decode + threshold + NMS + map back for one repository's detector.

    ``device`` is ``"cpu"`` (numpy, no torch) or a CUDA device such as ``"cuda:0"`` (torch there).
    """

    heads: tuple[YoloSpec, ...]
    net_width: int
    net_height: int
    config: PostprocessConfig
    device: str = CPU

    @classmethod
    def from_parameters(
        cls, parameters: Mapping[str, str], version_dir: str | Path, device: str = CPU
    ) -> Postprocessor:
        """From the model's config parameters and the cfg copy beside ``model.py``; the ops run on ``device``."""
        info = ModelInfo.from_parameters(parameters)
        settings = PostprocessSettings.from_parameters(parameters)
        heads = parse_cfg_file(Path(version_dir) / settings.cfg).yolo_layers
        if device != CPU and settings.num_threads:  # numpy's elementwise ops run on one thread: no knob to set
            _torch().set_num_threads(settings.num_threads)
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
        arrays: Sequence[Any] = heads  # numpy on the CPU: the ops take the heads as they come
        if self.device != CPU:
            torch = _torch()
            arrays = [torch.from_numpy(np.ascontiguousarray(head)).to(self.device) for head in heads]
        return postprocess(arrays, self.heads, self.net_width, self.net_height, resize, self.config)


def instance_device(kind: str, device_id: int | str = 0) -> str:
    """Where one Triton model instance runs its ops: ``cuda:ID`` for a ``GPU`` instance when torch sees CUDA,
    else ``"cpu"`` (``kind`` and ``device_id`` are ``args["model_instance_kind"]`` and ``..._device_id``).

    Only a ``GPU`` instance imports torch, to ask it; where it has none, numpy on the CPU gives the same
    detections."""
    if kind == "GPU" and importlib.util.find_spec("torch") is not None and _torch().cuda.is_available():
        return f"cuda:{int(device_id)}"
    return CPU


def _torch() -> ModuleType:
    """torch, imported by a GPU instance only (the tensorrt target's image has it)."""
    return importlib.import_module("torch")


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
