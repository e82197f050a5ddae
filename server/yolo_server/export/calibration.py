"""INT8 calibration images: a user's folder, checked, sampled and preprocessed exactly as the server does.

Quantization fits each activation's range to what these images produce, so they must look like the traffic the
model will serve: the same cameras, scenes and sizes. The server's own decode and letterbox
(:class:`yolo_server.triton.preprocess.Preprocessor`, then the fused model's :func:`network_batch`) turn them
into network inputs, so a range is never fitted to pixels the server would not send. JPEGs are decoded whole
(``jpeg_decode="full"``) whatever the server's setting: a reduced-scale decode is a smoother picture of the same
scene, inside the ranges the full one fits, and ranges fitted to reduced decodes lost accuracy on full ones
(mAP@[.5:.95] -0.0111 against fp32 on the demo's 40 validation scenes, past the gate's 0.01).

Example:
    >>> files = calibration_files(Path("calibration/"))     # CalibrationError when missing or too few
    >>> inputs = calibration_inputs(files, PreprocessSettings(416, 416, False, 50_000_000, 64 << 20, True, "scaled"))
    >>> inputs[0].tensor.shape, inputs[0].placement
    ((1, 3, 416, 416), ResizeParams(...))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_client.geometry import ResizeParams
from yolo_server.triton.preprocess import Preprocessor
from yolo_server.triton.settings import PreprocessSettings
from yolo_server.triton.validation import InvalidInput, NetworkRows, network_batch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# fewer leaves ranges fitted to a handful of scenes; NNCF's own default subset is 300
MIN_CALIBRATION_IMAGES = 64
CALIBRATION_SUBSET = 300


class CalibrationError(ValueError):
    """The calibration set cannot be used; the message says what to give instead."""


@dataclass(frozen=True, eq=False)
class CalibrationInput:
    """One image as the network sees it: float32 ``[1, 3, H, W]``, and where the image sits in it."""

    tensor: np.ndarray
    placement: ResizeParams
    path: Path


def calibration_files(directory: Path, minimum: int = MIN_CALIBRATION_IMAGES) -> list[Path]:
    """The images under ``directory`` (any depth; JPEG, PNG, WebP, BMP by suffix), sorted.

    Raises:
        CalibrationError: the directory is missing, or holds fewer than ``minimum`` images.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CalibrationError(f"calibration images: {directory} is not a directory")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) < minimum:
        raise CalibrationError(
            f"calibration images: {len(files)} image(s) ({', '.join(IMAGE_SUFFIXES)}) under {directory}; INT8 needs "
            f"at least {minimum}, from the traffic the model will serve (or build without --calibration-images)"
        )
    return files


def spread(files: Sequence[Path], count: int = CALIBRATION_SUBSET) -> list[Path]:
    """At most ``count`` files spread evenly over the sorted list (a folder is often sorted by scene or time)."""
    if len(files) <= count:
        return list(files)
    return [files[int(position)] for position in np.linspace(0, len(files) - 1, count)]


def calibration_inputs(
    files: Sequence[Path],
    settings: PreprocessSettings,
    minimum: int = MIN_CALIBRATION_IMAGES,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[CalibrationInput]:
    """Decode and letterbox each file as the server would; files the server would refuse are left out.

    Raises:
        CalibrationError: fewer than ``minimum`` files could be read (the first refusals are named).
    """
    from tqdm import tqdm

    preprocess = Preprocessor(dataclasses.replace(settings, jpeg_decode="full"))
    prepared, refused = [], []
    for path in tqdm(files, desc="calibration images", unit="img", disable=not progress, dynamic_ncols=True):
        try:
            request = preprocess(np.array([[path.read_bytes()]], dtype=object))
        except (InvalidInput, OSError) as exc:
            refused.append(f"{path.name}: {exc}")
            continue
        tensor, _ = network_batch([NetworkRows(pixels=request.inputs, params=request.params)])
        prepared.append(CalibrationInput(tensor, request.params[0], path))
    if len(prepared) < minimum:
        named = "; ".join(refused[:3])
        raise CalibrationError(
            f"calibration images: only {len(prepared)} of {len(files)} could be read as the server reads them, "
            f"INT8 needs at least {minimum} ({named})"
        )
    if refused:
        log(f"  calibration: left out {len(refused)} image(s) the server would refuse, e.g. {refused[0]}")
    return prepared
