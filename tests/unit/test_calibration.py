"""INT8 calibration sets: found, checked and refused with a reason, and preprocessed exactly as served."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers.darknet_files import DEMO_CFG
from yolo_server.export.calibration import (
    MIN_CALIBRATION_IMAGES,
    CalibrationError,
    calibration_files,
    calibration_inputs,
    spread,
)
from yolo_server.pipeline import Detector
from yolo_server.repository.spec import Decoding
from yolo_server.triton.imaging import DecodeLimits, decode_image
from yolo_server.triton.settings import PreprocessSettings

DECODING = Decoding()
SETTINGS = PreprocessSettings(
    320, 256, True, DECODING.max_pixels, DECODING.max_bytes, pixels=True, jpeg_decode=DECODING.jpeg_decode
)


def write_images(directory: Path, sizes: list[tuple[int, int]], suffix: str = ".jpg") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(3)
    paths = []
    for index, (width, height) in enumerate(sizes):
        path = directory / f"frame{index:03d}{suffix}"
        assert cv2.imwrite(str(path), generator.integers(0, 255, (height, width, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_images_are_found_at_any_depth_by_suffix_and_sorted(tmp_path: Path) -> None:
    found = [
        *write_images(tmp_path / "a", [(40, 30)] * 2, ".png"),
        *write_images(tmp_path / "b" / "c", [(40, 30)], ".JPEG"),
        *write_images(tmp_path, [(40, 30)], ".bmp"),
        *write_images(tmp_path / "d", [(40, 30)], ".webp"),
    ]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "labels.json").write_text("{}")
    assert calibration_files(tmp_path, minimum=5) == sorted(found)


def test_a_missing_or_too_small_set_is_refused_with_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="is not a directory"):
        calibration_files(tmp_path / "missing")
    write_images(tmp_path, [(40, 30)] * 3)
    with pytest.raises(CalibrationError, match=rf"3 image\(s\).* at least {MIN_CALIBRATION_IMAGES}, from the traffic"):
        calibration_files(tmp_path)
    assert len(calibration_files(tmp_path, minimum=3)) == 3


def test_spread_takes_evenly_from_first_to_last() -> None:
    files = [Path(f"{index:04d}.jpg") for index in range(1000)]
    picked = spread(files, 300)
    assert len(picked) == len(set(picked)) == 300
    assert picked[0] == files[0] and picked[-1] == files[-1]
    assert spread(files[:10], 300) == files[:10]


def test_inputs_are_what_the_server_feeds_the_network(tmp_path: Path) -> None:
    """Decode, letterbox, scale: the same floats as the oracle's preprocessing of the same file."""
    paths = write_images(tmp_path, [(640, 480), (97, 333), (320, 256)], ".png")
    oracle = Detector(DEMO_CFG, input_size=(320, 256))
    settings = dataclasses.replace(SETTINGS, letterbox=oracle.spec.net.letter_box)
    inputs = calibration_inputs(paths, settings, minimum=3, progress=False)
    for item, path in zip(inputs, paths, strict=True):
        expected, placement = oracle.preprocess(decode_image(path.read_bytes(), DecodeLimits()).rgb)
        assert item.tensor.shape == (1, 3, 256, 320) and item.tensor.dtype == np.float32
        assert item.placement == placement and item.path == path
        np.testing.assert_allclose(item.tensor[0], expected, atol=1e-6)


def test_files_the_server_would_refuse_are_left_out_and_too_few_left_is_refused(tmp_path: Path) -> None:
    paths = write_images(tmp_path, [(64, 48)] * 3)
    paths[1].write_bytes(b"\xff\xd8\xff truncated jpeg")
    kept = calibration_inputs(paths, SETTINGS, minimum=2, progress=False)
    assert [item.path for item in kept] == [paths[0], paths[2]]
    with pytest.raises(CalibrationError, match=rf"only 2 of 3 could be read .*{paths[1].name}"):
        calibration_inputs(paths, SETTINGS, minimum=3, progress=False)
