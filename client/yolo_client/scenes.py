"""Seeded synthetic scenes: filled circles, rectangles and triangles, with their boxes and classes (numpy + OpenCV).

The one generator of synthetic images: the demo model's training data (``yolo_server.training.scenes`` writes them
with COCO annotations), the benches, the load test's image mix, ``yolo-client bench`` and the tests all draw here.
A scene compresses like a photo (unlike noise) and gives a detector something to find.

Rules (issue 7): filled shapes in solid random colours (ellipses with axis
ratio under 1.15 count as circles; rectangles, squares included, and triangles
at any rotation) on backgrounds of random gradients, noise and clutter lines;
1 to 12 objects per image, 12 to 180 px across, overlapping each other by at
most IoU 0.5 (and never hiding more than :data:`MAX_HIDDEN` of an earlier
shape); images 240 to 1000 px a side, any aspect ratio, JPEG quality 70 to 95.
The colours are random, so the channel order is the caller's to name (RGB for
the demo's scenes).

Scene ``i`` of seed ``s`` depends on ``(s, i)`` only, so any subset can be
regenerated in any order, in any process. :func:`draw_scene` draws one at a
size the caller picks, from the caller's generator.

Example:
    >>> scene = generate_scene(seed=7, index=0)
    >>> scene.image.shape, scene.boxes.shape, scene.classes    # uint8 [H, W, 3] RGB, float32 [K, 4] xyxy, int64 [K]
    >>> frame = draw_scene(np.random.default_rng(0), width=640, height=480).image
    >>> jpeg = encode_jpeg(scene)                               # at the scene's quality
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "rectangle", "triangle")
MIN_SIDE, MAX_SIDE = 240, 1000
MIN_OBJECT, MAX_OBJECT = 12, 180
MAX_OBJECTS = 12
MAX_IOU = 0.5
MAX_HIDDEN = 0.4  # a later shape may cover at most this fraction of an earlier one
MAX_CIRCLE_RATIO = 1.15
MIN_SHAPE_SIDE = 20  # a smaller image (a test's) holds no shape: MIN_OBJECT px and a 1 px margin do not fit
_SHIFT = 4  # cv2 sub-pixel bits
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Scene:
    """One generated scene before JPEG encoding.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB.
        boxes: float32 ``[K, 4]`` xyxy in pixels, tight around each full shape.
        classes: int64 ``[K]`` indices into :data:`CLASS_NAMES`.
        areas: float32 ``[K]`` visible pixel area of each shape.
        quality: JPEG quality to save it with.
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    areas: np.ndarray
    quality: int


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``seed``."""
    return np.random.default_rng([seed, index, 0x5A4E])


def generate_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of ``seed``, its size drawn too (:data:`MIN_SIDE` to :data:`MAX_SIDE`): deterministic."""
    rng = scene_rng(seed, index)
    width, height = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    return draw_scene(rng, width, height)


def draw_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """A scene of ``width`` x ``height`` drawn from ``rng``: any size, a background alone under :data:`MIN_SHAPE_SIDE`."""
    image = _background(rng, width, height)
    owner = np.full((height, width), -1, dtype=np.int16)  # which shape each pixel shows
    full_area: list[int] = []
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    wanted = int(rng.integers(1, MAX_OBJECTS + 1)) if min(width, height) >= MIN_SHAPE_SIDE else 0
    for _ in range(wanted * 30):
        if len(boxes) == wanted:
            break
        cls = int(rng.integers(len(CLASS_NAMES)))
        size = float(rng.uniform(MIN_OBJECT, min(MAX_OBJECT, 0.9 * min(width, height))))
        outline = _outline(rng, cls, size)  # [P, 2] around (0, 0), float
        lo, hi = outline.min(0), outline.max(0)
        cx = float(rng.uniform(-lo[0] + 1, width - hi[0] - 1))
        cy = float(rng.uniform(-lo[1] + 1, height - hi[1] - 1))
        points = outline + (cx, cy)
        box = np.concatenate([points.min(0), points.max(0)]).astype(np.float32)
        if boxes and _iou(box, np.stack(boxes)).max() > MAX_IOU:
            continue
        mask = _mask(points, width, height)
        x1, y1, x2, y2 = _crop(box, width, height)
        region, covered = owner[y1:y2, x1:x2], mask[y1:y2, x1:x2]
        counts = np.bincount(region[covered].astype(np.int64) + 1, minlength=len(boxes) + 1)[1:]
        visible = np.bincount(owner[owner >= 0].astype(np.int64), minlength=len(boxes)) if boxes else counts
        if boxes and np.any(visible - counts < (1.0 - MAX_HIDDEN) * np.asarray(full_area)):
            continue
        area = int(covered.sum())
        if area < 20:
            continue
        colour = _contrasting_colour(rng, image[y1:y2, x1:x2][covered])
        _fill(image, points, colour)
        region[covered] = len(boxes)
        full_area.append(area)
        boxes.append(box)
        classes.append(cls)
    visible = np.bincount(owner[owner >= 0].astype(np.int64), minlength=len(boxes)).astype(np.float32)
    quality = int(rng.integers(70, 96))
    return Scene(
        image=image,
        boxes=np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
        classes=np.asarray(classes, dtype=np.int64),
        areas=visible,
        quality=quality,
    )


