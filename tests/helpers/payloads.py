"""Payloads built to cross one limit each (tests/unit/test_imaging.py, tests/integration/test_serving_errors.py)."""

from __future__ import annotations

import io

import numpy as np

SOS = b"\xff\xda"
EOI = b"\xff\xd9"


def progressive_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """A progressive JPEG as PIL (libjpeg) writes it: about ten scans."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, progressive=True)
    return buffer.getvalue()


def scan_bomb(rgb: np.ndarray, scans: int) -> bytes:
    """A progressive JPEG whose last scan is repeated until the file holds ``scans`` scans.

    A repeated refinement scan is legal to a decoder, which works through the whole image once per scan: the
    decode time grows with the scan count while the file stays small.
    """
    data = progressive_jpeg(rgb)
    last = data.rindex(SOS)
    end = data.rindex(EOI)
    have = data.count(SOS)
    if scans < have:
        raise ValueError(f"the JPEG already has {have} scans")
    return data[:end] + data[last:end] * (scans - have) + data[end:]


def tiff(rgb: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".tiff", rgb)[1].tobytes()


def jpeg2000(rgb: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".jp2", rgb)[1].tobytes()


def gif(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "GIF")
    return buffer.getvalue()
