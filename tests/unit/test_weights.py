"""Darknet .weights I/O: official sizes, exact round trip, precise errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.darknet_files import cfg_path
from yolo_server.darknet import DarknetModel, WeightsError, load_darknet, load_spec, read_weights, write_weights
from yolo_server.darknet.model import fold_batch_norm
from yolo_server.darknet.random_weights import calibrated_random_weights
from yolo_server.darknet.weights import ConvWeights, DarknetWeights, expected_float_count


@pytest.mark.parametrize(
    ("name", "floats"),
    [("yolov4", 64_429_405), ("yolov4-tiny", 6_062_814), ("yolov4-csp", 52_986_205), ("yolov4x-mish", 99_847_037)],
)
def test_cfg_implies_the_official_float_count(name: str, floats: int) -> None:
    assert expected_float_count(load_spec(cfg_path(name))) == floats


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    spec = load_spec(cfg_path("yolov4-tiny"), 320)
    weights = calibrated_random_weights(spec, seed=3)
    path = tmp_path_factory.mktemp("w") / "tiny.weights"
    write_weights(path, spec, weights)
    return spec, weights, path


def test_official_file_size(tiny: tuple) -> None:
    _, _, path = tiny
    assert path.stat().st_size == 24_251_276  # the public yolov4-tiny.weights


def test_round_trip_is_bit_identical(tiny: tuple, tmp_path: Path) -> None:
    spec, weights, path = tiny
    again = read_weights(path, spec)
    for a, b in zip(weights.convs, again.convs, strict=True):
        for field in ("bias", "weight", "gamma", "running_mean", "running_var"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None and y is None) or np.array_equal(x, y)
    copy = tmp_path / "copy.weights"
    write_weights(copy, spec, again)
    assert copy.read_bytes() == path.read_bytes()
    image = torch.rand(2, 3, 320, 320)
    with torch.no_grad():
        first = DarknetModel(spec, weights).eval()(image)
        second, _ = load_darknet(cfg_path("yolov4-tiny"), copy, 320)
        for a, b in zip(first, second(image), strict=True):
            assert torch.equal(a, b)


def test_truncated_file_names_expected_and_found(tiny: tuple, tmp_path: Path) -> None:
    spec, _, path = tiny
    short = tmp_path / "short.weights"
    short.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(WeightsError, match=r"too short: the cfg expects 6,062,814 floats, the file has 6,062,812"):
        read_weights(short, spec)


def test_extra_bytes_name_expected_and_found(tiny: tuple, tmp_path: Path) -> None:
    spec, _, path = tiny
    long = tmp_path / "long.weights"
    long.write_bytes(path.read_bytes() + b"\0" * 12)
    with pytest.raises(WeightsError, match=r"too long: the cfg expects 6,062,814 floats, the file has 6,062,817"):
        read_weights(long, spec)
    ragged = tmp_path / "ragged.weights"
    ragged.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(WeightsError, match="not a whole number"):
        read_weights(ragged, spec)


def test_old_header_with_32_bit_seen(tiny: tuple, tmp_path: Path) -> None:
    spec, weights, path = tiny
    old = DarknetWeights(weights.convs, major=0, minor=1, revision=0, seen=123)
    old_path = tmp_path / "old.weights"
    write_weights(old_path, spec, old)
    assert old_path.stat().st_size == path.stat().st_size - 4
    again = read_weights(old_path, spec)
    assert (again.major, again.minor, again.seen) == (0, 1, 123)
    assert np.array_equal(again.convs[-1].weight, weights.convs[-1].weight)


def test_bn_folding_in_float64_equals_unfolded_conv_bn() -> None:
    rng = np.random.default_rng(0)
    n, c = 8, 4
    params = ConvWeights(
        bias=rng.normal(size=n).astype(np.float32),
        weight=rng.normal(size=(n, c, 3, 3)).astype(np.float32),
        gamma=rng.uniform(0.5, 1.5, n).astype(np.float32),
        running_mean=rng.normal(size=n).astype(np.float32),
        running_var=rng.uniform(0.1, 2.0, n).astype(np.float32),
    )
    x = torch.from_numpy(rng.normal(size=(1, c, 9, 9))).double()
    conv = torch.nn.functional.conv2d(x, torch.from_numpy(params.weight).double(), padding=1)
    bn = torch.nn.functional.batch_norm(
        conv,
        torch.from_numpy(params.running_mean).double(),
        torch.from_numpy(params.running_var).double(),
        torch.from_numpy(params.gamma).double(),
        torch.from_numpy(params.bias).double(),
        eps=1e-5,
    )
    weight, bias = fold_batch_norm(params)
    folded = torch.nn.functional.conv2d(
        x, torch.from_numpy(weight).double(), torch.from_numpy(bias).double(), padding=1
    )
    assert torch.allclose(folded, bn, rtol=1e-6, atol=1e-5)
