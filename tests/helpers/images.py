"""Synthetic test images: a seeded scene (the project's one generator), seeded noise, and cv2's encode/decode.

For a test that needs "some image": the pixels are arbitrary but repeatable. A test whose assertions depend on
what is drawn where (a box at a known place, a training target) draws its own.
"""

from __future__ import annotations

import cv2
import numpy as np

from yolo_client.scenes import draw_scene


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: the project's synthetic scene (``yolo_client.scenes``) at this size, from ``seed``. Its
    colours are random (so the channel order is the caller's to name: RGB or BGR alike); it compresses like a photo,
    unlike noise, and gives the random-weights detector something to find."""
    return draw_scene(np.random.default_rng(seed), width, height).image


def noise(*shape: int, seed: int = 0) -> np.ndarray:
    """uint8 uniform noise of ``shape``: an image (``noise(7, 9, 3)``), or, ``.tobytes()``, bytes of no format."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    """``cv2.imencode`` (``image`` in cv2's BGR order) with its ``params`` (flag, value, ...), as bytes."""
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return data.tobytes()


def decode_rgb(data: bytes) -> np.ndarray:
    """The test side's decode of encoded bytes (cv2, EXIF applied, 8-bit), as RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
