"""Client input handling: every bad input is an InvalidInputError raised before any request.

The clients here point at a port nothing listens on, with retries off: a request that was sent would come back
as UnavailableError, so an InvalidInputError proves the check ran first. Every client test runs over both the
sync and the async client (``tests/helpers/clients.py``) and both transports.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from tests.helpers.clients import KINDS, open_client
from tests.helpers.clients import dead_url as _dead_url
from tests.helpers.images import decode_rgb, noise
from yolo_client import InvalidInputError, ModelInfo, RetryPolicy, UnavailableError, YoloClient, images

INFO = ModelInfo(
    name="m", class_names=("a", "b"), input_width=64, input_height=32, letterbox=True, score_threshold=0.25,
    nms_threshold=0.45, max_detections=10, max_batch_size=4,
)  # fmt: skip


def _png(width: int = 20, height: int = 10) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)  # left half blue in BGR
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture()
def dead_url() -> str:
    return _dead_url()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["bytes", "tensor"])
def client(request: pytest.FixtureRequest, kind: str, dead_url: str) -> YoloClient:
    # model_info given: no request needed to read it, as if read from the server
    c = open_client(
        kind, dead_url, "m", transport=request.param, timeout=2, retries=RetryPolicy.disabled(), model_info=INFO
    )
    yield c
    c.close()


@pytest.mark.parametrize(
    "bad, message",
    [
        ("/nonexistent/dog.jpg", "no such image file"),
        (b"", "is empty"),
        (b"hello, not an image", "not an image"),
        (np.zeros((10, 10), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((10, 10, 4), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((10, 10, 3), np.float32), "must be uint8"),
        (np.zeros((0, 10, 3), np.uint8), "no pixels"),
        (12345, "unsupported image type"),
    ],
)
def test_bad_inputs_raise_before_any_request(client: YoloClient, bad: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.detect(bad, color="rgb")


def test_a_directory_is_not_an_image(client: YoloClient, tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="is a directory"):
        client.detect(tmp_path)


def test_arrays_need_their_channel_order_stated(client: YoloClient) -> None:
    with pytest.raises(InvalidInputError, match="color='bgr'"):
        client.detect(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="'rgb' or 'bgr'"):
        client.detect(np.zeros((8, 8, 3), np.uint8), color="BGR")


def test_batch_input_errors(client: YoloClient) -> None:
    with pytest.raises(InvalidInputError, match="at least one image"):
        client.detect_batch([])
    with pytest.raises(InvalidInputError, match="takes a list"):
        client.detect_batch("dog.jpg")
    with pytest.raises(InvalidInputError, match="use detect_batch"):
        client.detect([_png(), _png()])


def test_one_bad_image_in_a_batch_stops_it_before_any_request(client: YoloClient) -> None:
    with pytest.raises(InvalidInputError, match="no such image file"):
        client.detect_batch([_png(), _png(), "/nonexistent.png"])
    with pytest.raises(InvalidInputError, match="color="):
        client.detect_batch([_png(), np.zeros((4, 4, 3), np.uint8)])


def test_batch_images_are_read_and_encoded_off_the_callers_thread(
    client: YoloClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding (tensor) and PNG-encoding arrays (bytes) run in worker threads, in both clients."""
    threads: list[threading.Thread] = []
    for name in ("to_bytes", "to_rgb"):
        original = getattr(images, name)
        monkeypatch.setattr(
            images,
            name,
            lambda *a, original=original, **k: (threads.append(threading.current_thread()), original(*a, **k))[1],
        )
    arrays = [np.zeros((8, 8, 3), np.uint8)] * 3
    with pytest.raises(UnavailableError):
        client.detect_batch(arrays, color="rgb")
    assert len(threads) >= 3 and threading.current_thread() not in threads


def test_a_batch_reports_the_network_failure_of_valid_images(client: YoloClient) -> None:
    with pytest.raises(UnavailableError):
        client.detect_batch([_png(), _png()])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"score_threshold": 0.1}, "below the server's 0.25"),
        ({"score_threshold": 1.5}, r"in \[0, 1\)"),
        ({"max_detections": -1}, ">= 0"),
        ({"max_detections": 2.5}, ">= 0"),
        ({"timeout": 0}, "positive"),
    ],
)
def test_bad_call_options(client: YoloClient, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.detect(_png(), **kwargs)


def test_an_unknown_call_keyword_is_a_type_error_as_in_any_call(client: YoloClient) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        client.detect(_png(), colour="rgb")
    with pytest.raises(TypeError, match="unexpected keyword argument 'score'"):
        client.detect_batch([_png()], score=0.5)


def test_a_valid_image_does_reach_the_network(client: YoloClient) -> None:
    """The counterpart of the tests above: a good input gets past validation and fails on the dead port."""
    with pytest.raises(UnavailableError):
        client.detect(_png())


def test_bytes_transport_sends_files_unchanged(tmp_path) -> None:
    data = _png()
    path = tmp_path / "x.png"
    path.write_bytes(data)
    assert images.to_bytes(path) == data
    assert images.to_bytes(str(path)) == data
    assert images.to_bytes(bytearray(data)) == data


def test_arrays_are_sent_as_lossless_png_with_the_stated_order() -> None:
    rgb = noise(7, 9, 3)
    for color, array in (("rgb", rgb), ("bgr", rgb[:, :, ::-1])):
        encoded = images.to_bytes(array, color=color)
        assert images.image_format(encoded) == "png"
        np.testing.assert_array_equal(decode_rgb(encoded), rgb)


def test_pil_images_are_rgb() -> None:
    import PIL.Image as pil

    rgb = noise(5, 6, 3, seed=1)
    np.testing.assert_array_equal(images.to_rgb(pil.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(images.to_rgb(pil.fromarray(rgb).convert("RGBA")), rgb)


def test_decoded_files_are_rgb() -> None:
    rgb = images.to_rgb(_png())
    assert rgb.shape == (10, 20, 3)
    assert tuple(rgb[0, 0]) == (0, 0, 255) and tuple(rgb[0, -1]) == (0, 0, 0)


def test_damaged_image_is_reported_by_the_tensor_transport() -> None:
    with pytest.raises(InvalidInputError, match="cannot decode"):
        images.to_rgb(_png()[:40])


def test_tensor_transport_uses_the_shared_letterbox() -> None:
    from yolo_client.geometry import letterbox

    tensor, params = images.to_tensor(_png(20, 10), 64, 32, letterbox_input=True)
    expected, expected_params = letterbox(images.to_rgb(_png(20, 10)), 64, 32, True)
    assert params == expected_params and tensor.shape == (3, 32, 64)
    np.testing.assert_array_equal(tensor, expected)


@pytest.mark.parametrize(
    "head, name",
    [(b"\xff\xd8\xff\xe0", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"), (b"RIFF\0\0\0\0WEBPVP8 ", "webp"),
     (b"GIF89a", "gif"), (b"P6\n", "pnm"), (b"II*\x00", "tiff"), (b"<html>", None), (b"P9 ", None)],
)  # fmt: skip
def test_image_format_sniffing(head: bytes, name: str | None) -> None:
    assert images.image_format(head + b"\0" * 8) == name
