"""``NAME_preprocess``: encoded images -> network input and resize parameters.

Example:
    >>> pre = Preprocessor(PreprocessSettings(416, 416, False, 50_000_000, 64 << 20, True, "scaled"))
    >>> out = pre(np.array([[jpeg_bytes]], dtype=object))
    >>> out.inputs.dtype, out.inputs.shape, out.resize.shape, out.formats
    (dtype('uint8'), (1, 3, 416, 416), (1, 6), ('jpeg',))
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from yolo_client.geometry import ResizeParams, covering_reduction, pixels_to_input, prepare_pixels, resize_params
from yolo_server.triton.imaging import DecodeLimits, decode_image
from yolo_server.triton.settings import PreprocessSettings
from yolo_server.triton.validation import InvalidInput


@dataclass(frozen=True, eq=False)
class PreprocessedRequest:
    """One request's images, ready for the detector.

    Attributes:
        inputs: uint8 ``[b, 3, H, W]`` RGB pixels, padding unfilled (``settings.pixels``), else
            float32 in [0, 1] with the padding at 0.5.
        params: per image, where it sits in the network input (:attr:`resize` packs them).
        formats: per image, the sniffed format (metrics label).
        seconds: per image, decode + resize wall time.
    """

    inputs: np.ndarray
    params: tuple[ResizeParams, ...]
    formats: tuple[str, ...]
    seconds: tuple[float, ...]

    @property
    def resize(self) -> np.ndarray:
        """float32 ``[b, 6]``: ``RESIZE``, each placement's ``ResizeParams.pack``."""
        return np.stack([placement.pack() for placement in self.params])


@dataclass(frozen=True)
class Preprocessor:
    """Decode, check and letterbox every image of one request.

    With ``settings.jpeg_decode == "scaled"`` a JPEG is decoded at the smallest DCT scale that still covers its
    place in the network input (a 1920x1080 frame at 1/4 for 416x416), and placed as the full image: the boxes map
    back to the original pixels exactly as after a full decode.
    """

    settings: PreprocessSettings

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_bytes)

    def reduction_for(self, width: int, height: int) -> int:
        """The JPEG scale (1, 2, 4 or 8) a ``width x height`` image is decoded at."""
        settings = self.settings
        if settings.jpeg_decode == "full":
            return 1
        placement = resize_params(width, height, settings.input_width, settings.input_height, settings.letterbox)
        return covering_reduction(placement)

    def __call__(self, images: np.ndarray) -> PreprocessedRequest:
        """``IMAGE``: object ``[b, 1]`` of encoded bytes -> :class:`PreprocessedRequest`.

        Raises:
            InvalidInput: for the first bad image (the whole request is answered with it).
        """
        if images.ndim != 2 or images.shape[1:] != (1,) or images.shape[0] == 0:
            raise InvalidInput("bad_shape", f"IMAGE must be [batch, 1] encoded images, got {list(images.shape)}")
        inputs, params, formats, seconds = [], [], [], []
        for position, data in enumerate(images[:, 0]):
            start = time.perf_counter()
            if isinstance(data, str):
                data = data.encode("latin-1")
            try:
                decoded = decode_image(bytes(data), self.limits, self.reduction_for)
            except InvalidInput as exc:
                if images.shape[0] == 1:
                    raise
                raise InvalidInput(exc.reason, f"image {position} of {images.shape[0]}: {exc}") from None
            settings = self.settings
            placement = resize_params(
                decoded.width, decoded.height, settings.input_width, settings.input_height, settings.letterbox
            )
            pixels = prepare_pixels(decoded.rgb, placement, decoded.reduction)
            inputs.append(pixels if settings.pixels else pixels_to_input(pixels, placement))
            params.append(placement)
            formats.append(decoded.format)
            seconds.append(time.perf_counter() - start)
        return PreprocessedRequest(np.stack(inputs), tuple(params), tuple(formats), tuple(seconds))
