"""``execute`` for the models that take encoded images (``NAME_preprocess`` and the fused cpu ``NAME``).

Each request's ``IMAGE`` is decoded, checked and letterboxed by the model's :class:`Preprocessor`, its formats
and decode times counted, and a rejected one counted by its reason; the accepted requests then run together
(:func:`yolo_server.triton.execution.execute_batched`).

Example (inside ``TritonPythonModel.execute``):
    >>> return execute_image_requests(pb_utils, requests, self.preprocess, self.metrics, self._run)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from yolo_client.contract import IMAGE
from yolo_server.triton.execution import execute_batched
from yolo_server.triton.metrics import ModelMetrics
from yolo_server.triton.preprocess import PreprocessedRequest, Preprocessor


def execute_image_requests(
    pb_utils: Any,
    requests: Sequence[Any],
    preprocess: Preprocessor,
    metrics: ModelMetrics,
    run: Callable[[list[PreprocessedRequest]], list[list[Any]]],
) -> list[Any]:
    """One response per request, as :func:`~yolo_server.triton.execution.execute_batched`.

    Args:
        pb_utils: the stub's ``triton_python_backend_utils`` module.
        requests: the requests of one ``execute`` call, each with ``IMAGE`` (encoded bytes ``[b, 1]``).
        preprocess: decodes a request's images (:class:`InvalidInput` for a bad one).
        metrics: the model's; counts the decoded formats and times, and the rejections.
        run: the accepted requests' images -> per request, its output ``pb_utils.Tensor`` list.
    """

    def read(request: Any) -> PreprocessedRequest:
        prepared = preprocess(pb_utils.get_input_tensor_by_name(request, IMAGE).as_numpy())
        metrics.decoded(prepared.formats, prepared.seconds)
        return prepared

    return execute_batched(pb_utils, requests, read, run, lambda exc: metrics.rejected(exc.reason))
