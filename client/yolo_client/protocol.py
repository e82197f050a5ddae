"""The wire format of ``docs/triton-interface.md``: request tensors, ragged outputs, config parameters.

Shared by the sync and async clients (and by ``bench/bench_client.py``); no I/O here.

Example:
    >>> info = parse_model_info("yolov4_tiny", client.get_model_config("yolov4_tiny", as_json=True))
    >>> result = client.infer("yolov4_tiny", bytes_inputs([open("a.jpg", "rb").read()]))
    >>> parse_result(result, info)[0]                 # detections of the first (only) image
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .contract import (
    IMAGE,
    INPUT,
    OUTPUT_NAMES,
    RESIZE,
    TENSOR,
    ModelInfo,
    above_score_threshold,
    check_score_threshold,
    model_name,
)
from .errors import InvalidInputError, ServerError
from .geometry import ResizeParams
from .types import Detection, RepositoryModel, Transport

if TYPE_CHECKING:  # pragma: no cover
    from tritonclient.grpc import InferInput, InferResult

Prepared = bytes | tuple[np.ndarray, ResizeParams]  # one image as sent: encoded, or letterboxed with its params


def model_for(base: str, transport: Transport) -> str:
    """Triton model the transport talks to: ``NAME`` (encoded bytes) or ``NAME_tensor``."""
    if transport == "bytes":
        return base
    if transport == "tensor":
        return model_name(base, TENSOR)
    raise InvalidInputError(f"transport must be 'bytes' or 'tensor', got {transport!r}")


def bytes_inputs(images: Sequence[bytes]) -> list[InferInput]:
    """``IMAGE`` BYTES ``[B, 1]``: one encoded image per batch row."""
    from tritonclient.grpc import InferInput

    data = np.empty((len(images), 1), dtype=np.object_)
    for i, encoded in enumerate(images):
        data[i, 0] = encoded
    tensor = InferInput(IMAGE, [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(data)
    return [tensor]


def tensor_inputs(tensors: Sequence[np.ndarray], params: Sequence[ResizeParams]) -> list[InferInput]:
    """``INPUT`` FP32 ``[B, 3, H, W]`` and ``RESIZE`` FP32 ``[B, 6]``."""
    from tritonclient.grpc import InferInput

    batch = np.stack(tensors) if len(tensors) > 1 else tensors[0][None]
    resize = np.stack([p.pack() for p in params])
    inputs = [InferInput(INPUT, list(batch.shape), "FP32"), InferInput(RESIZE, list(resize.shape), "FP32")]
    inputs[0].set_data_from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    inputs[1].set_data_from_numpy(resize)
    return inputs


def image_inputs(prepared: Prepared) -> list[InferInput]:
    """One image's request inputs, on whichever entry point its form goes to (a batch of one)."""
    if isinstance(prepared, bytes):
        return bytes_inputs([prepared])
    tensor, params = prepared
    return tensor_inputs([tensor], [params])


def parse_result(result: InferResult, info: ModelInfo) -> list[list[Detection]]:
    """Detections per batch row of an inference result (ragged outputs cut at ``COUNT``)."""
    arrays = [result.as_numpy(name) for name in OUTPUT_NAMES]
    missing = [name for name, array in zip(OUTPUT_NAMES, arrays, strict=True) if array is None]
    if missing:
        raise ServerError(f"the server's answer lacks {', '.join(missing)}: is this a yolo-server model?")
    boxes, scores, classes, count = arrays
    return parse_arrays(boxes, scores, classes, count, info)


def parse_arrays(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, count: np.ndarray, info: ModelInfo
) -> list[list[Detection]]:
    """Ragged outputs to detections.

    Args:
        boxes: float [B, K, 4] xyxy in original pixels (K is the largest count in the batch).
        scores: float [B, K].
        classes: int [B, K].
        count: int [B, 1] or [B]: valid rows of each batch entry.
        info: the model's, which labels the class ids (:meth:`ModelInfo.label`).
    """
    counts = np.asarray(count).reshape(len(boxes), -1)[:, 0].astype(np.int64)
    boxes = np.asarray(boxes).reshape(len(boxes), -1, 4)
    scores = np.asarray(scores).reshape(len(scores), -1)
    classes = np.asarray(classes).reshape(len(classes), -1)
    out: list[list[Detection]] = []
    for b, k in enumerate(counts.tolist()):
        if not 0 <= k <= boxes.shape[1]:
            raise ServerError(f"COUNT {k} outside the {boxes.shape[1]} rows sent")
        rows_box = boxes[b, :k].tolist()
        rows_score = scores[b, :k].tolist()
        rows_class = classes[b, :k].tolist()
        out.append(
            [
                Detection(
                    box=(box[0], box[1], box[2], box[3]),
                    score=score,
                    class_id=cls,
                    label=info.label(cls),
                )
                for box, score, cls in zip(rows_box, rows_score, rows_class, strict=True)
            ]
        )
    return out


def check_limits(info: ModelInfo, score_threshold: float | None, max_detections: int | None) -> None:
    """Validate per-call limits against the server's (they can only tighten them).

    Raises:
        InvalidInputError: a threshold outside [0, 1) (:func:`~yolo_client.contract.check_score_threshold`) or
            below the server's (detections under the server's threshold are never sent, so a lower one cannot be
            honoured), or a negative ``max_detections``.
    """
    if score_threshold is not None:
        try:
            check_score_threshold(score_threshold)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        if score_threshold < info.score_threshold:
            raise InvalidInputError(
                f"score_threshold {score_threshold:g} is below the server's {info.score_threshold:g}; the server "
                "never sends lower-scoring detections, so a call can only raise it"
            )
    if max_detections is not None and (
        isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 0
    ):
        raise InvalidInputError(f"max_detections must be an integer >= 0, got {max_detections!r}")


def apply_limits(
    detections: list[Detection], score_threshold: float | None, max_detections: int | None
) -> list[Detection]:
    """Client-side cut of score-sorted detections: scores above ``score_threshold``, then the first ``max_detections``.

    The score cut is :func:`~yolo_client.contract.above_score_threshold`, the server's own comparison (strictly
    above, as darknet), so a detection at the threshold is dropped whichever side applies it. Filtering after the
    server's NMS gives the same result as thresholding before it: a box suppressed by a higher-scoring one stays
    suppressed, since that one also passes the higher threshold.
    """
    if score_threshold is not None:
        above = above_score_threshold(np.array([d.score for d in detections], np.float32), score_threshold)
        detections = [d for d, keep in zip(detections, above, strict=True) if keep]
    if max_detections is not None:
        detections = detections[:max_detections]
    return detections


def parse_model_info(name: str, config: Mapping[str, Any]) -> ModelInfo:
    """:class:`ModelInfo` from ``get_model_config(name, as_json=True)`` (or its ``"config"`` member).

    Raises:
        ServerError: the model lacks the yolo-server parameters or carries malformed ones.
    """
    try:
        return ModelInfo.from_config(name, config)
    except (ValueError, TypeError) as err:
        raise ServerError(f"model {name!r} is not a yolo-server model, or a malformed one: {err}") from None


def repository_models(index: Mapping[str, Any]) -> list[RepositoryModel]:
    """Entries of ``get_model_repository_index(as_json=True)`` (fields Triton leaves out are empty)."""
    return [
        RepositoryModel(
            name=str(m.get("name", "")),
            version=str(m.get("version", "")),
            state=str(m.get("state", "")),
            reason=str(m.get("reason", "")),
        )
        for m in index.get("models", [])
    ]
