"""Image inputs: what the clients accept and how each transport carries it.

Accepted inputs (:data:`ImageInput`):

* a path (``str`` or ``os.PathLike``) to an encoded image file;
* encoded bytes (``bytes``, ``bytearray``, ``memoryview``): JPEG, PNG, BMP, WebP, TIFF, GIF, PNM, ...;
* a numpy array, uint8 ``[H, W, 3]``, with its channel order stated: ``color="rgb"`` or ``color="bgr"``
  (``cv2.imread`` gives BGR; PIL and most other libraries give RGB). There is no default: a wrong guess
  would silently swap red and blue;
* a PIL image (any mode; converted to RGB). PIL is imported only if you pass one.

Bytes transport (model ``NAME``): paths and bytes are sent as they are, unchanged; the client only checks that
the file exists and that its first bytes are a known image signature, so a damaged file is reported by the
server (:class:`~yolo_client.errors.ServerRejectedError`). Arrays and PIL images are encoded to **PNG**
(lossless, compression level 1, chosen for speed), so the server sees exactly the pixels you passed.

Tensor transport (model ``NAME_tensor``): the image is decoded here (OpenCV, ``IMREAD_COLOR``) and
resized/letterboxed by :func:`yolo_client.geometry.letterbox` into float32 ``[3, H, W]`` plus the packed
:class:`~yolo_client.geometry.ResizeParams`.

Example:
    >>> data = to_bytes("photo.jpg")                       # the file's bytes, as they are
    >>> data = to_bytes(cv2.imread("photo.jpg"), color="bgr")  # PNG of the array
    >>> tensor, params = to_tensor("photo.jpg", 416, 416, letterbox_input=True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .errors import InvalidInputError
from .geometry import ResizeParams, letterbox
from .types import Color

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, "PILImage"]

PNG_COMPRESSION = 1  # fast; the PNG is only a lossless envelope for the pixels

# leading bytes of the encoded formats OpenCV decodes (format name, signature, offset)
_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("jpeg", b"\xff\xd8\xff", 0),
    ("png", b"\x89PNG\r\n\x1a\n", 0),
    ("bmp", b"BM", 0),
    ("webp", b"WEBP", 8),
    ("tiff", b"II*\x00", 0),
    ("tiff", b"MM\x00*", 0),
    ("gif", b"GIF87a", 0),
    ("gif", b"GIF89a", 0),
    ("jpeg2000", b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0),
    ("jpeg2000", b"\xff\x4f\xff\x51", 0),
    ("sunras", b"\x59\xa6\x6a\x95", 0),
    ("hdr", b"#?RADIANCE", 0),
    ("hdr", b"#?RGBE", 0),
    ("exr", b"\x76\x2f\x31\x01", 0),
    ("pfm", b"PF\n", 0),
    ("pfm", b"Pf\n", 0),
)


def image_format(data: bytes) -> str | None:
    """Name of the image format ``data`` starts with (``"jpeg"``, ``"png"``, ...), or None if unknown."""
    head = bytes(data[:16])
    for name, signature, offset in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return name
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3].isspace():
        return "pnm"
    return None


def describe(image: Any) -> str:
    """A short name for an input, for error messages and CLI output."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    if isinstance(image, np.ndarray):
        return f"<array {image.dtype} {list(image.shape)}>"
    if _is_pil(image):
        return f"<PIL {image.mode} {image.size[0]}x{image.size[1]}>"
    return f"<{type(image).__name__}>"


def to_bytes(image: ImageInput, *, color: Color | None = None) -> bytes:
    """Encoded bytes for the bytes transport (files unchanged; arrays and PIL images as PNG).

    Raises:
        InvalidInputError: missing/unreadable file, empty or non-image bytes, bad array, unsupported type.
    """
    if isinstance(image, (str, os.PathLike)):
        return _checked_encoded(_read_file(image), describe(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _checked_encoded(bytes(image), describe(image))
    rgb = to_rgb(image, color=color)
    import cv2  # local: keeps `import yolo_client` light

    ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - OpenCV encodes any valid uint8 HxWx3
        raise InvalidInputError(f"could not encode {describe(image)} as PNG")
    return encoded.tobytes()


def to_rgb(image: ImageInput, *, color: Color | None = None) -> np.ndarray:
    """Decode or check any input into a contiguous uint8 ``[H, W, 3]`` RGB array."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        data = to_bytes(image)
        import cv2

        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if decoded is None or decoded.size == 0:
            raise InvalidInputError(f"cannot decode {describe(image)}: damaged or unsupported image")
        return np.ascontiguousarray(decoded[:, :, ::-1])
    if isinstance(image, np.ndarray):
        _check_array(image, color)
        rgb = image if color == "rgb" else image[:, :, ::-1]
        return np.ascontiguousarray(rgb)
    if _is_pil(image):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    raise InvalidInputError(
        f"unsupported image type {type(image).__name__}: pass a path, encoded bytes, a uint8 HxWx3 numpy array "
        "(with color='rgb' or 'bgr') or a PIL image"
    )


def to_tensor(
    image: ImageInput, net_width: int, net_height: int, *, letterbox_input: bool, color: Color | None = None
) -> tuple[np.ndarray, ResizeParams]:
    """float32 ``[3, net_height, net_width]`` network input and its :class:`ResizeParams` (tensor transport)."""
    rgb = to_rgb(image, color=color)
    return letterbox(rgb, net_width, net_height, letterbox_input)


def check_color(color: Any) -> None:
    if color is not None and color not in ("rgb", "bgr"):
        raise InvalidInputError(f"color must be 'rgb' or 'bgr', got {color!r}")


def _check_array(image: np.ndarray, color: Color | None) -> None:
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image arrays must be uint8, got {image.dtype} (scale to 0..255 and cast)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInputError(f"image arrays must be [H, W, 3], got {list(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"image array has no pixels: {list(image.shape)}")
    check_color(color)
    if color is None:
        raise InvalidInputError(
            "numpy images need their channel order: color='bgr' (cv2.imread) or color='rgb' (PIL, imageio, ...)"
        )


def _read_file(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"no such image file: {p}") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{p} is a directory, not an image file") from None
    except OSError as err:
        raise InvalidInputError(f"cannot read {p}: {err.strerror or err}") from None


def _checked_encoded(data: bytes, name: str) -> bytes:
    if not data:
        raise InvalidInputError(f"{name} is empty")
    if image_format(data) is None:
        raise InvalidInputError(
            f"{name} is not an image: its first bytes match no known format (jpeg, png, bmp, webp, tiff, gif, pnm, ...)"
        )
    return data


def _is_pil(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "convert") and hasattr(image, "mode")
