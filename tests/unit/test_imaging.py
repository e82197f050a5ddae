"""Decode checks of the preprocess model and the tensor checks of the detector/postprocess models."""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.helpers.images import encode, noise, scene
from tests.helpers.payloads import gif, jpeg2000, progressive_jpeg, scan_bomb, tiff
from yolo_client.geometry import letterbox, pixels_to_input, resize_params
from yolo_server.ops.postprocess import Detections
from yolo_server.triton.imaging import DecodeLimits, decode_image, sniff_format
from yolo_server.triton.postprocess import pack_ragged
from yolo_server.triton.preprocess import Preprocessor
from yolo_server.triton.settings import PreprocessSettings
from yolo_server.triton.validation import InvalidInput, check_network_input, check_resize, network_batch, network_input

LIMITS = DecodeLimits(max_pixels=1_000_000, max_bytes=1 << 20)


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_png_decodes_to_the_exact_rgb_pixels() -> None:
    rgb = scene(48, 64)
    decoded = decode_image(encode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), LIMITS)
    assert decoded.format == "png" and decoded.rgb.dtype == np.uint8
    np.testing.assert_array_equal(decoded.rgb, rgb)


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("grayscale", lambda rgb: encode(".png", rgb[..., 0])),
        ("rgba", lambda rgb: encode(".png", np.dstack([rgb, rgb[..., :1]]))),
        ("16-bit", lambda rgb: encode(".png", rgb.astype(np.uint16) * 257)),
        ("bmp", lambda rgb: encode(".bmp", rgb)),
        ("webp", lambda rgb: encode(".webp", rgb, cv2.IMWRITE_WEBP_QUALITY, 101)),
    ],
)
def test_odd_but_valid_images_become_8bit_rgb(kind: str, make: Callable[[np.ndarray], bytes]) -> None:
    rgb = scene(30, 40)
    decoded = decode_image(make(rgb), LIMITS)
    assert decoded.rgb.shape == (30, 40, 3) and decoded.rgb.dtype == np.uint8
    expected = cv2.imdecode(np.frombuffer(make(rgb), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(decoded.rgb, expected)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    rgb = scene(32, 48)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buffer, "JPEG", quality=95)
    decoded = decode_image(buffer.getvalue(), LIMITS)
    assert decoded.rgb.shape == (32, 48, 3)
    assert np.abs(decoded.rgb.astype(int) - rgb).mean() < 8  # jpeg loss only, channels in RGB order


def test_exif_orientation_is_applied() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(scene(20, 50)).save(buffer, "JPEG", exif=exif)
    assert decode_image(buffer.getvalue(), LIMITS).rgb.shape == (50, 20, 3)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 20000), (20000, 1)])
def test_extreme_aspect_ratios_decode(height: int, width: int) -> None:
    assert decode_image(encode(".png", scene(height, width)), LIMITS).rgb.shape == (height, width, 3)


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", "empty", "0 bytes"),
        (noise(5000).tobytes(), "undecodable", "no known image format"),
        (encode(".jpg", scene(64, 64))[:-300], "truncated", "truncated JPEG"),
        (encode(".png", scene(64, 64))[:-20], "truncated", "truncated PNG"),
        (png_header_only(0, 10), "bad_dimensions", "no pixels (0x10)"),
        (encode(".png", np.zeros((1001, 1000), np.uint8)), "too_many_pixels", "1000x1001 = 1001000 pixels"),
        (b"\xff\xd8\xff" + bytes(2 << 20), "too_large", "over the limit of 1048576"),
    ],
    ids=["empty", "random", "truncated-jpeg", "truncated-png", "zero-pixels", "pixel-cap", "byte-cap"],
)
def test_bad_images_are_rejected_with_a_reason(data: bytes, reason: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as raised:
        decode_image(data, LIMITS)
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    ("make", "name"), [(tiff, "TIFF"), (jpeg2000, "JPEG2000"), (gif, "GIF")], ids=["tiff", "jpeg2000", "gif"]
)
def test_formats_other_than_jpeg_png_webp_bmp_are_refused_by_name(
    make: Callable[[np.ndarray], bytes], name: str
) -> None:
    data = make(scene(32, 48))
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None or name == "GIF"  # decodable
    with pytest.raises(InvalidInput, match=f"^{name} images are not accepted: send JPEG, PNG, WebP or BMP$") as raised:
        decode_image(data, LIMITS)
    assert raised.value.reason == "unsupported_format"


