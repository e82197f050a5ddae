"""Resize/letterbox geometry and its exact inverse (numpy + OpenCV only).

This is the one place where the mapping between original-image pixels and
network-input pixels is defined. The server's preprocess, the in-process
``Detector`` and the client's tensor transport all call it.

Example:
    >>> params = resize_params(640, 480, 416, 416, letterbox=True)
    >>> params.new_width, params.new_height, params.pad_x, params.pad_y
    (416, 312, 0, 52)
    >>> tensor = prepare_input(image_rgb, params)        # float32 [3, 416, 416]
    >>> boxes_px = params.to_original(boxes_net_px)      # float32 [N, 4] xyxy, clipped
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import RESIZE_LEN

LETTERBOX_FILL = 0.5  # darknet pads letterboxed images with 0.5 grey
# the DCT-domain scales libjpeg decodes at (1/8, 1/4, 1/2), largest reduction first: OpenCV's IMREAD_REDUCED_*
JPEG_REDUCTIONS = (8, 4, 2)


@dataclass(frozen=True)
class ResizeParams:
    """How an ``width x height`` image sits inside the ``net_width x net_height`` input.

    The image is resized to ``new_width x new_height`` and placed at
    ``(pad_x, pad_y)``; plain (stretch) resize is the case with no padding and
    ``new_* == net_*``.
    """

    width: int
    height: int
    net_width: int
    net_height: int
    new_width: int
    new_height: int
    pad_x: int
    pad_y: int

    @property
    def scale_x(self) -> float:
        return self.new_width / self.width

    @property
    def scale_y(self) -> float:
        return self.new_height / self.height

    def pack(self) -> np.ndarray:
        """float32 [6]: width, height, new_width, new_height, pad_x, pad_y (all exact integers)."""
        return np.array(
            [self.width, self.height, self.new_width, self.new_height, self.pad_x, self.pad_y], dtype=np.float32
        )

    @classmethod
    def unpack(cls, packed: np.ndarray, net_width: int, net_height: int) -> ResizeParams:
        values = [int(round(float(v))) for v in np.asarray(packed).reshape(-1)[:RESIZE_LEN]]
        return cls(values[0], values[1], net_width, net_height, *values[2:])

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map boxes from network-input pixels back to original pixels.

        Args:
            boxes: float [N, 4] xyxy in network-input pixels.
        Returns:
            float32 [N, 4] xyxy in original-image pixels, clipped to the image.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float64)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float64)
        mapped = (boxes - offset) / scale
        limit = np.array([self.width, self.height, self.width, self.height], dtype=np.float64)
        return np.clip(mapped, 0.0, limit).astype(np.float32)

    def to_network(self, boxes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_original` (no clipping): float [N, 4] xyxy original -> network pixels."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float64)
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float64)
        return (boxes * scale + offset).astype(np.float32)


def resize_params(width: int, height: int, net_width: int, net_height: int, letterbox: bool) -> ResizeParams:
    """Darknet's placement of an image in the network input.

    Letterbox follows darknet's ``letterbox_image``: keep the aspect ratio,
    fit the longer relative side, centre with integer padding. Each side is at
    least one pixel, so 1x4000 images still map.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    if not letterbox:
        return ResizeParams(width, height, net_width, net_height, net_width, net_height, 0, 0)
    if width * net_height > height * net_width:  # relatively wider than the network: fit width
        new_width, new_height = net_width, (height * net_width) // width
    else:
        new_width, new_height = (width * net_height) // height, net_height
    new_width, new_height = max(1, new_width), max(1, new_height)
    pad_x, pad_y = (net_width - new_width) // 2, (net_height - new_height) // 2
    return ResizeParams(width, height, net_width, net_height, new_width, new_height, pad_x, pad_y)


