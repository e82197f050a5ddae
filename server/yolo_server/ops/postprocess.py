"""Decode + threshold + DIoU-NMS + map back: the one post-process of the project.

Both the Triton ``*_postprocess`` model and the in-process ``Detector`` call
:func:`postprocess`; nothing else turns raw ``[yolo]`` tensors into detections.

Example:
    >>> config = PostprocessConfig(score_threshold=0.25, nms_threshold=0.45)
    >>> dets = postprocess(outputs, spec.yolo_layers, 416, 416, [params], config)
    >>> dets[0].boxes, dets[0].scores, dets[0].class_ids   # float32 [K, 4], float32 [K], int32 [K]

Darknet semantics: a (box, class) pair is a candidate when
``objectness > score_threshold`` and ``objectness * class_prob > score_threshold``
(both strict, compared in float32 like darknet's ``float`` thresholds, through
:func:`yolo_client.contract.above_score_threshold`, the comparison a client's
per-call ``score_threshold`` makes too, so both cuts agree on a score at the threshold); its
score is ``objectness * class_prob``, and one box may yield several classes.
NMS runs per (image, class), or per image with ``class_agnostic``, in a single
batched pass; ties in score go to the lower candidate index, i.e. the earlier
box in decode order (head, anchor, row, col), then the lower class id.

The heads are numpy arrays (the cpu stubs: no torch in the process) or torch tensors (the in-process
``Detector``, a GPU instance on CUDA): one array-API implementation runs on both, and the detections come back as
host numpy arrays either way. Torch callers run it without autograd (``Detector.forward`` is in inference mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolo_client.contract import above_score_threshold
from yolo_client.geometry import ResizeParams

from ..darknet.cfg import YoloSpec
from .arrays import Tensor, array_namespace, device, to_numpy
from .config import PostprocessConfig
from .decode import decode_yolo
from .nms import batched_diou_nms


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image, sorted by score, descending.

    Attributes:
        boxes: float32 ``[K, 4]`` xyxy in original-image pixels, clipped to the image.
        scores: float32 ``[K]`` objectness x class probability.
        class_ids: int32 ``[K]``.
        candidates: the (box, class) pairs above the score threshold, before the top-k cut and NMS (a metric).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    candidates: int = 0

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def select_candidates(
    objectness: Tensor, class_probs: Tensor, score_threshold: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Darknet's thresholding: every (box, class) pair that passes.

    Args:
        objectness: ``Tensor[B, N]``.
        class_probs: ``Tensor[B, N, C]``.
        score_threshold: ``objectness`` and ``objectness * class_prob`` must both exceed it.
    Returns:
        ``image_idx``, ``box_idx``, ``class_id`` (int64) and ``score``
        (``objectness * class_prob``, dtype of the inputs), each ``Tensor[K]``,
        in (image, box, class) order.
    """
    xp = array_namespace(objectness, class_probs)
    image_idx, box_idx = xp.nonzero(above_score_threshold(objectness, score_threshold))
    scores = objectness[image_idx, box_idx][:, None] * class_probs[image_idx, box_idx]  # [M, C]
    row, class_id = xp.nonzero(above_score_threshold(scores, score_threshold))
    return image_idx[row], box_idx[row], class_id, scores[row, class_id]


def postprocess(
    outputs: Sequence[Tensor],
    heads: Sequence[YoloSpec],
    net_width: int,
    net_height: int,
    resize: Sequence[ResizeParams],
    config: PostprocessConfig,
) -> list[Detections]:
    """Raw ``[yolo]`` inputs of a batch -> detections per image in original pixels.

    Args:
        outputs: per head, ``Tensor[B, A*(5+C), h, w]`` (see :func:`decode_yolo`), all numpy or all torch on one
            device.
        heads: the :class:`YoloSpec` per head, in cfg order.
        net_width: network input width in pixels.
        net_height: network input height in pixels.
        resize: per image, how it was placed in the network input.
        config: thresholds and caps.
    Returns:
        ``B`` :class:`Detections`, each sorted by score, descending, at most
        ``config.max_detections`` long, with its count of candidates.
    """
    boxes, objectness, class_probs = decode_yolo(outputs, heads, net_width, net_height)
    batch, _, classes = class_probs.shape
    if len(resize) != batch:
        raise ValueError(f"got {len(resize)} resize params for a batch of {batch}")
    image_idx, box_idx, class_id, scores = select_candidates(objectness, class_probs, config.score_threshold)
    candidates = np.bincount(to_numpy(image_idx), minlength=batch)
    top = _rank_in_image(image_idx, scores) < config.pre_nms_top_k
    image_idx, box_idx, class_id, scores = image_idx[top], box_idx[top], class_id[top], scores[top]
    candidate_boxes = boxes[image_idx, box_idx]
    groups = image_idx if config.class_agnostic else image_idx * classes + class_id
    keep = batched_diou_nms(candidate_boxes, scores, groups, config.nms_threshold, config.beta_nms)
    image_idx, class_id, scores, candidate_boxes = image_idx[keep], class_id[keep], scores[keep], candidate_boxes[keep]
    capped = _rank_in_image(image_idx, scores) < config.max_detections
    return _split(
        to_numpy(image_idx[capped]),
        to_numpy(candidate_boxes[capped]),
        to_numpy(scores[capped]).astype(np.float32),
        to_numpy(class_id[capped]).astype(np.int32),
        resize,
        candidates,
    )


def _rank_in_image(image_idx: Tensor, scores: Tensor) -> Tensor:
    """``Tensor[K]`` int64: rank of each candidate in its image by score, descending, ties by index."""
    xp = array_namespace(image_idx, scores)
    order = xp.argsort(scores, descending=True, stable=True)
    order = order[xp.argsort(image_idx[order], stable=True)]
    sorted_images = image_idx[order]
    first = xp.searchsorted(sorted_images, sorted_images)  # start of each image's run
    rank = xp.empty_like(order)
    # integer-array assignment (a scatter): beyond the standard, but numpy and torch both do it
    rank[order] = xp.arange(order.shape[0], device=device(order)) - first
    return rank


def _split(
    image_idx: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    resize: Sequence[ResizeParams],
    candidates: np.ndarray,
) -> list[Detections]:
    """Per-image :class:`Detections` from score-sorted flat arrays, boxes mapped to original pixels."""
    if not resize:  # an empty batch: np.split would still give one (empty) piece
        return []
    order = np.argsort(image_idx, kind="stable")  # keeps score order within each image
    bounds = np.cumsum(np.bincount(image_idx, minlength=len(resize)))[:-1]
    per_image = zip(*(np.split(a[order], bounds) for a in (boxes, scores, class_ids)), strict=True)
    return [
        Detections(params.to_original(b), np.ascontiguousarray(s), np.ascontiguousarray(c), int(count))
        for params, (b, s, c), count in zip(resize, per_image, candidates, strict=True)
    ]