def test_jpeg_scan_cap_refuses_a_scan_bomb_and_keeps_ordinary_progressive_jpegs() -> None:
    rgb = scene(96, 128, seed=5)
    limits = DecodeLimits(max_pixels=1_000_000, max_bytes=1 << 20, max_jpeg_scans=20)
    ordinary = progressive_jpeg(rgb)
    assert 5 <= ordinary.count(b"\xff\xda") <= 20
    assert decode_image(ordinary, limits).rgb.shape == (96, 128, 3)
    assert decode_image(scan_bomb(rgb, 20), limits).rgb.shape == (96, 128, 3)  # on the cap: decoded
    with pytest.raises(InvalidInput, match=r"JPEG has 21 scans, over the limit of 20") as raised:
        decode_image(scan_bomb(rgb, 21), limits)
    assert raised.value.reason == "too_many_scans"
    assert DecodeLimits().max_jpeg_scans == 64


def test_sniffed_formats() -> None:
    rgb = scene(8, 8)
    assert [sniff_format(encode(ext, rgb)) for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff")] == [
        "jpeg", "png", "bmp", "webp", "other",
    ]  # fmt: skip


def test_preprocessor_names_the_bad_image_of_a_multi_image_request() -> None:
    preprocess = Preprocessor(PreprocessSettings(64, 32, False, 1_000_000, 1 << 20, False, "scaled"))
    good = encode(".png", scene(10, 20))
    prepared = preprocess(np.array([[good], [good]], dtype=object))
    assert prepared.inputs.shape == (2, 3, 32, 64) and prepared.resize.shape == (2, 6)
    np.testing.assert_array_equal(prepared.resize[0], [20, 10, 64, 32, 0, 0])
    with pytest.raises(InvalidInput, match="image 1 of 2: empty image"):
        preprocess(np.array([[good], [b""]], dtype=object))


@pytest.mark.parametrize("letterboxed", [True, False])
def test_uint8_pixels_become_the_float_input_bit_for_bit(letterboxed: bool) -> None:
    """The cpu preprocess sends uint8 and the detector scales; the result is the float path's, padding 0.5 included."""
    images = [scene(40, 100, seed=1), scene(90, 30, seed=2)]
    payload = np.array([[encode(".png", image)] for image in images], dtype=object)
    as_pixels = Preprocessor(PreprocessSettings(64, 32, letterboxed, 1_000_000, 1 << 20, True, "scaled"))(payload)
    as_floats = Preprocessor(PreprocessSettings(64, 32, letterboxed, 1_000_000, 1 << 20, False, "scaled"))(payload)
    assert as_pixels.inputs.dtype == np.uint8 and as_floats.inputs.dtype == np.float32
    scaled, sizes = network_batch([network_input(None, as_pixels.inputs, as_pixels.resize, 64, 32)])
    assert sizes == [2]
    np.testing.assert_array_equal(scaled, as_floats.inputs)
    decoded = [decode_image(data, LIMITS).rgb for data in payload[:, 0]]
    np.testing.assert_array_equal(scaled, np.stack([letterbox(rgb, 64, 32, letterboxed)[0] for rgb in decoded]))
    assert (scaled[0, :, 0] == np.float32(0.5)).all() == letterboxed  # the first row is padding when letterboxed


