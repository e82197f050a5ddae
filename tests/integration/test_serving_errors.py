"""Every bad input gets INVALID_ARG with a message, for that request only; odd valid images get detections.

Each case is sent in one burst with valid requests, which must still be answered
correctly, and the server must stay ready afterwards.
"""

from __future__ import annotations

import io
import re
import urllib.request
from collections.abc import Sequence

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.helpers import payloads
from tests.helpers import triton_requests as req
from tests.helpers.images import decode_rgb, encode, noise, scene
from tests.helpers.serving import TritonTestServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def valid_jpeg() -> bytes:
    return encode(".jpg", scene(240, 320, seed=99))


def cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(scene(120, 160, seed=8)[..., ::-1]).convert("CMYK").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def assert_valid_neighbours_answered(
    triton_server: TritonTestServer, neighbours: Sequence[req.Answer], valid_jpeg: bytes
) -> None:
    [expected] = triton_server.detector.detect([decode_rgb(valid_jpeg)])
    for answer in neighbours:
        assert not isinstance(answer, Exception), f"a valid neighbour failed: {answer}"
        [found] = req.split_result(answer)
        req.assert_same_detections(found, expected)


def assert_server_ready(triton_server: TritonTestServer, client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_ready()
    for model in client.get_model_repository_index(headers=triton_server.admin_headers, as_json=True)["models"]:
        assert client.is_model_ready(model["name"]), model


BAD_IMAGES = {
    "empty": (lambda: b"", ["empty image"]),
    "random-bytes": (lambda: noise(4096, seed=3).tobytes(), ["undecodable"]),
    "truncated-jpeg": (lambda: encode(".jpg", scene(200, 200, 4))[:-500], ["truncated JPEG"]),
    "zero-pixels": (
        lambda: bytes.fromhex("89504e470d0a1a0a0000000d49484452000000000000000a0802000000"),
        ["no pixels", "0x10"],
    ),
    "over-pixel-cap": (
        lambda: encode(".png", np.zeros((7100, 7100), np.uint8)),
        ["7100x7100", "over the limit of 50000000"],
    ),
    "tiff": (lambda: payloads.tiff(scene(120, 160, 5)), ["TIFF images are not accepted"]),
    "jpeg2000": (lambda: payloads.jpeg2000(scene(120, 160, 6)), ["JPEG2000 images are not accepted"]),
    "jpeg-scan-bomb": (lambda: payloads.scan_bomb(scene(240, 320, 7), 65), ["JPEG has 65 scans, over the limit of 64"]),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_rejected_and_neighbours_answered(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient, valid_jpeg: bytes, case: str
) -> None:
    make, fragments = BAD_IMAGES[case]
    model = triton_server.model_name
    answers = req.burst(client, [(model, req.bytes_inputs([valid_jpeg])), (model, req.bytes_inputs([make()])),
                                 (model, req.bytes_inputs([valid_jpeg]))])  # fmt: skip
    req.assert_invalid_argument(answers[1], *fragments)
    assert_valid_neighbours_answered(triton_server, [answers[0], answers[2]], valid_jpeg)
    assert_server_ready(triton_server, client)


ODD_IMAGES = {
    "1x1": lambda: encode(".png", scene(1, 1, 1)),
    "1x20000": lambda: encode(".png", scene(1, 20000, 2)),
    "grayscale": lambda: encode(".png", scene(100, 130, 3)[..., 0]),
    "rgba": lambda: encode(".png", np.dstack([scene(90, 70, 4), np.full((90, 70), 7, np.uint8)])),
    "16-bit-png": lambda: encode(".png", scene(64, 96, 5).astype(np.uint16) * 257),
    "cmyk-jpeg": cmyk_jpeg,
}


@pytest.mark.parametrize("case", list(ODD_IMAGES))
def test_odd_valid_images_get_detections(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient, valid_jpeg: bytes, case: str
) -> None:
    data = ODD_IMAGES[case]()
    model = triton_server.model_name
    answers = req.burst(client, [(model, req.bytes_inputs([data])), (model, req.bytes_inputs([valid_jpeg]))])
    assert not isinstance(answers[0], Exception), answers[0]
    [found] = req.split_result(answers[0])
    [expected] = triton_server.detector.detect([decode_rgb(data)])
    assert len(found) > 0
    req.assert_same_detections(found, expected)
    assert_valid_neighbours_answered(triton_server, answers[1:], valid_jpeg)


def test_bad_image_inside_a_multi_image_request_names_it(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient, valid_jpeg: bytes
) -> None:
    with pytest.raises(Exception) as raised:
        client.infer(triton_server.model_name, req.bytes_inputs([valid_jpeg, b"", valid_jpeg]))
    req.assert_invalid_argument(raised.value, "image 1 of 3", "empty image")


def test_batch_over_the_maximum_is_rejected(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient, valid_jpeg: bytes
) -> None:
    too_many = triton_server.max_batch_size + 1
    answers = req.burst(client, [(triton_server.model_name, req.bytes_inputs([valid_jpeg] * too_many)),
                                 (triton_server.model_name, req.bytes_inputs([valid_jpeg]))])  # fmt: skip
    req.assert_invalid_argument(answers[0], f"must be <= {triton_server.max_batch_size}")
    assert_valid_neighbours_answered(triton_server, answers[1:], valid_jpeg)


def _tensor_case(triton_server: TritonTestServer, case: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(INPUT, RESIZE, expected message fragments) of a bad tensor request."""
    detector = triton_server.detector
    batch, params = detector.preprocess(decode_rgb(encode(".jpg", scene(240, 320, seed=99))))
    batch, resize = batch[None], params.pack()[None]
    width, height = triton_server.input_width, triton_server.input_height
    if case == "wrong-dtype":
        return batch.astype(np.float64), resize, ["FP64"]
    if case == "wrong-shape":
        return batch[:, :, : height // 2], resize, ["shape"]
    if case == "nan-input":
        bad = batch.copy()
        bad[0, 1, 5, 7] = np.nan
        return bad, resize, ["INPUT contains NaN or Inf"]
    if case == "inf-input":
        bad = batch.copy()
        bad[0, 0, 0, 0] = np.inf
        return bad, resize, ["INPUT contains NaN or Inf"]
    if case == "inf-resize":
        return batch, np.where(np.arange(6) == 2, np.inf, resize).astype(np.float32), ["RESIZE contains NaN or Inf"]
    if case == "resize-outside-input":
        return batch, np.array([[640, 480, width, height, 9, 0]], np.float32), [f"outside the {width}x{height} input"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["wrong-dtype", "wrong-shape", "nan-input", "inf-input", "inf-resize", "resize-outside-input"]
)
def test_bad_tensor_is_rejected_and_neighbours_answered(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient, case: str
) -> None:
    detector = triton_server.detector
    valid_jpeg = encode(".jpg", scene(240, 320, seed=99))
    batch, params = detector.preprocess(decode_rgb(valid_jpeg))
    good = (triton_server.tensor_model_name, req.tensor_inputs(batch[None], params.pack()[None]))
    bad_input, bad_resize, fragments = _tensor_case(triton_server, case)
    answers = req.burst(
        client, [good, good, (triton_server.tensor_model_name, req.tensor_inputs(bad_input, bad_resize)), good]
    )
    req.assert_invalid_argument(answers[2], *fragments)
    assert_valid_neighbours_answered(triton_server, [answers[0], answers[1], answers[3]], valid_jpeg)
    assert_server_ready(triton_server, client)


def test_rejections_are_counted_by_reason(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient
) -> None:
    def rejected(reason: str) -> float:
        text = urllib.request.urlopen(triton_server.metrics_url, timeout=10).read().decode()
        pattern = rf'^yolo_rejected_inputs_total{{[^}}]*reason="{reason}"[^}}]*}} (\S+)$'
        return sum(float(value) for value in re.findall(pattern, text, flags=re.MULTILINE))

    before = rejected("truncated")
    with pytest.raises(InferenceServerException, match="truncated"):
        client.infer(triton_server.model_name, req.bytes_inputs([encode(".jpg", scene(64, 64, 1))[:-100]]))
    assert rejected("truncated") == before + 1