def scaled_scene(scene: Scene, factor: float) -> Scene:
    """``scene`` as a camera of ``factor`` times its resolution sees it: the image resized (bilinear, so its
    shapes keep soft edges), the boxes and areas scaled alike."""
    height, width = scene.image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    image = cv2.resize(scene.image, size, interpolation=cv2.INTER_LINEAR)
    scale = np.array([size[0] / width, size[1] / height] * 2, dtype=np.float32)
    areas = (scene.areas * scale[0] * scale[1]).astype(np.float32)
    return dataclasses.replace(scene, image=image, boxes=(scene.boxes * scale).astype(np.float32), areas=areas)


def encode_jpeg(scene: Scene) -> bytes:
    """The scene as JPEG bytes at its quality."""
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, scene.quality]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 ``[H, W, 3]`` RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Random linear gradient + Gaussian noise + clutter lines, uint8 ``[H, W, 3]``."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :] * math.cos(angle)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None] * math.sin(angle)
    t = xs + ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image: np.ndarray = c0[None, None, :] + t[..., None] * (c1 - c0)[None, None, :]
    sigma = rng.uniform(0, 20)
    small = rng.normal(0, sigma, size=(height // 2 + 1, width // 2 + 1, 3)).astype(np.float32)
    image += cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 16))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return image


def _outline(rng: np.random.Generator, cls: int, size: float) -> np.ndarray:
    """Polygon ``[P, 2]`` centred near (0, 0) whose larger bbox side is ``size`` px."""
    points: np.ndarray
    if cls == 0:  # circle, or an ellipse with axis ratio under 1.15
        ratio = rng.uniform(1.0, MAX_CIRCLE_RATIO - 0.01)
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        points = np.stack([np.cos(t) * ratio, np.sin(t)], axis=1)
    elif cls == 1:  # rectangle, squares included
        aspect = 1.0 if rng.random() < 0.25 else rng.uniform(1.0, 3.0)
        points = np.array([[-aspect, -1], [aspect, -1], [aspect, 1], [-aspect, 1]], dtype=np.float64)
    else:  # triangle with every angle >= 25 degrees (every arc >= 50)
        arcs = 50.0 + rng.dirichlet((2.0, 2.0, 2.0)) * 210.0
        start = rng.uniform(0, 360)
        angles = np.radians(start + np.concatenate([[0.0], np.cumsum(arcs[:2])]))
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    theta = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = points @ rotation.T
    extent = float((points.max(0) - points.min(0)).max())
    points = points * (size / extent)
    centred: np.ndarray = points - (points.max(0) + points.min(0)) / 2
    return centred


def _mask(points: np.ndarray, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(points * _ONE).astype(np.int32)], (1,), cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def _fill(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    cv2.fillPoly(image, [np.round(points * _ONE).astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour at least 80 (RGB distance) from the mean of the pixels it covers."""
    mean = under.reshape(-1, 3).mean(0) if under.size else np.full(3, 128.0)
    colour = rng.integers(0, 256, size=3)
    for _ in range(20):
        if np.linalg.norm(colour - mean) >= 80:
            break
        colour = rng.integers(0, 256, size=3)
    return int(colour[0]), int(colour[1]), int(colour[2])


def _crop(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1 = max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0)
    return x1, y1, min(int(math.ceil(box[2])) + 2, width), min(int(math.ceil(box[3])) + 2, height)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with ``[K, 4]`` boxes -> ``[K]``."""
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    iou: np.ndarray = inter / (area + areas - inter + 1e-9)
    return iou
