"""The served models (the fused image model, the tensor ensemble, and the bytes ensemble of ``--no-fused``) give
the in-process Detector's detections on the same pixels."""

from __future__ import annotations

import io
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image

from tests.helpers import triton_requests as req
from tests.helpers.images import decode_rgb, encode, scene
from tests.helpers.serving import TritonTestServer, serving

pytestmark = pytest.mark.integration


def exif_rotated_jpeg(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(scene(height, width, seed=5)[..., ::-1]).save(buffer, "JPEG", exif=exif, quality=90)
    return buffer.getvalue()


IMAGES = {
    "jpeg-640x480": lambda: encode(".jpg", scene(480, 640, 1), cv2.IMWRITE_JPEG_QUALITY, 90),
    "jpeg-1920x1080": lambda: encode(".jpg", scene(1080, 1920, 2)),
    "jpeg-97x333": lambda: encode(".jpg", scene(333, 97, 3)),
    "png-320x256": lambda: encode(".png", scene(256, 320, 4)),
    "png-1000x37": lambda: encode(".png", scene(37, 1000, 6)),
    "png-rgba-200x150": lambda: encode(".png", np.dstack([scene(150, 200, 7), np.full((150, 200), 128, np.uint8)])),
    "jpeg-exif-rotated": lambda: exif_rotated_jpeg(90, 160),
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_image_model_matches_the_detector(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient, name: str
) -> None:
    data = IMAGES[name]()
    [found] = req.split_result(client.infer(triton_server.model_name, req.bytes_inputs([data])))
    [expected] = triton_server.detector.detect([decode_rgb(data)])
    assert len(expected) > 0, "the random-weights oracle should find something"
    req.assert_same_detections(found, expected)
    height, width = decode_rgb(data).shape[:2]
    assert (
        (found.boxes >= 0).all()
        and (found.boxes[:, [0, 2]] <= width).all()
        and (found.boxes[:, [1, 3]] <= height).all()
    )
    assert (np.diff(found.scores) <= 0).all(), "sorted by score, descending"


def test_one_request_with_several_images_is_ragged_with_counts(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient
) -> None:
    images = [IMAGES["jpeg-640x480"](), IMAGES["png-1000x37"](), IMAGES["jpeg-97x333"]()]
    result = client.infer(triton_server.model_name, req.bytes_inputs(images))
    counts = result.as_numpy("COUNT")
    assert counts.shape == (3, 1)
    assert result.as_numpy("BOXES").shape == (3, counts.max(), 4)
    expected = triton_server.detector.detect([decode_rgb(data) for data in images])
    for found, want in zip(req.split_result(result), expected, strict=True):
        req.assert_same_detections(found, want)


def test_tensor_ensemble_matches_the_detector(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient
) -> None:
    detector = triton_server.detector
    images = [decode_rgb(IMAGES[name]()) for name in ("jpeg-1920x1080", "png-320x256")]
    prepared = [detector.preprocess(image) for image in images]
    batch = np.stack([tensor for tensor, _ in prepared])
    resize = np.stack([params.pack() for _, params in prepared])
    assert batch.shape == (2, 3, triton_server.input_height, triton_server.input_width)
    result = client.infer(triton_server.tensor_model_name, req.tensor_inputs(batch, resize))
    for found, want in zip(req.split_result(result), detector.detect(images), strict=True):
        req.assert_same_detections(found, want)


def test_concurrent_requests_each_get_their_own_detections(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient
) -> None:
    images = [encode(".jpg", scene(200 + 40 * i, 300 - 20 * i, seed=20 + i)) for i in range(8)]
    answers = req.burst(client, [(triton_server.model_name, req.bytes_inputs([data])) for data in images])
    expected = triton_server.detector.detect([decode_rgb(data) for data in images])
    for answer, want in zip(answers, expected, strict=True):
        [found] = req.split_result(answer)
        req.assert_same_detections(found, want)


@pytest.fixture(scope="module")
def ensemble_grpc_url(triton_server: TritonTestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared server's model built with ``--no-fused`` (preprocess -> detector -> postprocess), served."""
    from yolo_server.cli import main as cli_main

    workdir = tmp_path_factory.mktemp("ensemble")
    repository = workdir / "repository"
    built = cli_main(
        ["build", "--cfg", str(triton_server.cfg), "--weights", str(triton_server.weights),
         "--names", str(triton_server.names), "--size", f"{triton_server.input_width}x{triton_server.input_height}",
         "--max-batch-size", str(triton_server.max_batch_size), "--no-fused", "--output", str(repository)]
    )  # fmt: skip
    assert built == 0
    assert (repository / f"{triton_server.model_name}_preprocess").is_dir()
    with serving(repository, workdir, "--check-interval", "0") as url:
        yield url


def test_the_ensemble_layout_gives_the_fused_models_detections(
    triton_server: TritonTestServer, client: grpcclient.InferenceServerClient, ensemble_grpc_url: str
) -> None:
    images = [IMAGES[name]() for name in ("jpeg-640x480", "png-1000x37", "png-rgba-200x150")]
    expected = triton_server.detector.detect([decode_rgb(data) for data in images])
    fused = req.split_result(client.infer(triton_server.model_name, req.bytes_inputs(images)))
    with grpcclient.InferenceServerClient(ensemble_grpc_url) as ensemble_client:
        config = ensemble_client.get_model_config(triton_server.model_name, as_json=True)["config"]
        assert config["platform"] == "ensemble"
        ensemble = req.split_result(ensemble_client.infer(triton_server.model_name, req.bytes_inputs(images)))
    for from_fused, from_ensemble, want in zip(fused, ensemble, expected, strict=True):
        req.assert_same_detections(from_fused, want)
        req.assert_same_detections(from_ensemble, want)
