"""One response per request, errors on that request only: the shared shape of every ``execute``.

A Python model's ``execute`` gets the requests of one dynamic batch. Each is
read and checked on its own (a bad one gets ``INVALID_ARG``), the accepted
ones run together in one pass, and each gets its own outputs back. A failure
of the batched pass itself answers the accepted requests with ``INTERNAL``;
nothing is raised to Triton.

Example (inside ``TritonPythonModel.execute``):
    >>> return execute_batched(pb_utils, requests, read=self._read, run=self._run, on_reject=self._count)
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from yolo_server.triton.validation import InvalidInput

Payload = TypeVar("Payload")


def concatenate_rows(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Per-request ``[b_i, ...]`` arrays -> ``[sum b_i, ...]`` and the ``b_i``."""
    sizes = [int(part.shape[0]) for part in parts]
    batch = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return batch, sizes


def split_rows(batch: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Inverse of :func:`concatenate_rows` for one batched output."""
    return np.split(batch, np.cumsum(sizes)[:-1], axis=0)


def execute_batched(
    pb_utils: Any,
    requests: Sequence[Any],
    read: Callable[[Any], Payload],
    run: Callable[[list[Payload]], list[list[Any]]],
    on_reject: Callable[[InvalidInput], None] = lambda exc: None,
) -> list[Any]:
    """Answer every request exactly once.

    Args:
        pb_utils: the stub's ``triton_python_backend_utils`` module.
        requests: the requests of one ``execute`` call.
        read: request -> payload; raises :class:`InvalidInput` for a bad request.
        run: payloads of the accepted requests -> per payload, its output ``pb_utils.Tensor`` list.
        on_reject: called with each rejection (metrics).
    Returns:
        One ``pb_utils.InferenceResponse`` per request, in order.
    """
    responses: list[Any] = [None] * len(requests)
    accepted: list[int] = []
    payloads: list[Payload] = []
    for index, request in enumerate(requests):
        try:
            payloads.append(read(request))
            accepted.append(index)
        except InvalidInput as exc:
            on_reject(exc)
            responses[index] = error_response(pb_utils, str(exc), pb_utils.TritonError.INVALID_ARG)
        except Exception as exc:  # a bug reading one request must not fail the batch
            responses[index] = error_response(pb_utils, _describe(pb_utils, exc), pb_utils.TritonError.INTERNAL)
    if payloads:
        try:
            outputs = run(payloads)
            for index, tensors in zip(accepted, outputs, strict=True):
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        except Exception as exc:  # answered on each response instead of raised
            message = _describe(pb_utils, exc)
            for index in accepted:
                responses[index] = error_response(pb_utils, message, pb_utils.TritonError.INTERNAL)
    return responses


def error_response(pb_utils: Any, message: str, code: Any) -> Any:
    """An ``InferenceResponse`` carrying only an error."""
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def _describe(pb_utils: Any, exc: Exception) -> str:
    """The message for the client; the traceback goes to Triton's log."""
    pb_utils.Logger.log_error("".join(traceback.format_exception(exc)))
    return f"internal error: {type(exc).__name__}: {exc}"
