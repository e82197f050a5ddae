"""Batched DIoU-NMS against darknet's sort-and-suppress loop, written plainly."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.reference_boxes import reference_diou
from yolo_server.ops import nms as nms_module
from yolo_server.ops.nms import batched_diou_nms, diou_nms


def reference_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float, beta: float = 0.6
) -> list[int]:
    """Greedy: rank by score (ties: lower index), keep the best, drop what it overlaps in its group, repeat."""
    box_list, score_list, group_list = boxes.double().tolist(), scores.tolist(), groups.tolist()
    order = sorted(range(len(score_list)), key=lambda i: (-score_list[i], i))
    removed: set[int] = set()
    kept: list[int] = []
    for position, i in enumerate(order):
        if i in removed:
            continue
        kept.append(i)
        for j in order[position + 1 :]:
            if group_list[j] == group_list[i] and reference_diou(box_list[i], box_list[j], beta) > threshold:
                removed.add(j)
    return kept


def clustered_case(seed: int, count: int, num_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes around a few centres (plenty of overlap), scores with ties, random groups."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(4, 2, generator=g) * 100
    cxcy = centres[torch.randint(0, 4, (count,), generator=g)] + torch.randn(count, 2, generator=g) * 6
    wh = torch.rand(count, 2, generator=g) * 30 + 5
    boxes = torch.cat((cxcy - wh / 2, cxcy + wh / 2), dim=1)
    scores = torch.round(torch.rand(count, generator=g) * 20) / 20  # many exact ties
    groups = torch.randint(0, num_groups, (count,), generator=g)
    return boxes, scores, groups


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("threshold", [0.3, 0.45, 0.7])
def test_matches_reference_on_random_cases(seed: int, threshold: float):
    boxes, scores, groups = clustered_case(seed, 120, 3)
    keep = batched_diou_nms(boxes, scores, groups, threshold)
    expected = reference_nms(boxes, scores, groups, threshold)
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected
    assert 0 < len(expected) < 120


@pytest.mark.parametrize("beta", [0.6, 1.0])
def test_matches_reference_in_float64_and_other_beta(beta: float):
    boxes, scores, groups = clustered_case(7, 80, 2)
    keep = batched_diou_nms(boxes.double(), scores.double(), groups, 0.45, beta=beta)
    assert keep.tolist() == reference_nms(boxes, scores, groups, 0.45, beta)


def test_blocked_pair_computation_gives_the_same_result(monkeypatch: pytest.MonkeyPatch):
    boxes, scores, groups = clustered_case(11, 150, 2)
    expected = reference_nms(boxes, scores, groups, 0.45)
    monkeypatch.setattr(nms_module, "_BLOCK_ELEMENTS", 200)  # many small row blocks
    assert batched_diou_nms(boxes, scores, groups, 0.45).tolist() == expected


def test_diou_exactly_on_threshold_is_kept_and_just_above_is_suppressed():
    # Same centre (2, 1): the distance term is 0, so DIoU == IoU exactly.
    boxes = torch.tensor(
        [
            [0.0, 0.0, 4.0, 2.0],  # area 8
            [1.0, 0.0, 3.0, 2.0],  # IoU with box 0: 4 / 8 = 0.5
            [0.75, 0.0, 3.25, 2.0],  # IoU with box 0: 5 / 8 = 0.625
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7])
    # Box 1 vs box 0 sits exactly on 0.5: not suppressed (strict >).
    assert diou_nms(boxes[[0, 1]], scores[[0, 1]], 0.5).tolist() == [0, 1]
    assert diou_nms(boxes[[0, 1]], scores[[0, 1]], 0.4999).tolist() == [0]
    # Box 2 is above 0.5 against box 0, and exactly on 0.625.
    assert diou_nms(boxes[[0, 2]], scores[[0, 2]], 0.5).tolist() == [0]
    assert diou_nms(boxes[[0, 2]], scores[[0, 2]], 0.625).tolist() == [0, 1]
    # Different groups never suppress each other (box 2 loses to box 1 in group 1).
    assert batched_diou_nms(boxes, scores, torch.tensor([0, 1, 1]), 0.1).tolist() == [0, 1]


def test_distance_term_keeps_offset_boxes_that_plain_iou_would_drop():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])  # IoU 0.818, DIoU 0.779
    scores = torch.tensor([0.9, 0.8])
    assert diou_nms(boxes, scores, 0.8).tolist() == [0, 1]
    assert diou_nms(boxes, scores, 0.75).tolist() == [0]


def test_identical_scores_lower_index_wins():
    box = [10.0, 10.0, 20.0, 20.0]
    boxes = torch.tensor([box, box, box, box])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.9])
    assert diou_nms(boxes, scores, 0.45).tolist() == [1]
    far = torch.tensor([box, [50.0, 50.0, 60.0, 60.0], [80.0, 80.0, 90.0, 90.0]])
    assert diou_nms(far, torch.tensor([0.3, 0.7, 0.3]), 0.45).tolist() == [1, 0, 2]


def test_suppressed_boxes_do_not_suppress_a_chain():
    # Each box overlaps its neighbours (IoU 2/3) but not the one after (IoU 3/7):
    # greedy keeps every other box; "any higher-scored overlap" would keep only the first.
    count = 31
    x = torch.arange(count, dtype=torch.float32) * 2
    boxes = torch.stack((x, torch.zeros(count), x + 10, torch.full((count,), 10.0)), dim=1)
    scores = torch.linspace(1.0, 0.1, count)
    keep = diou_nms(boxes, scores, 0.5)
    assert keep.tolist() == list(range(0, count, 2))
    assert keep.tolist() == reference_nms(boxes, scores, torch.zeros(count, dtype=torch.int64), 0.5)


def test_batched_equals_each_group_alone():
    boxes, scores, groups = clustered_case(5, 100, 4)
    keep = batched_diou_nms(boxes, scores, groups, 0.45)
    separately = []
    for group in range(4):
        index = (groups == group).nonzero().flatten()
        separately += index[diou_nms(boxes[index], scores[index], 0.45)].tolist()
    expected = sorted(separately, key=lambda i: (-scores[i].item(), i))
    assert keep.tolist() == expected


def test_empty_and_single_inputs():
    empty = batched_diou_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.45)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    single = diou_nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.3]), 0.45)
    assert single.tolist() == [0]


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        diou_nms(torch.zeros(3, 5), torch.zeros(3), 0.45)
    with pytest.raises(ValueError, match="disagree"):
        batched_diou_nms(torch.zeros(3, 4), torch.zeros(2), torch.zeros(3, dtype=torch.int64), 0.45)
