"""Render detections (boxes and labels) on an image with OpenCV.

Example:
    >>> image = cv2.imread("dog.jpg")
    >>> cv2.imwrite("dog.out.jpg", draw_detections(image, client.detect(image, color="bgr")))
    >>> save_rendered("dog.jpg", "dog.out.png", detections)      # any accepted input, written by extension
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Iterable

import numpy as np

from .errors import InvalidInputError
from .images import ImageInput, to_rgb
from .types import Color, Detection


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, well-spread colour for a class id (golden-ratio hues)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(
    image: np.ndarray, detections: Iterable[Detection], *, thickness: int = 2, font_scale: float = 0.5
) -> np.ndarray:
    """A copy of a uint8 ``[H, W, 3]`` image with each detection's box and ``label score`` drawn on it (``#track_id
    label score`` for a tracked one).

    Colours are per class; the channel order of ``image`` is kept (pass BGR to write with ``cv2.imwrite``).
    """
    import cv2

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"draw_detections needs a uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}")
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    for det in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        colour = class_color(det.class_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness, lineType=cv2.LINE_AA)
        text = f"{det.label} {det.score:.2f}"
        if det.track_id is not None:
            text = f"#{det.track_id} {text}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else min(y1 + thickness, max(0, height - th - base - 2))
        tx = min(max(0, x1), max(0, width - tw - 2))
        cv2.rectangle(out, (tx, ty), (tx + tw + 2, ty + th + base + 2), colour, cv2.FILLED)
        luminance = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(out, text, (tx + 1, ty + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, ink, 1, cv2.LINE_AA)
    return out


def save_rendered(
    image: ImageInput, path: str | os.PathLike[str], detections: Iterable[Detection], *, color: Color | None = None
) -> None:
    """Draw ``detections`` on any accepted input and write it to ``path`` (format from the extension)."""
    import cv2

    bgr = np.ascontiguousarray(to_rgb(image, color=color)[:, :, ::-1])
    if not cv2.imwrite(os.fspath(path), draw_detections(bgr, detections)):
        raise InvalidInputError(f"cannot write {os.fspath(path)!r} (unknown extension or unwritable directory)")
