"""Raw tritonclient calls of the serving tests (inputs, ragged results, bursts) and comparison with the oracle."""

from __future__ import annotations

import queue
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from yolo_server.ops.config import PostprocessConfig

INVALID_ARGUMENT = "StatusCode.INVALID_ARGUMENT"
SCORE_ATOL = 1e-4
BOX_RTOL = 1e-3
BOX_ATOL_PX = 1e-2
MAX_DETECTIONS = PostprocessConfig().max_detections  # the shared server and its oracle keep the default cap
# what one call of a burst comes back with
Answer: TypeAlias = grpcclient.InferResult | InferenceServerException


@dataclass(frozen=True, eq=False)
class Found:
    """One image's detections as the server returned them (COUNT applied)."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def as_found(detections: Sequence[Any]) -> Found:
    """The SDK's ``list[Detection]`` as a :class:`Found` (for :func:`assert_same_detections`)."""
    return Found(
        np.array([d.box for d in detections], np.float64).reshape(-1, 4),
        np.array([d.score for d in detections], np.float64),
        np.array([d.class_id for d in detections], np.int64),
    )


def split_result(result: grpcclient.InferResult) -> list[Found]:
    """Ragged outputs of one request -> per image :class:`Found`."""
    counts = result.as_numpy("COUNT")
    boxes, scores, classes = (result.as_numpy(name) for name in ("BOXES", "SCORES", "CLASSES"))
    assert counts.dtype == np.int32 and classes.dtype == np.int32 and boxes.dtype == scores.dtype == np.float32
    return [Found(boxes[i, :n], scores[i, :n], classes[i, :n]) for i, n in enumerate(counts[:, 0])]


def bytes_inputs(images: Sequence[bytes]) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IMAGE", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data] for data in images], dtype=object).reshape(len(images), 1))
    return [tensor]


def tensor_inputs(batch: np.ndarray, resize: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = []
    for name, array in (("INPUT", batch), ("RESIZE", resize)):
        tensor = grpcclient.InferInput(name, list(array.shape), _triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _triton_dtype(dtype: np.dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(dtype)


def burst(
    client: grpcclient.InferenceServerClient, calls: Sequence[tuple[str, list[Any]]], timeout_s: float = 120
) -> list[Answer]:
    """Send every (model, inputs) at once (async); returns per call its InferResult or InferenceServerException."""
    answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
    for index, (model, inputs) in enumerate(calls):
        client.async_infer(model, inputs, callback=lambda result, error, i=index: answers.put((i, result, error)))
    results: list[Any] = [None] * len(calls)
    for _ in calls:
        index, result, error = answers.get(timeout=timeout_s)
        results[index] = error if error is not None else result
    return results


def assert_invalid_argument(answer: Any, *fragments: str) -> None:
    assert isinstance(answer, InferenceServerException), "expected INVALID_ARG, got a result"
    assert answer.status() == INVALID_ARGUMENT, answer
    for fragment in fragments:
        assert fragment in answer.message(), f"{fragment!r} not in {answer.message()!r}"


def assert_same_detections(got: Found, want: Any, max_detections: int = MAX_DETECTIONS) -> None:
    """Same detections up to float noise: classes equal, scores within 1e-4, boxes within 1e-3 relative.

    Order among near-equal scores may differ, so detections are matched one to one.
    Only where a list is cut at ``max_detections`` (by default the shared server's cap) may detections within
    the score tolerance of the cut be present on one side only.
    """
    assert len(got) > 0 or len(want) == 0
    unmatched_got = []
    used = np.zeros(len(want), dtype=bool)
    for i in range(len(got)):
        close = (
            ~used
            & (want.class_ids == got.class_ids[i])
            & (np.abs(want.scores - got.scores[i]) <= SCORE_ATOL)
            & np.all(np.abs(want.boxes - got.boxes[i]) <= BOX_ATOL_PX + BOX_RTOL * np.abs(want.boxes), axis=1)
        )
        if close.any():
            used[np.argmax(close)] = True
        else:
            unmatched_got.append(i)
    cut = min([*got.scores[-1:], *want.scores[-1:]], default=0.0) + SCORE_ATOL
    capped = max_detections in (len(got), len(want))
    stray = [float(got.scores[i]) for i in unmatched_got] + [float(s) for s in want.scores[~used]]
    assert not stray or (capped and max(stray) <= cut), (
        f"{len(got)} served vs {len(want)} in-process detections; unmatched scores {sorted(stray)[-5:]}"
    )
