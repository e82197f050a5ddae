"""Wire format: ragged outputs to detections, per-call limits, model-config parameters, error mapping."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import grpc
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from yolo_client import errors
from yolo_client.contract import ROLES, STAGES, ModelInfo, above_score_threshold, model_name, model_roles, role_pattern
from yolo_client.protocol import (
    apply_limits,
    check_limits,
    model_for,
    parse_arrays,
    parse_model_info,
    repository_models,
)
from yolo_client.types import Detection, RepositoryModel

NAMES = ("person", "dog")


def _info(**overrides) -> ModelInfo:
    values = dict(name="m", class_names=NAMES, input_width=416, input_height=416, letterbox=True,
                  score_threshold=0.25, nms_threshold=0.45, max_detections=100, max_batch_size=8)  # fmt: skip
    values.update(overrides)
    return ModelInfo(**values)


def test_ragged_batch_is_cut_at_count() -> None:
    boxes = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    scores = np.array([[0.9, 0.5, 0.0], [0.8, 0.0, 0.0]], np.float32)
    classes = np.array([[1, 0, 0], [7, 0, 0]], np.int32)
    count = np.array([[2], [1]], np.int32)
    out = parse_arrays(boxes, scores, classes, count, _info())
    assert [len(d) for d in out] == [2, 1]
    assert out[0][0] == Detection((0.0, 1.0, 2.0, 3.0), pytest.approx(0.9), 1, "dog")
    assert out[1][0].box == (12.0, 13.0, 14.0, 15.0)
    assert out[1][0].label == "class_7"  # no name from the server for id 7
    assert all(isinstance(v, float) for v in out[0][0].box)


def test_zero_detections() -> None:
    out = parse_arrays(
        np.zeros((1, 0, 4), np.float32), np.zeros((1, 0)), np.zeros((1, 0), np.int32), np.zeros((1, 1)), _info()
    )
    assert out == [[]]


def test_count_beyond_the_rows_is_a_server_error() -> None:
    with pytest.raises(errors.ServerError):
        parse_arrays(np.zeros((1, 1, 4)), np.zeros((1, 1)), np.zeros((1, 1), np.int32), np.array([[3]]), _info())


def test_limits_only_tighten() -> None:
    info = _info()
    check_limits(info, 0.25, 0)
    check_limits(info, 0.9, 1000)  # above the server's cap: the server's cap still holds
    with pytest.raises(errors.InvalidInputError, match="below the server's"):
        check_limits(info, 0.2, None)
    with pytest.raises(errors.InvalidInputError):
        check_limits(info, None, True)


def test_a_score_threshold_of_one_is_refused_by_the_model_info_and_a_call() -> None:
    """Scores are at most 1 and kept strictly above the threshold: 1 would keep nothing, so the range is [0, 1)
    (the build's ``PostprocessConfig`` checks it the same way: tests/unit/test_postprocess.py)."""
    assert not above_score_threshold(1.0, 1.0)
    check_limits(_info(score_threshold=0.0), 0.0, None)
    parameters = {k: {"string_value": v} for k, v in _info(score_threshold=0.999).to_parameters().items()}
    assert parse_model_info("m", {"parameters": parameters}).score_threshold == 0.999
    with pytest.raises(errors.InvalidInputError, match=re.escape("in [0, 1), got 1.0")):
        check_limits(_info(), 1.0, None)
    parameters = {k: {"string_value": v} for k, v in _info(score_threshold=1.0).to_parameters().items()}
    with pytest.raises(errors.ServerError, match=re.escape("[0, 1)")):
        parse_model_info("m", {"parameters": parameters})


def test_apply_limits() -> None:
    dets = [Detection((0, 0, 1, 1), s, 0, "person") for s in (0.9, 0.7, 0.5, 0.3)]
    assert [d.score for d in apply_limits(dets, 0.4, None)] == [0.9, 0.7, 0.5]
    assert [d.score for d in apply_limits(dets, 0.4, 2)] == [0.9, 0.7]
    assert apply_limits(dets, None, 0) == []
    assert apply_limits(dets, None, None) == dets


def test_a_detection_at_the_per_call_threshold_is_dropped_as_the_server_drops_one_at_its_own() -> None:
    scores = [float(np.float32(s)) for s in (0.9, 0.5, 0.3)]  # as they come off the wire
    dets = [Detection((0, 0, 1, 1), s, 0, "person") for s in scores]
    assert [d.score for d in apply_limits(dets, 0.5, None)] == scores[:1]
    assert [d.score for d in apply_limits(dets, 0.3, None)] == scores[:2]
    assert apply_limits(dets, 0.9, None) == []


def test_the_cut_compares_at_float32_as_the_servers_ops_do() -> None:
    """A score comes off the wire as float32; the server's ops compare it with a float32 threshold."""
    at, above = np.float32(0.3), np.nextafter(np.float32(0.3), np.float32(1))
    assert above_score_threshold(np.array([at, above]), 0.3).tolist() == [False, True]  # the server's arrays
    assert [above_score_threshold(float(score), 0.3) for score in (at, above)] == [False, True]  # the client's floats
    assert [d.score for d in apply_limits([Detection((0, 0, 1, 1), float(at), 0, "x")], 0.3, None)] == []


def test_repository_models_fill_what_triton_leaves_out() -> None:
    index = {"models": [{"name": "m", "version": "1", "state": "READY"}, {"name": "m_tensor", "reason": "x"}]}
    assert repository_models(index) == [
        RepositoryModel("m", "1", "READY", ""),
        RepositoryModel("m_tensor", "", "", "x"),
    ]
    assert repository_models({}) == []


def test_model_info_from_config_json() -> None:
    params = {"class_names": json.dumps(list(NAMES)), "input_width": "512", "input_height": "320",
              "letterbox": "true", "score_threshold": "0.3", "nms_threshold": "0.5", "max_detections": "50",
              "beta_nms": "0.6", "class_agnostic": "false", "weights": "RANDOM-CALIBRATED-NOT-TRAINED", "target": "cpu", "precision": "fp32"}  # fmt: skip
    config = {
        "config": {"name": "m", "max_batch_size": 16, "parameters": {k: {"string_value": v} for k, v in params.items()}}
    }
    info = parse_model_info("m", config)
    assert info == _info(input_width=512, input_height=320, score_threshold=0.3, nms_threshold=0.5, max_detections=50,
                         max_batch_size=16, weights="RANDOM-CALIBRATED-NOT-TRAINED", target="cpu", precision="fp32")  # fmt: skip
    assert not info.trained and info.num_classes == 2 and info.label(5) == "class_5"


def test_model_info_from_a_foreign_model() -> None:
    with pytest.raises(errors.ServerError, match="yolo-server model"):
        parse_model_info("resnet", {"config": {"name": "resnet"}})
    bad = {"parameters": {k: {"string_value": v} for k, v in
           {"class_names": "not json", "input_width": "1", "input_height": "1", "letterbox": "1", "score_threshold": "0"}.items()}}  # fmt: skip
    with pytest.raises(errors.ServerError, match="malformed"):
        parse_model_info("m", bad)


def test_what_the_build_publishes_is_what_the_client_reads() -> None:
    published = _info(beta_nms=0.5, class_agnostic=True, weights="ab" * 32, target="tensorrt", precision="fp16")
    parameters = {key: {"string_value": value} for key, value in published.to_parameters().items()}
    assert "name" not in parameters and "max_batch_size" not in parameters  # from the config itself, not parameters
    read = parse_model_info("m", {"config": {"max_batch_size": 8, "parameters": parameters}})
    assert read == published and read.trained


@pytest.mark.parametrize(
    ("key", "text"),
    [("letterbox", "1"), ("input_width", "416.5"), ("max_detections", "true"), ("class_names", '["a", 1]'),
     ("score_threshold", '"0.3"')],
)  # fmt: skip
def test_a_parameter_of_the_wrong_json_type_is_named(key: str, text: str) -> None:
    parameters = {k: {"string_value": v} for k, v in {**_info().to_parameters(), key: text}.items()}
    with pytest.raises(errors.ServerError, match=key):
        parse_model_info("m", {"parameters": parameters})


def test_model_for_transport() -> None:
    assert model_for("yolov4", "bytes") == "yolov4" and model_for("yolov4", "tensor") == "yolov4_tensor"
    with pytest.raises(errors.InvalidInputError):
        model_for("yolov4", cast(Any, "http"))  # not a Transport, on purpose


@pytest.mark.parametrize(
    "status, cls",
    [
        ("StatusCode.UNAVAILABLE", errors.UnavailableError),
        ("StatusCode.RESOURCE_EXHAUSTED", errors.UnavailableError),
        ("StatusCode.DEADLINE_EXCEEDED", errors.DeadlineExceededError),
        ("StatusCode.INVALID_ARGUMENT", errors.ServerRejectedError),
        ("StatusCode.NOT_FOUND", errors.ServerRejectedError),
        ("StatusCode.UNAUTHENTICATED", errors.ServerRejectedError),
        ("StatusCode.INTERNAL", errors.ServerError),
        (None, errors.YoloClientError),
    ],
)
def test_triton_exceptions_map_by_status(status: str | None, cls: type) -> None:
    err = errors.from_exception(
        InferenceServerException("the server's words", status=status, debug_details="dbg"), "h:1"
    )
    assert type(err) is cls
    assert "the server's words" in str(err) and err.endpoint == "h:1"
    if status:
        assert err.status == status.split(".")[1] and err.debug_details == "dbg"


def test_grpc_errors_map_too() -> None:
    class Rpc(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "failed to connect to all addresses"

    err = errors.from_exception(Rpc())
    assert isinstance(err, errors.UnavailableError) and err.status == "UNAVAILABLE"


def test_error_hierarchy() -> None:
    assert issubclass(errors.InvalidInputError, ValueError) and issubclass(errors.DeadlineExceededError, TimeoutError)
    for cls in (
        errors.InvalidInputError,
        errors.ServerRejectedError,
        errors.ServerError,
        errors.UnavailableError,
        errors.DeadlineExceededError,
    ):
        assert issubclass(cls, errors.YoloClientError)
    assert str(errors.UnavailableError("x", status="UNAVAILABLE", endpoint="h:1")) == "[UNAVAILABLE at h:1] x"


def test_a_model_is_a_step_of_another_only_where_that_one_is_served() -> None:
    names = ["cars_detector", "cars_detector_detector", "cars_detector_tensor", "m", "m_preprocess", "x_postprocess"]
    assert model_roles(names) == {
        "cars_detector": ("cars_detector", "images"),
        "cars_detector_detector": ("cars_detector", "detector"),
        "cars_detector_tensor": ("cars_detector", "tensor"),
        "m": ("m", "images"),
        "m_preprocess": ("m", "preprocess"),
        "x_postprocess": ("x_postprocess", "images"),  # no model x: an image model of its own
    }
    assert [model_name("m", role) for role in ROLES] == [name for name, _ in ROLE_NAMES]
    steps = re.compile(role_pattern(STAGES))
    assert [bool(steps.fullmatch(name)) for name, _ in ROLE_NAMES] == [role in STAGES for _, role in ROLE_NAMES]
    with pytest.raises(ValueError, match="no suffix"):
        role_pattern(["images"])


ROLE_NAMES = [("m", "images"), ("m_tensor", "tensor"), ("m_preprocess", "preprocess"), ("m_detector", "detector"),
              ("m_postprocess", "postprocess")]  # fmt: skip
