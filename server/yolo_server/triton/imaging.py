"""Encoded image bytes -> checked RGB uint8 pixels (the preprocess model's decode step).

Order of checks, cheapest first: empty, byte cap, header (PIL reads only the
header: format, width x height) against the pixel cap, the format (JPEG, PNG,
WebP or BMP: the formats cameras and browsers send, and the decoders worth
exposing; TIFF, JPEG 2000, GIF and the rest are refused by name), truncation
(JPEG EOI / PNG IEND), the JPEG scan cap, then the OpenCV decode.

The scan cap bounds decode time: libjpeg works through a progressive JPEG once
per scan, so a small file of thousands of scans (a "scan bomb") costs seconds
of CPU. Encoders write about 10 scans; ``max_jpeg_scans`` refuses more before
any pixel is decoded. ``0xFFDA`` (start of scan) cannot occur inside
entropy-coded data (a 0xFF there is followed by 0x00), so counting it is exact
up to an embedded thumbnail's own scans. ``cv2.IMREAD_COLOR`` applies EXIF
orientation and turns grayscale, RGBA, 16-bit and CMYK images into 8-bit BGR;
those are valid images and come back as RGB.

A JPEG may be decoded at a reduced scale: libjpeg decodes 1/2, 1/4 or 1/8 of each side in the DCT domain for
a fraction of the cost (OpenCV's ``IMREAD_REDUCED_COLOR_*``), and a camera frame shrunk to the network input
never needs every pixel. ``reduction_for`` picks the scale from the displayed size (EXIF orientation applied,
as the header states it); the result keeps that full size, so the caller places and maps boxes as for a full
decode (:func:`yolo_client.geometry.covering_reduction`).

Example:
    >>> image = decode_image(jpeg_bytes, DecodeLimits(max_pixels=50_000_000, max_bytes=64 << 20))
    >>> image.rgb.shape, image.format
    ((480, 640, 3), 'jpeg')
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from yolo_client.geometry import JPEG_REDUCTIONS, reduced_size
from yolo_server.triton.validation import InvalidInput

IMAGE_FORMATS = ("jpeg", "png", "bmp", "webp", "other")  # "other": a metrics label; those images are refused
ACCEPTED_FORMATS = IMAGE_FORMATS[:-1]
_JPEG_SOS, _JPEG_EOI = b"\xff\xda", b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # displayed turned a quarter: width and height swap
# the caps on one encoded image unless the build sets others (``yolo_server.repository.spec.Decoding`` defaults to them)
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 64 << 20
# how a JPEG is decoded: "scaled", at the smallest DCT scale that still covers the network input; "full", every
# pixel, as darknet does (the parity path)
JPEG_DECODES = ("scaled", "full")
DEFAULT_JPEG_DECODE = "scaled"


@dataclass(frozen=True)
class DecodeLimits:
    """Caps checked before decoding: encoded size in bytes and width x height in pixels."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_jpeg_scans: int = 64


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """``rgb``: uint8 ``[H, W, 3]``, the image at ``1/reduction`` scale; ``format``: one of :data:`IMAGE_FORMATS`;
    ``width`` x ``height``: the full image's size (``rgb``'s where ``reduction`` is 1)."""

    rgb: np.ndarray
    format: str
    width: int
    height: int
    reduction: int = 1


