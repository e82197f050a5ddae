"""Batched DIoU-NMS against darknet's sort-and-suppress loop, written plainly, on numpy and on torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.namespaces import NAMESPACES, host, on
from tests.helpers.reference_boxes import reference_diou
from yolo_server.ops import nms as nms_module
from yolo_server.ops.nms import batched_diou_nms, diou_nms

pytestmark = pytest.mark.parametrize("namespace", NAMESPACES)


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


def batched(
    namespace: str, boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float, beta: float = 0.6
) -> list[int]:
    """:func:`batched_diou_nms` on ``namespace``'s arrays: the kept indices (checked int64)."""
    keep = host(batched_diou_nms(on(namespace, boxes), on(namespace, scores), on(namespace, groups), threshold, beta))
    assert keep.dtype == np.int64 and keep.ndim == 1
    return keep.tolist()


def nms(namespace: str, boxes: torch.Tensor, scores: torch.Tensor, threshold: float, beta: float = 0.6) -> list[int]:
    """:func:`diou_nms` on ``namespace``'s arrays: the kept indices."""
    keep = host(diou_nms(on(namespace, boxes), on(namespace, scores), threshold, beta))
    assert keep.dtype == np.int64
    return keep.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("threshold", [0.3, 0.45, 0.7])
def test_matches_reference_on_random_cases(namespace: str, seed: int, threshold: float):
    boxes, scores, groups = clustered_case(seed, 120, 3)
    keep = batched(namespace, boxes, scores, groups, threshold)
    expected = reference_nms(boxes, scores, groups, threshold)
    assert keep == expected
    assert 0 < len(expected) < 120


@pytest.mark.parametrize("beta", [0.6, 1.0])
def test_matches_reference_in_float64_and_other_beta(namespace: str, beta: float):
    boxes, scores, groups = clustered_case(7, 80, 2)
    keep = batched(namespace, boxes.double(), scores.double(), groups, 0.45, beta=beta)
    assert keep == reference_nms(boxes, scores, groups, 0.45, beta)


def test_blocked_pair_computation_gives_the_same_result(namespace: str, monkeypatch: pytest.MonkeyPatch):
    boxes, scores, groups = clustered_case(11, 150, 2)
    expected = reference_nms(boxes, scores, groups, 0.45)
    monkeypatch.setattr(nms_module, "_BLOCK_ELEMENTS", 200)  # many small row blocks
    assert batched(namespace, boxes, scores, groups, 0.45) == expected


def test_diou_exactly_on_threshold_is_kept_and_just_above_is_suppressed(namespace: str):
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
    assert nms(namespace, boxes[[0, 1]], scores[[0, 1]], 0.5) == [0, 1]
    assert nms(namespace, boxes[[0, 1]], scores[[0, 1]], 0.4999) == [0]
    # Box 2 is above 0.5 against box 0, and exactly on 0.625.
    assert nms(namespace, boxes[[0, 2]], scores[[0, 2]], 0.5) == [0]
    assert nms(namespace, boxes[[0, 2]], scores[[0, 2]], 0.625) == [0, 1]
    # Different groups never suppress each other (box 2 loses to box 1 in group 1).
    assert batched(namespace, boxes, scores, torch.tensor([0, 1, 1]), 0.1) == [0, 1]


def test_distance_term_keeps_offset_boxes_that_plain_iou_would_drop(namespace: str):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])  # IoU 0.818, DIoU 0.779
    scores = torch.tensor([0.9, 0.8])
    assert nms(namespace, boxes, scores, 0.8) == [0, 1]
    assert nms(namespace, boxes, scores, 0.75) == [0]


def test_identical_scores_lower_index_wins(namespace: str):
    box = [10.0, 10.0, 20.0, 20.0]
    boxes = torch.tensor([box, box, box, box])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.9])
    assert nms(namespace, boxes, scores, 0.45) == [1]
    far = torch.tensor([box, [50.0, 50.0, 60.0, 60.0], [80.0, 80.0, 90.0, 90.0]])
    assert nms(namespace, far, torch.tensor([0.3, 0.7, 0.3]), 0.45) == [1, 0, 2]


def test_suppressed_boxes_do_not_suppress_a_chain(namespace: str):
    # Each box overlaps its neighbours (IoU 2/3) but not the one after (IoU 3/7):
    # greedy keeps every other box; "any higher-scored overlap" would keep only the first.
    count = 31
    x = torch.arange(count, dtype=torch.float32) * 2
    boxes = torch.stack((x, torch.zeros(count), x + 10, torch.full((count,), 10.0)), dim=1)
    scores = torch.linspace(1.0, 0.1, count)
    keep = nms(namespace, boxes, scores, 0.5)
    assert keep == list(range(0, count, 2))
    assert keep == reference_nms(boxes, scores, torch.zeros(count, dtype=torch.int64), 0.5)


def test_batched_equals_each_group_alone(namespace: str):
    boxes, scores, groups = clustered_case(5, 100, 4)
    keep = batched(namespace, boxes, scores, groups, 0.45)
    separately = []
    for group in range(4):
        index = (groups == group).nonzero().flatten()
        separately += index[nms(namespace, boxes[index], scores[index], 0.45)].tolist()
    expected = sorted(separately, key=lambda i: (-scores[i].item(), i))
    assert keep == expected


def test_empty_and_single_inputs(namespace: str):
    assert batched(namespace, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.45) == []
    assert nms(namespace, torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.3]), 0.45) == [0]


def test_shape_errors(namespace: str):
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        diou_nms(on(namespace, torch.zeros(3, 5)), on(namespace, torch.zeros(3)), 0.45)
    with pytest.raises(ValueError, match="disagree"):
        batched_diou_nms(
            *(on(namespace, t) for t in (torch.zeros(3, 4), torch.zeros(2), torch.zeros(3, dtype=torch.int64))), 0.45
        )
