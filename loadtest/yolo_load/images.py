"""A realistic mix of encoded test images: several sizes and formats, generated (no files, no downloads).

A mix is written ``WIDTHxHEIGHT:FORMAT:WEIGHT`` entries separated by commas; each entry becomes a few distinct
synthetic scenes (smooth background, filled shapes, sensor noise), so the encoded sizes look like camera frames
rather than flat colour or pure noise.

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


def synthetic_scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 BGR ``[height, width, 3]`` frame: gradient background, random filled shapes, mild noise."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    tilt = rng.uniform(-60, 60, size=(2, 3)).astype(np.float32)
    image = base + ys[..., None] * tilt[0] + xs[..., None] * tilt[1]
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 12))):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x1, x2 = sorted(int(v) for v in rng.integers(0, width, size=2))
        y1, y2 = sorted(int(v) for v in rng.integers(0, height, size=2))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x1, y1), (max(x2, x1 + 8), max(y2, y1 + 8)), color, thickness=-1)
        else:
            radius = max(4, min(x2 - x1, y2 - y1) // 2)
            cv2.circle(image, ((x1 + x2) // 2, (y1 + y2) // 2), radius, color, thickness=-1)
    noise = rng.normal(0, 6, size=image.shape).astype(np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


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
            kind.label: tuple(encode(synthetic_scene(kind.width, kind.height, rng), kind.fmt) for _ in range(variants))
            for kind in kinds
        }
        return cls(tuple(kinds), images)

    def pick(self, rng: random.Random) -> tuple[ImageKind, bytes]:
        (kind,) = rng.choices(self.kinds, weights=[k.weight for k in self.kinds])
        return kind, rng.choice(self.images[kind.label])