def sniff_format(data: bytes) -> str:
    """Container format from the magic bytes (a metrics label, not a check)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "other"


def read_header_size(data: bytes) -> tuple[int, int]:
    """(width, height) as displayed, from the header only (EXIF orientation applied); no pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                return (height, width) if _orientation(image) in _TRANSPOSING_ORIENTATIONS else (width, height)
        except Image.DecompressionBombError as exc:
            raise InvalidInput("too_many_pixels", f"image is too large: {exc}") from None
        except UnidentifiedImageError:
            declared = declared_size(data)
            if declared is not None and 0 in declared:
                raise InvalidInput("bad_dimensions", f"image has no pixels ({declared[0]}x{declared[1]})") from None
            raise InvalidInput(
                "undecodable", f"undecodable image: {len(data)} bytes in no known image format"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInput("undecodable", f"undecodable image header ({len(data)} bytes): {exc}") from None


def _orientation(image: object) -> int:
    """The EXIF orientation tag of an opened PIL image; 1 (as stored) where it has none or it cannot be read."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))  # type: ignore[attr-defined]
    except Exception:  # a damaged EXIF block is the decoder's to judge, not the header's
        return 1


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as a PNG IHDR or BMP info header states it (PIL refuses to open 0-pixel ones)."""
    image_format = sniff_format(data)
    if image_format == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if image_format == "bmp" and len(data) >= 26:
        width, height = (int.from_bytes(data[i : i + 4], "little", signed=True) for i in (18, 22))
        return width, abs(height)
    return None


def container_name(data: bytes) -> str:
    """The format PIL names for an image outside :data:`ACCEPTED_FORMATS` (for the error message)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return str(image.format or "unknown")
    except Exception:  # only a name for the message
        return "unknown"


def check_complete(data: bytes, image_format: str) -> None:
    """Reject JPEGs without an EOI after the last scan and PNGs without IEND."""
    if image_format == "jpeg" and data.rfind(_JPEG_EOI) < data.rfind(_JPEG_SOS):
        raise InvalidInput("truncated", "truncated JPEG: no end-of-image marker after the last scan")
    if image_format == "png" and _PNG_IEND not in data[-64:]:
        raise InvalidInput("truncated", "truncated PNG: no IEND chunk at the end")


def decode_image(
    data: bytes, limits: DecodeLimits, reduction_for: Callable[[int, int], int] | None = None
) -> DecodedImage:
    """Checked decode of one encoded image.

    Args:
        data: the encoded file: JPEG, PNG, BMP or WebP.
        limits: byte, pixel and JPEG scan caps.
        reduction_for: (width, height) as displayed -> the scale to decode a JPEG at (1, 2, 4 or 8); None: 1.
    Returns:
        RGB uint8 ``[H, W, 3]`` (EXIF orientation applied), the sniffed format and the full size.
    Raises:
        InvalidInput: with reason ``empty``, ``too_large``, ``too_many_pixels``,
            ``bad_dimensions``, ``undecodable``, ``unsupported_format``, ``truncated``
            or ``too_many_scans``.
    """
    import cv2

    if len(data) == 0:
        raise InvalidInput("empty", "empty image: the request carried 0 bytes")
    if len(data) > limits.max_bytes:
        raise InvalidInput("too_large", f"encoded image is {len(data)} bytes, over the limit of {limits.max_bytes}")
    width, height = read_header_size(data)
    if width <= 0 or height <= 0:
        raise InvalidInput("bad_dimensions", f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InvalidInput(
            "too_many_pixels",
            f"image is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}",
        )
    image_format = sniff_format(data)
    if image_format not in ACCEPTED_FORMATS:
        raise InvalidInput(
            "unsupported_format", f"{container_name(data)} images are not accepted: send JPEG, PNG, WebP or BMP"
        )
    check_complete(data, image_format)
    scans = data.count(_JPEG_SOS) if image_format == "jpeg" else 0
    if scans > limits.max_jpeg_scans:
        raise InvalidInput(
            "too_many_scans",
            f"JPEG has {scans} scans, over the limit of {limits.max_jpeg_scans} (progressive scan bomb?)",
        )
    encoded = np.frombuffer(data, dtype=np.uint8)
    reduction = reduction_for(width, height) if reduction_for is not None and image_format == "jpeg" else 1
    if reduction != 1:
        if reduction not in JPEG_REDUCTIONS:
            raise ValueError(f"a JPEG decodes at 1/{'/'.join(map(str, JPEG_REDUCTIONS))} scale, not 1/{reduction}")
        bgr = cv2.imdecode(encoded, getattr(cv2, f"IMREAD_REDUCED_COLOR_{reduction}"))
        # any other shape: OpenCV read the orientation otherwise than the header did; decode it whole instead
        if bgr is not None and bgr.shape[1::-1] == reduced_size(width, height, reduction):
            return DecodedImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), image_format, width, height, reduction)
    bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise InvalidInput("undecodable", f"OpenCV could not decode the {image_format} image ({width}x{height})")
    return DecodedImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), image_format, bgr.shape[1], bgr.shape[0])
