"""Box conversions, IoU and darknet DIoU against plain float64 loops, on numpy and on torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers.namespaces import NAMESPACES, host, on
from tests.helpers.reference_boxes import reference_diou, reference_iou
from yolo_server.ops.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_diou,
    box_iou,
    box_xyxy_to_cxcywh,
    paired_box_diou,
    paired_box_iou,
)

pytestmark = pytest.mark.parametrize("namespace", NAMESPACES)


def random_boxes(generator: torch.Generator, count: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    xy = torch.rand(count, 2, generator=generator, dtype=dtype) * 50
    wh = torch.rand(count, 2, generator=generator, dtype=dtype) * 30
    return torch.cat((xy, xy + wh), dim=1)


def test_conversions_round_trip_and_known_values(namespace: str):
    xyxy = on(namespace, torch.tensor([[1.0, 2.0, 5.0, 10.0]]))
    cxcywh = box_xyxy_to_cxcywh(xyxy)
    assert cxcywh.tolist() == [[3.0, 6.0, 4.0, 8.0]]
    assert box_cxcywh_to_xyxy(cxcywh).tolist() == xyxy.tolist()
    g = torch.Generator().manual_seed(0)
    boxes = on(namespace, random_boxes(g, 20).view(4, 5, 4))  # any leading shape
    np.testing.assert_allclose(host(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes))), host(boxes), rtol=1e-12)


def test_box_area(namespace: str):
    boxes = on(namespace, torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 1.0, 1.0, 5.0]]))
    assert box_area(boxes).tolist() == [8.0, 0.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_iou_and_diou_match_reference(namespace: str, seed: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(seed)
    a, b = random_boxes(g, 13), random_boxes(g, 7)
    expected_iou = np.array([[reference_iou(x, y) for y in b.tolist()] for x in a.tolist()])
    expected_diou = np.array([[reference_diou(x, y, 0.6) for y in b.tolist()] for x in a.tolist()])
    a, b = on(namespace, a.to(dtype)), on(namespace, b.to(dtype))
    iou, diou = host(box_iou(a, b)), host(box_diou(a, b))
    assert iou.shape == diou.shape == (13, 7) and iou.dtype == diou.dtype == host(a).dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(iou, expected_iou, atol=tol, rtol=0)
    np.testing.assert_allclose(diou, expected_diou, atol=tol, rtol=0)
    assert (expected_iou > 0).any() and (expected_iou == 0).any()


def test_paired_versions_are_the_diagonal(namespace: str):
    g = torch.Generator().manual_seed(3)
    a, b = on(namespace, random_boxes(g, 9)), on(namespace, random_boxes(g, 9))
    np.testing.assert_allclose(host(paired_box_iou(a, b)), np.diagonal(host(box_iou(a, b))), rtol=1e-12)
    np.testing.assert_allclose(host(paired_box_diou(a, b, 0.8)), np.diagonal(host(box_diou(a, b, 0.8))), rtol=1e-12)
    with pytest.raises(ValueError, match="equal shapes"):
        paired_box_iou(a, b[:3])


def test_concentric_boxes_have_no_distance_penalty(namespace: str):
    a = on(namespace, torch.tensor([[0.0, 0.0, 4.0, 2.0]]))
    b = on(namespace, torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
    assert box_iou(a, b).item() == 0.5
    assert box_diou(a, b).item() == 0.5
    assert box_diou(a, a).item() == 1.0


def test_diou_distance_term_and_beta(namespace: str):
    a = on(namespace, torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64))
    b = on(namespace, torch.tensor([[2.0, 0.0, 4.0, 2.0]], dtype=torch.float64))  # touching: iou 0, d^2 4, c^2 20
    assert box_iou(a, b).item() == 0.0
    assert box_diou(a, b).item() == pytest.approx(-(0.2**0.6), abs=1e-15)
    assert box_diou(a, b, beta=1.0).item() == pytest.approx(-0.2, abs=1e-15)
    assert math.isclose(paired_box_diou(a, b, 0.5).item(), -math.sqrt(0.2))


def test_degenerate_boxes_give_finite_values(namespace: str):
    points = on(namespace, torch.tensor([[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0], [5.0, 5.0, 5.0, 5.0]]))
    iou, diou = host(box_iou(points, points)), host(box_diou(points, points))
    assert np.isfinite(iou).all() and np.isfinite(diou).all()
    assert np.abs(iou).max() == 0.0
    assert diou[0, 1] == 0.0  # c == 0: darknet returns the IoU
    assert diou[0, 2] == pytest.approx(-1.0)  # d == c for two distinct points


def test_empty_inputs(namespace: str):
    empty = on(namespace, torch.zeros(0, 4))
    some = on(namespace, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert box_iou(empty, some).shape == (0, 1)
    assert box_diou(some, empty).shape == (1, 0)
    assert paired_box_diou(empty, empty).shape == (0,)
