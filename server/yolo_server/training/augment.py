"""Training images: a pool of stretched scenes, mosaic, scale jitter, flips, random training shapes.

The pool holds scenes as the server sees them: JPEG-encoded at the scene's
quality, decoded, and stretch-resized to the serving size (yolov4-tiny does not
letterbox). Training samples are built from it at a random network size:
mosaic (four scenes around a random centre, darknet style: each scene at full
scale, cropped to its quadrant) or a single jittered scene.

Example:
    >>> pool = build_pool(seed=0, count=6000, size=416)
    >>> images, gt = sample_batch(np.random.default_rng(0), pool, batch=32, size=352, mosaic_prob=0.5)
    >>> images.shape, gt.shape    # float32 [32, 3, 352, 352] RGB in [0, 1]; float32 [M, 6] image, class, x1, y1, x2, y2
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import get_context

import cv2
import numpy as np

from yolo_client.scenes import decode_jpeg, encode_jpeg, generate_scene

GREY = 127
MIN_VISIBLE = 0.5  # keep a cropped box when at least this fraction of it stays in view
MIN_SIDE_PX = 2.0


@dataclass(frozen=True)
class Pool:
    """Scenes stretched to ``size x size``: ``images`` uint8 ``[N, S, S, 3]``, per scene ``boxes`` float32 ``[K, 4]`` and ``classes`` int64 ``[K]``."""

    images: np.ndarray
    boxes: tuple[np.ndarray, ...]
    classes: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def stretched_scene(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scene ``(seed, index)`` through JPEG, stretch-resized to ``size``: (image, boxes, classes)."""
    seed, index, size = args
    scene = generate_scene(seed, index)
    image = decode_jpeg(encode_jpeg(scene))
    height, width = image.shape[:2]
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    boxes = scene.boxes * np.array([size / width, size / height] * 2, dtype=np.float32)
    return resized, boxes, scene.classes


def build_pool(seed: int, count: int, size: int, workers: int = 2, progress: bool = True) -> Pool:
    """Generate scenes ``0..count-1`` of ``seed`` in ``workers`` processes."""
    from tqdm import tqdm

    images = np.empty((count, size, size, 3), np.uint8)
    boxes: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    jobs = [(seed, i, size) for i in range(count)]
    with get_context("fork").Pool(workers) as workers_pool:
        results = workers_pool.imap(stretched_scene, jobs, chunksize=16)
        for i, (image, b, c) in enumerate(
            tqdm(results, total=count, desc="scene pool", disable=not progress, unit="img")
        ):
            images[i] = image
            boxes.append(b)
            classes.append(c)
    return Pool(images, tuple(boxes), tuple(classes))


