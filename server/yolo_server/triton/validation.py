"""Per-request input checks shared by the Triton Python models (numpy only).

A check that fails raises :class:`InvalidInput`; the adapter turns it into an
``INVALID_ARG`` error on that request's response and counts ``reason`` in
``yolo_rejected_inputs_total`` (see docs/metrics.md).

Example:
    >>> check_network_input(batch, 416, 416)            # float32 [B, 3, 416, 416]
    >>> params = check_resize(packed, 416, 416)          # float32 [B, 6] -> list[ResizeParams]
    >>> batch, sizes = network_batch([network_input(None, pixels, resize, 416, 416), ...])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolo_client.contract import RESIZE_LEN
from yolo_client.geometry import ResizeParams, pixels_to_input

REJECTION_REASONS = (
    "empty",
    "too_large",
    "too_many_pixels",
    "bad_dimensions",
    "undecodable",
    "unsupported_format",
    "truncated",
    "too_many_scans",
    "bad_shape",
    "bad_dtype",
    "non_finite",
)


class InvalidInput(ValueError):
    """A request the server answers with ``INVALID_ARG``; ``reason`` is a metrics label."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(message)
        self.reason = reason


def check_array(name: str, array: np.ndarray, dtype: np.dtype, shape: Sequence[int]) -> None:
    """dtype, trailing shape (batch dimension excluded) and finiteness of one request's tensor.

    Args:
        name: tensor name for the message.
        array: ``[B, *shape]``.
        dtype: the expected numpy dtype.
        shape: the expected shape without the batch dimension.
    """
    if array.dtype != dtype:
        raise InvalidInput("bad_dtype", f"{name} must be {np.dtype(dtype).name}, got {array.dtype.name}")
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != tuple(shape):
        raise InvalidInput(
            "bad_shape", f"{name} must be [batch, {', '.join(map(str, shape))}], got {list(array.shape)}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput("non_finite", f"{name} contains NaN or Inf")


def check_network_input(batch: np.ndarray, net_width: int, net_height: int) -> None:
    """``INPUT`` / ``INPUT__0``: float32 ``[B, 3, net_height, net_width]``, finite."""
    check_array("INPUT", batch, np.dtype(np.float32), (3, net_height, net_width))


@dataclass(frozen=True, eq=False)
class NetworkRows:
    """One request's checked detector input: float32 ``inputs``, or uint8 ``pixels`` placed by ``params``."""

    inputs: np.ndarray | None = None
    pixels: np.ndarray | None = None
    params: Sequence[ResizeParams] = ()

    @property
    def sent(self) -> np.ndarray:
        """The array the request carried, ``[b, 3, H, W]``."""
        array = self.inputs if self.inputs is not None else self.pixels
        assert array is not None
        return array

    def __len__(self) -> int:
        return len(self.sent)

    def write(self, out: np.ndarray) -> None:
        """Fill float32 ``out`` ``[len(self), 3, H, W]``: the pixels are scaled and padded straight into it."""
        if self.inputs is not None:
            out[...] = self.inputs
            return
        assert self.pixels is not None
        for image, placement, row in zip(self.pixels, self.params, out, strict=True):
            pixels_to_input(image, placement, out=row)


def network_input(
    inputs: np.ndarray | None, pixels: np.ndarray | None, resize: np.ndarray | None, net_width: int, net_height: int
) -> NetworkRows:
    """The detector's input from one request's ``INPUT__0``, or its ``PIXELS__0`` and ``RESIZE``, checked.

    ``INPUT__0`` (the tensor entry point) is float32 as sent; ``PIXELS__0`` (uint8, from the preprocess)
    is scaled and its padding filled by :func:`yolo_client.geometry.pixels_to_input`, placed by ``RESIZE``,
    when :func:`network_batch` writes the batch.
    """
    if (inputs is None) == (pixels is None):
        raise InvalidInput("bad_shape", "send exactly one of INPUT__0 (float32) and PIXELS__0 (uint8 with RESIZE)")
    if inputs is not None:
        check_network_input(inputs, net_width, net_height)
        return NetworkRows(inputs=inputs)
    assert pixels is not None
    check_array("PIXELS", pixels, np.dtype(np.uint8), (3, net_height, net_width))
    if resize is None:
        raise InvalidInput("bad_shape", "PIXELS__0 needs RESIZE, which places the image in the padding")
    params = check_resize(resize, net_width, net_height)
    if len(params) != len(pixels):
        raise InvalidInput("bad_shape", f"{len(pixels)} images in PIXELS__0 but {len(params)} rows in RESIZE")
    return NetworkRows(pixels=pixels, params=params)


def network_batch(requests: Sequence[NetworkRows]) -> tuple[np.ndarray, list[int]]:
    """The float32 batch of a dynamic batch's requests and their sizes, written once (no stacking copies).

    A lone float32 request is passed through as sent.
    """
    sizes = [len(rows) for rows in requests]
    if len(requests) == 1 and requests[0].inputs is not None:
        return requests[0].inputs, sizes
    batch = np.empty((sum(sizes), *requests[0].sent.shape[1:]), dtype=np.float32)
    start = 0
    for rows, size in zip(requests, sizes, strict=True):
        rows.write(batch[start : start + size])
        start += size
    return batch, sizes


def check_resize(packed: np.ndarray, net_width: int, net_height: int) -> list[ResizeParams]:
    """``RESIZE`` float32 ``[B, 6]`` -> one :class:`ResizeParams` per image, checked for consistency.

    Every value must be an exact non-negative integer, the image at least 1x1,
    and the resized image must fit inside the network input at its padding.
    """
    check_array("RESIZE", packed, np.dtype(np.float32), (RESIZE_LEN,))
    if (packed != np.round(packed)).any() or (packed < 0).any():
        raise InvalidInput("bad_dimensions", f"RESIZE values must be non-negative integers, got {packed.tolist()}")
    params = [ResizeParams.unpack(row, net_width, net_height) for row in packed]
    for p in params:
        if p.width < 1 or p.height < 1 or p.new_width < 1 or p.new_height < 1:
            raise InvalidInput("bad_dimensions", f"RESIZE describes an empty image: {p.pack().tolist()}")
        if p.pad_x + p.new_width > net_width or p.pad_y + p.new_height > net_height:
            raise InvalidInput(
                "bad_dimensions",
                f"RESIZE places a {p.new_width}x{p.new_height} image at ({p.pad_x}, {p.pad_y}), "
                f"outside the {net_width}x{net_height} input",
            )
    return params
