"""The shapes demo's dataset: seeded scenes (``yolo_client.scenes``, the one generator) as JPEGs with COCO annotations.

Scene ``i`` of seed ``s`` depends on ``(s, i)`` only (see :func:`yolo_client.scenes.generate_scene` for the rules
the scenes follow), so any subset can be regenerated in any order, in any process: ``yolo-train scenes`` writes the
calibration, validation and evaluation sets from seeds.

Example:
    >>> write_dataset("data/val", count=500, seed=1000)         # JPEGs + annotations.json (COCO)
    >>> write_video("clip.mp4", count=30, seed=1000)            # the same scenes as the frames of a video
"""

from __future__ import annotations

import json
from pathlib import Path

from yolo_client.geometry import resize_params
from yolo_client.scenes import CLASS_NAMES, encode_jpeg, generate_scene, scaled_scene


def coco_categories() -> list[dict[str, object]]:
    """COCO categories: ids 1..3 for class indices 0..2."""
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)]


def write_dataset(out_dir: str | Path, count: int, seed: int, progress: bool = True, scale: float = 1.0) -> Path:
    """Write scenes ``0..count-1`` of ``seed`` as JPEGs plus ``annotations.json`` (COCO); returns the json path.

    ``scale``: each scene as a camera of that many times its resolution sees it (``scaled_scene``), e.g. 3 for
    frames of 720 to 3000 pixels a side.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for index in tqdm(range(count), desc=f"scenes seed={seed}", disable=not progress, unit="img"):
        scene = generate_scene(seed, index)
        if scale != 1.0:
            scene = scaled_scene(scene, scale)
        name = f"images/{seed}_{index:06d}.jpg"
        (out / name).write_bytes(encode_jpeg(scene))
        height, width = scene.image.shape[:2]
        images.append({"id": index + 1, "file_name": name, "width": width, "height": height})
        for box, cls, area in zip(scene.boxes, scene.classes, scene.areas, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": int(cls) + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": float(area),
                    "iscrowd": 0,
                }
            )
    path = out / "annotations.json"
    info = {"description": f"synthetic shapes, seed {seed}", "seed": seed}
    path.write_text(
        json.dumps({"info": info, "images": images, "annotations": annotations, "categories": coco_categories()})
    )
    return path


VIDEO_SIZE = (1280, 720)
VIDEO_FPS = 10.0
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def write_video(
    path: str | Path, count: int, seed: int, size: tuple[int, int] = VIDEO_SIZE, fps: float = VIDEO_FPS
) -> Path:
    """Scenes ``0..count-1`` of ``seed`` as the frames of one video at ``fps`` (``yolo-client detect``'s video
    input, for a demo): each scene letterboxed into ``size`` (width, height) on black."""
    import cv2
    import numpy as np

    out = Path(path)
    codec = VIDEO_CODECS.get(out.suffix.lower())
    if codec is None:
        raise ValueError(f"a video is written as {', '.join(VIDEO_CODECS)}, not {out.suffix or 'no suffix'}")
    width, height = size
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {out}")
    try:
        for index in range(count):
            image = generate_scene(seed, index).image
            place = resize_params(image.shape[1], image.shape[0], width, height, letterbox=True)
            frame = np.zeros((height, width, 3), dtype=np.uint8)
            resized = cv2.resize(image, (place.new_width, place.new_height), interpolation=cv2.INTER_LINEAR)
            rows, columns = (
                slice(place.pad_y, place.pad_y + place.new_height),
                slice(place.pad_x, place.pad_x + place.new_width),
            )
            frame[rows, columns] = cv2.cvtColor(resized, cv2.COLOR_RGB2BGR)
            writer.write(frame)
    finally:
        writer.release()
    return out
