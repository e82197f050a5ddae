"""A realistic mix of encoded test images: several sizes and formats, generated (no files, no downloads).

A mix is written ``WIDTHxHEIGHT:FORMAT:WEIGHT`` entries separated by commas; each entry becomes a few distinct
synthetic scenes (``yolo_client.scenes``: gradient background, noise, clutter lines, filled shapes), so the encoded
sizes look like camera frames rather than flat colour or pure noise.

Example:
    >>> mix = ImageMix.generate(parse_mix("640x480:jpeg:3,1920x1080:png:1"), variants=2, seed=0)
    >>> kind, data = mix.pick(random.Random(1))
    >>> kind.label, data[:2]
    ('640x480.jpeg', b'\\xff\\xd8')
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import cv2
import numpy as np

from yolo_client.scenes import draw_scene

DEFAULT_MIX = "640x480:jpeg:5,1280x720:jpeg:3,1920x1080:jpeg:1,640x480:png:1,800x600:webp:1,416x416:bmp:1"
FORMATS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp"}
_ENTRY = re.compile(r"^(\d+)x(\d+):([a-z]+):(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class ImageKind:
    """One entry of the mix: a size, an encoding and its share of the requests."""

    width: int
    height: int
    fmt: str
    weight: float

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}.{self.fmt}"


def parse_mix(spec: str) -> list[ImageKind]:
    """``"640x480:jpeg:5,1920x1080:png:1"`` -> image kinds; ValueError names the bad entry."""
    kinds = []
    for entry in (part.strip() for part in spec.split(",")):
        match = _ENTRY.match(entry)
        if not match:
            raise ValueError(f"image mix entry {entry!r}: use WIDTHxHEIGHT:FORMAT:WEIGHT, e.g. 640x480:jpeg:5")
        width, height, fmt, weight = int(match[1]), int(match[2]), match[3], float(match[4])
        if fmt not in FORMATS:
            raise ValueError(f"image mix entry {entry!r}: format must be one of {', '.join(FORMATS)}")
        if not (16 <= width <= 8192 and 16 <= height <= 8192) or weight <= 0:
            raise ValueError(f"image mix entry {entry!r}: sides 16..8192 and a positive weight")
        kinds.append(ImageKind(width, height, fmt, weight))
    if not kinds:
        raise ValueError("empty image mix")
    return kinds


def encode(image: np.ndarray, fmt: str) -> bytes:
    params = {"jpeg": [cv2.IMWRITE_JPEG_QUALITY, 90], "webp": [cv2.IMWRITE_WEBP_QUALITY, 85]}.get(fmt, [])
    ok, buffer = cv2.imencode(FORMATS[fmt], image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {fmt}")
    return buffer.tobytes()


@dataclass(frozen=True)
class ImageMix:
    """Encoded images per kind, and a weighted pick."""

    kinds: tuple[ImageKind, ...]
    images: dict[str, tuple[bytes, ...]]

    @classmethod
    def generate(cls, kinds: list[ImageKind], variants: int = 3, seed: int = 0) -> ImageMix:
        rng = np.random.default_rng(seed)
        images = {
            kind.label: tuple(encode(draw_scene(rng, kind.width, kind.height).image, kind.fmt) for _ in range(variants))
            for kind in kinds
        }
        return cls(tuple(kinds), images)

    def pick(self, rng: random.Random) -> tuple[ImageKind, bytes]:
        (kind,) = rng.choices(self.kinds, weights=[k.weight for k in self.kinds])
        return kind, rng.choice(self.images[kind.label])
