"""A JPEG decoded at a reduced DCT scale: the scale chosen, its geometry, and boxes still in the original pixels."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.helpers.images import encode, scene
from yolo_client.geometry import JPEG_REDUCTIONS, covering_reduction, prepare_pixels, reduced_size, resize_params
from yolo_server.triton.imaging import DecodeLimits, decode_image
from yolo_server.triton.preprocess import Preprocessor
from yolo_server.triton.settings import PreprocessSettings

LIMITS = DecodeLimits(max_pixels=20_000_000, max_bytes=16 << 20)
ODD_SIZES = [(1, 1), (7, 5), (417, 415), (833, 625), (1001, 667), (1920, 1080), (1080, 1920), (4001, 3), (3, 4001)]


def slow_covering_reduction(width: int, height: int, new_width: int, new_height: int) -> int:
    """The oracle: try every scale libjpeg offers, one by one, in full-precision arithmetic."""
    best = 1
    for reduction in (2, 4, 8):
        if np.ceil(width / reduction) >= new_width and np.ceil(height / reduction) >= new_height:
            best = reduction
    return best


def settings(net_width: int, net_height: int, letterbox: bool, jpeg_decode: str = "scaled") -> PreprocessSettings:
    return PreprocessSettings(net_width, net_height, letterbox, LIMITS.max_pixels, LIMITS.max_bytes, True, jpeg_decode)


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    return encode(".jpg", scene(height, width, seed=seed), cv2.IMWRITE_JPEG_QUALITY, 95)


@pytest.mark.parametrize("letterbox", [True, False])
@pytest.mark.parametrize(("width", "height"), ODD_SIZES)
def test_the_largest_reduction_that_covers_the_placed_image_is_chosen(width: int, height: int, letterbox: bool) -> None:
    for net_width, net_height in [(416, 416), (608, 320), (32, 64)]:
        params = resize_params(width, height, net_width, net_height, letterbox)
        reduction = covering_reduction(params)
        assert reduction == slow_covering_reduction(width, height, params.new_width, params.new_height)
        covered = reduced_size(width, height, reduction)
        if reduction > 1:  # else the full image, which an upscaled placement needs as it is
            assert covered[0] >= params.new_width and covered[1] >= params.new_height
        if width >= 2 * params.new_width and height >= 2 * params.new_height:
            assert reduction > 1


def test_reduced_sizes_round_up_as_libjpeg_does() -> None:
    for width, height in [(7, 5), (1001, 667), (17, 9)]:
        data = jpeg(width, height)
        for reduction in JPEG_REDUCTIONS:
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), getattr(cv2, f"IMREAD_REDUCED_COLOR_{reduction}"))
            assert decoded.shape[1::-1] == reduced_size(width, height, reduction)


@pytest.mark.parametrize(
    ("width", "height", "reduction"),
    [(1001, 667, 2), (1920, 1080, 4), (1080, 1920, 4), (3333, 2001, 8), (640, 480, 1)],
)
def test_each_scale_places_the_image_as_the_full_decode_does(width: int, height: int, reduction: int) -> None:
    """Same RESIZE (so the same boxes in original pixels), a cheaper decode, and nearly the same network input."""
    data = np.array([[jpeg(width, height, seed=width)]], dtype=object)
    scaled = Preprocessor(settings(416, 416, True))
    full = Preprocessor(settings(416, 416, True, "full"))
    assert scaled.reduction_for(width, height) == reduction and full.reduction_for(width, height) == 1
    decoded = decode_image(data[0, 0], LIMITS, scaled.reduction_for)
    assert (decoded.width, decoded.height, decoded.reduction) == (width, height, reduction)
    assert decoded.rgb.shape[1::-1] == reduced_size(width, height, reduction)
    from_scaled, from_full = scaled(data), full(data)
    np.testing.assert_array_equal(from_scaled.resize, from_full.resize)
    assert from_scaled.resize[0, :2].tolist() == [width, height]
    difference = np.abs(from_scaled.inputs.astype(int) - from_full.inputs.astype(int))
    # one scene, resampled two ways (a DCT reduction smooths, a bilinear resize aliases): means of 0.3 to 3.1 levels
    # measured over these five sizes
    assert difference.mean() < 6
    if reduction == 1:
        np.testing.assert_array_equal(from_scaled.inputs, from_full.inputs)


def test_a_drawn_rectangle_maps_back_to_its_original_pixels_from_every_scale() -> None:
    image = np.zeros((2160, 3840, 3), dtype=np.uint8)
    box = (1000, 600, 2200, 1500)  # x1, y1, x2, y2 (exclusive)
    cv2.rectangle(image, box[:2], (box[2] - 1, box[3] - 1), (255, 255, 255), thickness=-1)
    data = encode(".jpg", image, cv2.IMWRITE_JPEG_QUALITY, 95)
    for net in (416, 608, 960, 1920):
        params = resize_params(3840, 2160, net, net, letterbox=True)
        decoded = decode_image(data, LIMITS, Preprocessor(settings(net, net, letterbox=True)).reduction_for)
        pixels = prepare_pixels(decoded.rgb, params, decoded.reduction)
        ys, xs = np.nonzero(pixels[0] > 190)
        found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
        back = params.to_original(found)[0]
        assert np.abs(back - np.array(box)).max() <= 1.5 / params.scale_x, (net, decoded.reduction, back)
    assert {covering_reduction(resize_params(3840, 2160, n, n, True)) for n in (416, 608, 960, 1920)} == {8, 4, 2}


@pytest.mark.parametrize(
    ("orientation", "displayed", "reduction"), [(1, (1200, 480), 1), (6, (480, 1200), 2), (8, (480, 1200), 2)]
)
def test_exif_orientation_is_applied_before_the_scale_is_chosen(
    orientation: int, displayed: tuple[int, int], reduction: int
) -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(scene(480, 1200)).save(buffer, "JPEG", exif=exif, quality=95)
    # stretched into 96x320: 1200x480 needs every row, 480x1200 only every other one
    preprocess = Preprocessor(settings(96, 320, letterbox=False))
    decoded = decode_image(buffer.getvalue(), LIMITS, preprocess.reduction_for)
    full = decode_image(buffer.getvalue(), LIMITS)
    assert (decoded.width, decoded.height) == displayed == full.rgb.shape[1::-1]
    assert decoded.reduction == preprocess.reduction_for(*displayed) == reduction
    assert decoded.rgb.shape[1::-1] == reduced_size(*displayed, decoded.reduction)


def test_only_jpegs_are_reduced_and_full_keeps_every_pixel() -> None:
    rgb = scene(1080, 1920)
    png = encode(".png", rgb)
    assert decode_image(png, LIMITS, lambda w, h: 4).reduction == 1
    assert decode_image(jpeg(1920, 1080), LIMITS, lambda w, h: 4).reduction == 4
    full = Preprocessor(settings(416, 416, True, "full"))
    assert decode_image(jpeg(1920, 1080), LIMITS, full.reduction_for).reduction == 1
    with pytest.raises(ValueError, match="not 1/3"):
        decode_image(jpeg(1920, 1080), LIMITS, lambda w, h: 3)


def test_a_reduced_image_of_the_wrong_size_is_refused() -> None:
    params = resize_params(1920, 1080, 416, 416, True)
    with pytest.raises(ValueError, match="at 1/4 scale"):
        prepare_pixels(np.zeros((540, 960, 3), np.uint8), params, 4)