def reduced_size(width: int, height: int, reduction: int) -> tuple[int, int]:
    """(width, height) of an image decoded at ``1/reduction`` scale: libjpeg rounds each side up."""
    return -(-width // reduction), -(-height // reduction)


def covering_reduction(params: ResizeParams) -> int:
    """The largest JPEG reduction (:data:`JPEG_REDUCTIONS`, else 1) whose decode still covers the placed image.

    The placement (``params``) is the full image's, so boxes map back to the original pixels exactly as for a
    full decode; only the pixels the resize starts from differ: a 1/``reduction`` decode at least
    ``new_width x new_height``, which the resize then only shrinks (or keeps).

    Example:
        >>> covering_reduction(resize_params(1920, 1080, 416, 416, letterbox=True))  # 480x270 covers 416x234
        4
    """
    for reduction in JPEG_REDUCTIONS:
        width, height = reduced_size(params.width, params.height, reduction)
        if width >= params.new_width and height >= params.new_height:
            return reduction
    return 1


def prepare_pixels(image_rgb: np.ndarray, params: ResizeParams, reduction: int = 1) -> np.ndarray:
    """Resize an RGB image into the network input's place, still uint8: a quarter of the float bytes.

    Args:
        image_rgb: uint8 [H, W, 3] RGB: the image ``params`` places, or its ``1/reduction`` scale decode
            (:func:`reduced_size` of ``params.width x params.height``).
        params: the placement of the full image.
        reduction: 1, or the scale ``image_rgb`` was decoded at (:func:`covering_reduction`).
    Returns:
        uint8 [3, net_height, net_width]; the padding holds zeros until :func:`pixels_to_input` fills it.
    """
    import cv2  # local: keeps `import yolo_client` light

    width, height = reduced_size(params.width, params.height, reduction)
    if image_rgb.shape[:2] != (height, width):
        scale = "" if reduction == 1 else f" at 1/{reduction} scale ({width}x{height})"
        raise ValueError(
            f"image is {image_rgb.shape[1]}x{image_rgb.shape[0]}, params are for {params.width}x{params.height}{scale}"
        )
    resized = image_rgb
    if (params.new_width, params.new_height) != (width, height):
        resized = cv2.resize(image_rgb, (params.new_width, params.new_height), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((3, params.net_height, params.net_width), dtype=np.uint8)
    out[:, params.pad_y : params.pad_y + params.new_height, params.pad_x : params.pad_x + params.new_width] = (
        resized.transpose(2, 0, 1)
    )
    return out


def pixels_to_input(pixels: np.ndarray, params: ResizeParams, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 [3, H, W] from :func:`prepare_pixels` -> float32 [3, H, W] in [0, 1], padding at darknet's 0.5.

    The padding is filled here, not in the uint8 pixels, because 0.5 has no uint8 code (127.5 / 255).
    ``out`` (float32 [3, H, W], e.g. a row of a batch) is written in place of a new array.
    """
    if out is None:
        out = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, np.float32(1.0 / 255.0), out=out, dtype=np.float32)  # dtype: a float32 loop, not float16
    top, left = params.pad_y, params.pad_x
    bottom, right = top + params.new_height, left + params.new_width
    out[:, :top] = LETTERBOX_FILL
    out[:, bottom:] = LETTERBOX_FILL
    out[:, top:bottom, :left] = LETTERBOX_FILL
    out[:, top:bottom, right:] = LETTERBOX_FILL
    return out


def prepare_input(image_rgb: np.ndarray, params: ResizeParams) -> np.ndarray:
    """Resize (and pad) an RGB image into the network input: float32 [3, net_height, net_width] in [0, 1]."""
    return pixels_to_input(prepare_pixels(image_rgb, params), params)


def letterbox(
    image_rgb: np.ndarray, net_width: int, net_height: int, letterbox: bool
) -> tuple[np.ndarray, ResizeParams]:
    """:func:`resize_params` + :func:`prepare_input` for a uint8 [H, W, 3] RGB image."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 [H, W, 3] RGB, got {image_rgb.dtype} {list(image_rgb.shape)}")
    params = resize_params(image_rgb.shape[1], image_rgb.shape[0], net_width, net_height, letterbox)
    return prepare_input(image_rgb, params), params