def place_boxes(
    boxes: np.ndarray,
    classes: np.ndarray,
    scale: float,
    shift: tuple[float, float],
    region: tuple[float, float, float, float],
    min_visible: float = MIN_VISIBLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Box bookkeeping of a scaled, shifted, cropped image.

    Args:
        boxes: float32 ``[K, 4]`` xyxy in the source image.
        classes: int64 ``[K]``.
        scale: source -> destination scale.
        shift: (dx, dy) added after scaling.
        region: (x1, y1, x2, y2) of the destination that shows this image; boxes are clipped to it.
        min_visible: drop boxes keeping less than this fraction of their area after clipping.
    Returns:
        (float32 ``[K', 4]``, int64 ``[K']``) kept boxes in destination pixels and their classes.
    """
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    moved = boxes * scale + np.array([shift[0], shift[1], shift[0], shift[1]], dtype=np.float32)
    x1, y1, x2, y2 = region
    clipped = np.stack(
        [
            np.clip(moved[:, 0], x1, x2),
            np.clip(moved[:, 1], y1, y2),
            np.clip(moved[:, 2], x1, x2),
            np.clip(moved[:, 3], y1, y2),
        ],
        axis=1,
    )
    area = np.prod(moved[:, 2:] - moved[:, :2], axis=1)
    kept_area = np.prod(clipped[:, 2:] - clipped[:, :2], axis=1)
    sides = clipped[:, 2:] - clipped[:, :2]
    keep = (kept_area >= min_visible * area) & (sides.min(1) >= MIN_SIDE_PX)
    return clipped[keep].astype(np.float32), classes[keep]


def paste(
    canvas: np.ndarray, image: np.ndarray, scale: float, shift: tuple[int, int], region: tuple[int, int, int, int]
) -> None:
    """Draw ``image`` resized by ``scale`` with its origin at ``shift`` into ``canvas``, inside ``region`` only."""
    height, width = image.shape[:2]
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    x1, y1, x2, y2 = region
    dx, dy = shift
    sx1, sy1 = max(x1 - dx, 0), max(y1 - dy, 0)
    sx2, sy2 = min(x2 - dx, new_w), min(y2 - dy, new_h)
    if sx2 <= sx1 or sy2 <= sy1:
        return
    canvas[sy1 + dy : sy2 + dy, sx1 + dx : sx2 + dx] = resized[sy1:sy2, sx1:sx2]


def mosaic(
    rng: np.random.Generator, pool: Pool, size: int, scale_range: tuple[float, float] = (0.5, 1.2)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four random pool scenes around a random centre: (uint8 ``[S, S, 3]``, boxes ``[K, 4]``, classes ``[K]``)."""
    canvas = np.full((size, size, 3), GREY, np.uint8)
    cx, cy = (int(v) for v in rng.uniform(0.3 * size, 0.7 * size, size=2))
    regions = [(0, 0, cx, cy), (cx, 0, size, cy), (0, cy, cx, size), (cx, cy, size, size)]
    all_boxes, all_classes = [], []
    for region in regions:
        index = int(rng.integers(len(pool)))
        source = pool.images[index]
        scale = float(rng.uniform(*scale_range)) * size / source.shape[1]
        new = source.shape[1] * scale
        x1, y1, x2, y2 = region
        # the scene's own corner nearest the mosaic centre may move anywhere that keeps the quadrant covered
        dx = int(rng.uniform(min(x2 - new, x1), max(x2 - new, x1) + 1))
        dy = int(rng.uniform(min(y2 - new, y1), max(y2 - new, y1) + 1))
        paste(canvas, source, scale, (dx, dy), region)
        b, c = place_boxes(
            pool.boxes[index], pool.classes[index], scale, (dx, dy), (float(x1), float(y1), float(x2), float(y2))
        )
        all_boxes.append(b)
        all_classes.append(c)
    return canvas, np.concatenate(all_boxes), np.concatenate(all_classes)


def single(
    rng: np.random.Generator, pool: Pool, size: int, scale_range: tuple[float, float] = (0.7, 1.3)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pool scene, scaled and translated at random on a grey canvas."""
    canvas = np.full((size, size, 3), GREY, np.uint8)
    index = int(rng.integers(len(pool)))
    source = pool.images[index]
    scale = float(rng.uniform(*scale_range)) * size / source.shape[1]
    new = source.shape[1] * scale
    dx = int(rng.uniform(min(0, size - new), max(0, size - new) + 1))
    dy = int(rng.uniform(min(0, size - new), max(0, size - new) + 1))
    paste(canvas, source, scale, (dx, dy), (0, 0, size, size))
    b, c = place_boxes(pool.boxes[index], pool.classes[index], scale, (dx, dy), (0.0, 0.0, float(size), float(size)))
    return canvas, b, c


def flip(image: np.ndarray, boxes: np.ndarray, horizontal: bool, vertical: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an image and its xyxy boxes."""
    size_y, size_x = image.shape[:2]
    boxes = boxes.copy()
    if horizontal:
        image = image[:, ::-1]
        boxes[:, [0, 2]] = size_x - boxes[:, [2, 0]]
    if vertical:
        image = image[::-1]
        boxes[:, [1, 3]] = size_y - boxes[:, [3, 1]]
    return image, boxes


def sample_batch(
    rng: np.random.Generator, pool: Pool, batch: int, size: int, mosaic_prob: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """A training batch: float32 ``[B, 3, S, S]`` RGB in [0, 1] and gt float32 ``[M, 6]`` (image, class, xyxy)."""
    images = np.empty((batch, 3, size, size), np.float32)
    rows = []
    for i in range(batch):
        make = mosaic if rng.random() < mosaic_prob else single
        image, boxes, classes = make(rng, pool, size)
        image, boxes = flip(image, boxes, bool(rng.random() < 0.5), bool(rng.random() < 0.5))
        images[i] = image.transpose(2, 0, 1) / np.float32(255.0)
        rows.append(
            np.concatenate(
                [np.full((len(boxes), 1), i, np.float32), classes[:, None].astype(np.float32), boxes], axis=1
            )
        )
    return images, np.concatenate(rows).astype(np.float32)