def test_detector_input_is_one_of_float_or_pixels_with_resize() -> None:
    floats = np.zeros((2, 3, 32, 64), np.float32)
    pixels = np.zeros((2, 3, 32, 64), np.uint8)
    resize = np.stack([resize_params(64, 32, 64, 32, False).pack()] * 2)
    assert network_input(floats, None, None, 64, 32).inputs is floats
    assert network_batch([network_input(None, pixels, resize, 64, 32)])[0].dtype == np.float32
    cases = [
        ((None, None, None), "exactly one of INPUT__0"),
        ((floats, pixels, resize), "exactly one of INPUT__0"),
        ((None, pixels, None), "needs RESIZE"),
        ((None, pixels, resize[:1]), "2 images in PIXELS__0 but 1 rows"),
        ((None, floats, resize), "PIXELS must be uint8"),
    ]
    for arrays, message in cases:
        with pytest.raises(InvalidInput, match=message):
            network_input(*arrays, 64, 32)


def test_a_dynamic_batch_of_float_and_pixel_requests_is_written_once_in_order() -> None:
    rng = np.random.default_rng(3)
    params = [resize_params(w, h, 64, 32, box) for w, h, box in ((40, 20, True), (64, 10, True), (64, 32, False))]
    pixels = rng.integers(0, 256, (3, 3, 32, 64), dtype=np.uint8)
    floats = rng.random((2, 3, 32, 64), dtype=np.float32)
    requests = [
        network_input(None, pixels[:2], np.stack([p.pack() for p in params[:2]]), 64, 32),
        network_input(floats, None, None, 64, 32),
        network_input(None, pixels[2:], params[2].pack()[None], 64, 32),
    ]
    batch, sizes = network_batch(requests)
    assert sizes == [2, 2, 1] and batch.dtype == np.float32 and batch.flags.c_contiguous
    scaled = [pixels_to_input(image, placement) for image, placement in zip(pixels, params, strict=True)]
    np.testing.assert_array_equal(batch, np.stack([scaled[0], scaled[1], *floats, scaled[2]]))
    assert network_batch([requests[1]])[0] is floats  # a lone float request: no copy


def test_network_input_checks() -> None:
    good = np.zeros((2, 3, 32, 64), np.float32)
    check_network_input(good, 64, 32)
    cases = [
        (good.astype(np.float64), "bad_dtype"),
        (good[:, :, :16], "bad_shape"),
        (np.where(np.arange(64) == 5, np.nan, good).astype(np.float32), "non_finite"),
        (np.where(np.arange(64) == 5, -np.inf, good).astype(np.float32), "non_finite"),
    ]
    for array, reason in cases:
        with pytest.raises(InvalidInput) as raised:
            check_network_input(array, 64, 32)
        assert raised.value.reason == reason


def test_resize_checks() -> None:
    packed = np.stack(
        [resize_params(640, 480, 64, 32, letterbox=True).pack(), resize_params(5, 9, 64, 32, False).pack()]
    )
    assert [p.width for p in check_resize(packed, 64, 32)] == [640, 5]
    bad = {
        "non_finite": packed + np.array([0, np.inf, 0, 0, 0, 0], np.float32),
        "bad_dimensions": packed * np.array([0, 1, 1, 1, 1, 1], np.float32),
    }
    bad_fraction = packed.copy()
    bad_fraction[0, 0] = 0.5
    outside = packed.copy()
    outside[0, 4] = 40  # pad_x + new_width > 64
    for reason, array in [*bad.items(), ("bad_dimensions", bad_fraction), ("bad_dimensions", outside)]:
        with pytest.raises(InvalidInput) as raised:
            check_resize(array, 64, 32)
        assert raised.value.reason == reason


def test_pack_ragged_pads_to_the_longest_and_counts() -> None:
    one = Detections(np.ones((1, 4), np.float32), np.array([0.9], np.float32), np.array([3], np.int32))
    none = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    packed = pack_ragged([none, one])
    assert packed["BOXES"].shape == (2, 1, 4) and packed["COUNT"].tolist() == [[0], [1]]
    assert packed["CLASSES"].dtype == np.int32 and packed["CLASSES"].tolist() == [[0], [3]]
    assert pack_ragged([none])["BOXES"].shape == (1, 0, 4)
