"""[yolo] decode against a hand-written per-cell loop (darknet's get_yolo_box, in network pixels), on numpy and on
torch."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from tests.helpers.namespaces import NAMESPACES, host, on
from yolo_server.darknet.cfg import YoloSpec
from yolo_server.ops.decode import decode_yolo


def head(anchors, classes=3, scale_x_y=1.0, new_coords=False) -> YoloSpec:
    return YoloSpec(tuple(anchors), classes, scale_x_y, new_coords, "greedynms", 0.6, line=1)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def reference_decode(outputs, heads, net_w, net_h):
    """Per image, a list of (x1, y1, x2, y2, objectness, [class probs]) in (head, anchor, row, col) order."""
    batch = outputs[0].shape[0]
    result = [[] for _ in range(batch)]
    for output, spec in zip(outputs, heads, strict=True):
        values = output.double().tolist()
        grid_h, grid_w = output.shape[2], output.shape[3]
        s, stride = spec.scale_x_y, 5 + spec.classes
        for b in range(batch):
            for a, (anchor_w, anchor_h) in enumerate(spec.anchors):
                for row in range(grid_h):
                    for col in range(grid_w):
                        t = [values[b][a * stride + k][row][col] for k in range(stride)]
                        if spec.new_coords:
                            tx, ty, obj, probs = t[0], t[1], t[4], t[5:]
                            w = t[2] * t[2] * 4 * anchor_w / net_w
                            h = t[3] * t[3] * 4 * anchor_h / net_h
                        else:
                            tx, ty, obj = sigmoid(t[0]), sigmoid(t[1]), sigmoid(t[4])
                            probs = [sigmoid(v) for v in t[5:]]
                            w = math.exp(t[2]) * anchor_w / net_w
                            h = math.exp(t[3]) * anchor_h / net_h
                        x = (col + tx * s - 0.5 * (s - 1)) / grid_w
                        y = (row + ty * s - 0.5 * (s - 1)) / grid_h
                        box = [(x - w / 2) * net_w, (y - h / 2) * net_h, (x + w / 2) * net_w, (y + h / 2) * net_h]
                        result[b].append((box, obj, probs))
    return result


def check_against_reference(namespace, outputs, heads, net_w, net_h):
    """decode_yolo on ``namespace``'s arrays of the torch ``outputs`` against the loop."""
    decoded = decode_yolo([on(namespace, o) for o in outputs], heads, net_w, net_h)
    boxes, objectness, class_probs = (host(a) for a in decoded)
    expected = reference_decode(outputs, heads, net_w, net_h)
    count = sum(len(h.anchors) * o.shape[2] * o.shape[3] for h, o in zip(heads, outputs, strict=True))
    assert boxes.shape == (len(expected), count, 4)
    assert objectness.shape == (len(expected), count)
    assert class_probs.shape == (len(expected), count, heads[0].classes)
    assert boxes.dtype == objectness.dtype == class_probs.dtype == np.float32
    expected_boxes = np.array([[e[0] for e in image] for image in expected])
    expected_obj = np.array([[e[1] for e in image] for image in expected])
    expected_probs = np.array([[e[2] for e in image] for image in expected])
    np.testing.assert_allclose(boxes, expected_boxes, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(objectness, expected_obj, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(class_probs, expected_probs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("seed", [0, 1])
def test_new_coords_0_with_scale_x_y_on_non_square_grids(namespace: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    heads = [head([(10, 14), (23, 27)], scale_x_y=1.05), head([(37, 58), (81, 82), (30, 20)], scale_x_y=1.2)]
    # net 160x96: strides 32 and 16 -> grids 5x3 and 10x6
    outputs = [torch.randn(2, 2 * 8, 3, 5, generator=g), torch.randn(2, 3 * 8, 6, 10, generator=g)]
    check_against_reference(namespace, outputs, heads, 160, 96)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("seed", [0, 1])
def test_new_coords_1_without_sigmoid(namespace: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    heads = [head([(12, 16), (19, 36)], classes=2, scale_x_y=2.0, new_coords=True)] * 2
    # the conv before [yolo] is logistic: values in (0, 1)
    outputs = [torch.rand(3, 2 * 7, 4, 2, generator=g), torch.rand(3, 2 * 7, 2, 1, generator=g)]
    check_against_reference(namespace, outputs, heads, 64, 128)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_order_is_head_anchor_row_col(namespace: str):
    spec = head([(8, 8), (16, 16)], classes=1)
    output = torch.zeros(1, 2 * 6, 2, 3)
    output[0, 6 + 4, 1, 2] = 5.0  # objectness of anchor 1, row 1, col 2
    outputs = [on(namespace, torch.zeros(1, 12, 1, 1)), on(namespace, output)]
    objectness = host(decode_yolo(outputs, [spec, spec], 96, 64)[1])
    assert objectness.shape == (1, 2 + 12)
    assert objectness[0].argmax() == 2 + 1 * 6 + 1 * 3 + 2


def test_half_precision_inputs_decode_in_float32():  # torch only: numpy has no bfloat16
    g = torch.Generator().manual_seed(4)
    spec = head([(10, 13), (33, 23)], classes=4, scale_x_y=1.1)
    output = torch.randn(1, 2 * 9, 2, 4, generator=g).to(torch.bfloat16)
    boxes, objectness, class_probs = decode_yolo([output], [spec], 128, 64)
    assert boxes.dtype == objectness.dtype == class_probs.dtype == torch.float32
    check_against_reference("torch", [output], [spec], 128, 64)  # reference reads the same bf16 values


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_huge_logits_stay_finite_and_quiet(namespace: str):
    spec = head([(10, 10)], classes=1)
    output = torch.zeros(1, 6, 1, 1)
    output[0, 2] = output[0, 3] = 1000.0  # exp would overflow
    output[0, 4], output[0, 5] = -1000.0, 1000.0  # so would the logistic's exp(-x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns on an overflow
        boxes, objectness, class_probs = (host(a) for a in decode_yolo([on(namespace, output)], [spec], 32, 32))
    assert np.isfinite(boxes).all()
    assert boxes[0, 0, 2] > 1e8
    assert 0.0 <= objectness[0, 0] < 1e-37 and class_probs[0, 0, 0] == 1.0


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_channels_heads_and_batch_are_checked(namespace: str):
    spec = head([(10, 10)], classes=1)
    with pytest.raises(ValueError, match=r"expects \[B, 6, h, w\]"):
        decode_yolo([on(namespace, torch.zeros(1, 7, 1, 1))], [spec], 32, 32)
    with pytest.raises(ValueError, match="2 outputs for 1"):
        decode_yolo([on(namespace, torch.zeros(1, 6, 1, 1))] * 2, [spec], 32, 32)
    with pytest.raises(ValueError, match="batch size"):
        decode_yolo(
            [on(namespace, torch.zeros(1, 6, 1, 1)), on(namespace, torch.zeros(2, 6, 1, 1))], [spec, spec], 32, 32
        )
    with pytest.raises(ValueError, match="classes"):
        decode_yolo([on(namespace, torch.zeros(1, 6, 1, 1))] * 2, [spec, head([(1, 1)], classes=2)], 32, 32)
