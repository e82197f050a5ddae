"""Box conversions, IoU and darknet DIoU against plain float64 loops."""

from __future__ import annotations

import math

import pytest
import torch

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


def random_boxes(generator: torch.Generator, count: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    xy = torch.rand(count, 2, generator=generator, dtype=dtype) * 50
    wh = torch.rand(count, 2, generator=generator, dtype=dtype) * 30
    return torch.cat((xy, xy + wh), dim=1)


def test_conversions_round_trip_and_known_values():
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 10.0]])
    cxcywh = box_xyxy_to_cxcywh(xyxy)
    assert cxcywh.tolist() == [[3.0, 6.0, 4.0, 8.0]]
    assert box_cxcywh_to_xyxy(cxcywh).tolist() == xyxy.tolist()
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(g, 20).view(4, 5, 4)  # any leading shape
    torch.testing.assert_close(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes)


def test_box_area():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 1.0, 1.0, 5.0]])
    assert box_area(boxes).tolist() == [8.0, 0.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_iou_and_diou_match_reference(seed: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(seed)
    a, b = random_boxes(g, 13), random_boxes(g, 7)
    expected_iou = torch.tensor([[reference_iou(x, y) for y in b.tolist()] for x in a.tolist()], dtype=torch.float64)
    expected_diou = torch.tensor(
        [[reference_diou(x, y, 0.6) for y in b.tolist()] for x in a.tolist()], dtype=torch.float64
    )
    iou, diou = box_iou(a.to(dtype), b.to(dtype)), box_diou(a.to(dtype), b.to(dtype))
    assert iou.shape == diou.shape == (13, 7) and iou.dtype == diou.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(iou.double(), expected_iou, atol=tol, rtol=0)
    torch.testing.assert_close(diou.double(), expected_diou, atol=tol, rtol=0)
    assert (expected_iou > 0).any() and (expected_iou == 0).any()


def test_paired_versions_are_the_diagonal():
    g = torch.Generator().manual_seed(3)
    a, b = random_boxes(g, 9), random_boxes(g, 9)
    torch.testing.assert_close(paired_box_iou(a, b), box_iou(a, b).diagonal())
    torch.testing.assert_close(paired_box_diou(a, b, 0.8), box_diou(a, b, 0.8).diagonal())
    with pytest.raises(ValueError, match="equal shapes"):
        paired_box_iou(a, b[:3])


def test_concentric_boxes_have_no_distance_penalty():
    a = torch.tensor([[0.0, 0.0, 4.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0]])
    assert box_iou(a, b).item() == 0.5
    assert box_diou(a, b).item() == 0.5
    assert box_diou(a, a).item() == 1.0


def test_diou_distance_term_and_beta():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 0.0, 4.0, 2.0]], dtype=torch.float64)  # touching: iou 0, d^2 = 4, c^2 = 20
    assert box_iou(a, b).item() == 0.0
    assert box_diou(a, b).item() == pytest.approx(-(0.2**0.6), abs=1e-15)
    assert box_diou(a, b, beta=1.0).item() == pytest.approx(-0.2, abs=1e-15)
    assert math.isclose(paired_box_diou(a, b, 0.5).item(), -math.sqrt(0.2))


def test_degenerate_boxes_give_finite_values():
    points = torch.tensor([[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    iou, diou = box_iou(points, points), box_diou(points, points)
    assert torch.isfinite(iou).all() and torch.isfinite(diou).all()
    assert iou.abs().max().item() == 0.0
    assert diou[0, 1].item() == 0.0  # c == 0: darknet returns the IoU
    assert diou[0, 2].item() == pytest.approx(-1.0)  # d == c for two distinct points


def test_empty_inputs():
    empty = torch.zeros(0, 4)
    some = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert box_iou(empty, some).shape == (0, 1)
    assert box_diou(some, empty).shape == (1, 0)
    assert paired_box_diou(empty, empty).shape == (0,)
