"""The ``model.py`` adapters run as Triton runs them, on the stand-in ``pb_utils``: ``initialize`` with the built
config, then ``execute`` on one dynamic batch of requests.

Each answers one response per request, in order; a bad request gets INVALID_ARG and its neighbours their
results; and what they answer is the oracle's (the in-process :class:`~yolo_server.pipeline.Detector` on the same
IR, or the runtime and geometry functions they wrap).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import python_backend as pb_utils
from tests.helpers.images import decode_rgb, encode, noise
from tests.helpers.small_repository import DEMO_CFG, DEMO_NAMES, DEMO_WEIGHTS, SMALL_NAME, SMALL_SIZE
from tests.helpers.triton_requests import Found, assert_same_detections
from yolo_client.contract import (
    DETECTOR_INPUT,
    DETECTOR_PIXELS,
    IMAGE,
    OUTPUT_NAMES,
    PIXELS,
    RESIZE,
    head_name,
    model_name,
    read_parameters,
)
from yolo_client.geometry import pixels_to_input, prepare_pixels
from yolo_client.scenes import generate_scene
from yolo_server.pipeline import Detector
from yolo_server.triton.runtime import OpenVINORunner, served_ir
from yolo_server.triton.settings import DetectorSettings

SCENE_SEED = 3000  # the demo's validation seed: shapes it finds


@pytest.fixture(autouse=True)
def own_threads() -> Iterator[None]:
    """The adapters set cv2's and torch's threads for their process; this one gets its own back."""
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    yield
    cv2.setNumThreads(cv2_threads)
    torch.set_num_threads(torch_threads)


def load(repository: Path, role: str) -> Any:
    return pb_utils.load_model(pb_utils.model_args(repository, model_name(SMALL_NAME, role)))


def png(index: int, size: tuple[int, int] = (240, 320)) -> bytes:
    """A demo scene (RGB) resized to ``size`` (height, width), PNG-encoded: lossless, so both decoders agree."""
    image = cv2.resize(generate_scene(SCENE_SEED, index).image, size[::-1], interpolation=cv2.INTER_AREA)
    return encode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def image_request(data: bytes) -> pb_utils.InferenceRequest:
    return pb_utils.InferenceRequest({IMAGE: np.array([[data]], dtype=object)})


def served_runner(repository: Path) -> OpenVINORunner:
    """The IR and precision the detector serves on this CPU, as a runner of its own."""
    args = pb_utils.model_args(repository, model_name(SMALL_NAME, "detector"))
    settings = DetectorSettings.from_parameters(read_parameters(json.loads(args["model_config"])))
    artifact = Path(args["model_repository"]) / args["model_version"] / settings.artifact
    path, precision = served_ir(artifact, settings.precision, settings.int8_artifact)
    return OpenVINORunner(path, precision)


def oracle(repository: Path) -> Detector:
    """The in-process detector on the IR the repository serves."""
    return Detector(
        DEMO_CFG,
        DEMO_WEIGHTS,
        DEMO_NAMES,
        input_size=SMALL_SIZE,
        network=served_runner(repository),
    )


def found(response: pb_utils.InferenceResponse) -> list[Found]:
    boxes, scores, classes, count = (response.outputs()[name] for name in OUTPUT_NAMES)
    return [Found(boxes[i, :n], scores[i, :n], classes[i, :n]) for i, n in enumerate(count[:, 0])]


def assert_invalid(response: pb_utils.InferenceResponse, fragment: str) -> None:
    error = response.error()
    assert error is not None and error.code() == pb_utils.TritonError.INVALID_ARG, response
    assert fragment in error.message(), error.message()


def test_the_fused_model_answers_each_request_with_the_oracles_detections(
    small_repositories: dict[str, Path],
) -> None:
    repository = small_repositories["fused"]
    model = load(repository, "images")
    images = [png(0), png(1, (200, 150))]
    responses = model.execute([image_request(images[0]), image_request(b"not an image"), image_request(images[1])])
    assert len(responses) == 3
    assert_invalid(responses[1], "undecodable image")
    want = oracle(repository).detect([decode_rgb(data) for data in images])
    assert sum(len(w) for w in want) > 0, "the demo detector finds shapes at 128x128: the comparison means something"
    for response, expected in zip((responses[0], responses[2]), want, strict=True):
        assert not response.has_error()
        [got] = found(response)
        assert_same_detections(got, expected)


def test_the_preprocess_letterboxes_as_the_geometry_does(small_repositories: dict[str, Path]) -> None:
    repository = small_repositories["ensemble"]
    model = load(repository, "preprocess")
    data = png(2)
    responses = model.execute([image_request(noise(64).tobytes()), image_request(data)])
    assert_invalid(responses[0], "undecodable image")
    out = responses[1].outputs()
    image = decode_rgb(data)
    _, params = oracle(repository).preprocess(image)
    np.testing.assert_array_equal(out[RESIZE], params.pack()[None])
    np.testing.assert_array_equal(out[PIXELS], prepare_pixels(image, params)[None])


def test_the_detector_runs_a_dynamic_batch_in_one_forward_and_splits_it_back(
    small_repositories: dict[str, Path],
) -> None:
    repository = small_repositories["fused"]
    model = load(repository, "detector")
    rng = np.random.default_rng(0)
    one, two = (rng.random((n, 3, SMALL_SIZE, SMALL_SIZE), dtype=np.float32) for n in (1, 2))
    image = decode_rgb(png(3))
    _, params = oracle(repository).preprocess(image)
    pixels = prepare_pixels(image, params)[None]
    requests = [
        pb_utils.InferenceRequest({DETECTOR_INPUT: one}),
        pb_utils.InferenceRequest({}),
        pb_utils.InferenceRequest({DETECTOR_INPUT: two}),
        pb_utils.InferenceRequest({DETECTOR_PIXELS: pixels, RESIZE: params.pack()[None]}),
    ]
    responses = model.execute(requests)
    assert_invalid(responses[1], "send exactly one of")
    batch = np.concatenate([one, two, pixels_to_input(pixels[0], params)[None]])
    heads = served_runner(repository)(batch)
    rows = {0: slice(0, 1), 2: slice(1, 3), 3: slice(3, 4)}
    for index, taken in rows.items():
        out = responses[index].outputs()
        assert list(out) == [head_name(k) for k in range(len(heads))]
        for k, head in enumerate(heads):
            np.testing.assert_allclose(out[head_name(k)], head[taken], rtol=1e-5, atol=1e-5)


def test_the_postprocess_decodes_heads_as_the_oracle_does(small_repositories: dict[str, Path]) -> None:
    repository = small_repositories["ensemble"]
    model = load(repository, "postprocess")
    detector = oracle(repository)
    images = [decode_rgb(png(index)) for index in (4, 5)]
    prepared = [detector.preprocess(image) for image in images]
    heads = served_runner(repository)(np.stack([tensor for tensor, _ in prepared]))
    requests = [
        pb_utils.InferenceRequest(
            {**{head_name(k): head[i : i + 1] for k, head in enumerate(heads)}, RESIZE: prepared[i][1].pack()[None]}
        )
        for i in range(len(images))
    ]
    bad = pb_utils.InferenceRequest({**requests[0].arrays, RESIZE: np.zeros((1, 5), np.float32)})
    responses = model.execute([requests[0], bad, requests[1]])
    assert_invalid(responses[1], "RESIZE")
    want = detector.detect(images)
    assert sum(len(w) for w in want) > 0
    for response, expected in zip((responses[0], responses[2]), want, strict=True):
        [got] = found(response)
        assert_same_detections(got, expected)
