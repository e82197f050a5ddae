"""The training loss pieces: CIoU against hand-computed values, target assignment, label smoothing, the loss itself."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers.darknet_files import DEMO_CFG
from yolo_server.darknet import load_spec
from yolo_server.ops.boxes import box_iou, paired_box_ciou, size_iou
from yolo_server.ops.decode import MAX_LOG_SIZE, TRAINING_MAX_LOG_SIZE, decode_yolo, yolo_boxes
from yolo_server.training.loss import YoloLoss, anchors_and_masks, smooth_labels
from yolo_server.training.schedule import cosine_lr
from yolo_server.training.targets import assign_targets

CFG = DEMO_CFG


def test_ciou_of_identical_boxes_is_one() -> None:
    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(paired_box_ciou(boxes, boxes), torch.ones(2), atol=1e-5)


def test_ciou_same_shape_shifted_has_no_aspect_term() -> None:
    # [0,2]x[0,2] vs [1,3]x[0,2]: IoU 2/6, centres 1 apart, enclosing box 3x2 -> c^2 = 13, v = 0
    value = paired_box_ciou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
    assert value.item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-5)


def test_ciou_concentric_boxes_of_other_aspect() -> None:
    # pred 4x2 and target 2x2 both centred at (2, 1): IoU 4/8, d = 0,
    # v = 4/pi^2 (atan(1) - atan(2))^2, alpha = v / (1 - IoU + v)
    pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]])
    target = torch.tensor([[1.0, 0.0, 3.0, 2.0]])
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    alpha = v / (1 - 0.5 + v)
    assert paired_box_ciou(pred, target).item() == pytest.approx(0.5 - alpha * v, abs=1e-5)


def test_ciou_disjoint_boxes_are_penalised_by_distance() -> None:
    # [0,1]^2 vs [3,4]x[0,1]: IoU 0, d^2 = 9, c^2 = 4^2 + 1^2 = 17
    value = paired_box_ciou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[3.0, 0.0, 4.0, 1.0]]))
    assert value.item() == pytest.approx(-9 / 17, abs=1e-5)


def test_ciou_gradient_pulls_the_prediction_onto_the_target() -> None:
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    (1 - paired_box_ciou(pred, torch.tensor([[1.0, 0.0, 3.0, 2.0]]))).sum().backward()
    assert pred.grad is not None and pred.grad[0, 0] < 0 and pred.grad[0, 2] < 0  # move right


def test_box_iou_and_size_iou() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 0.0]]), atol=1e-6)
    assert torch.allclose(
        size_iou(torch.tensor([[2.0, 4.0]]), torch.tensor([[4.0, 2.0], [2.0, 4.0]])), torch.tensor([[4 / 12, 1.0]])
    )


def test_label_smoothing_follows_darknet() -> None:
    target = smooth_labels(torch.tensor([2, 0]), 3, eps=0.1)
    expected = torch.tensor([[0.05, 0.05, 0.95], [0.95, 0.05, 0.05]])
    assert torch.allclose(target, expected)
    assert torch.equal(smooth_labels(torch.tensor([1]), 3, eps=0.0), torch.tensor([[0.0, 1.0, 0.0]]))


ANCHORS = torch.tensor([[10.0, 10.0], [20.0, 20.0], [40.0, 40.0], [80.0, 80.0], [160.0, 160.0], [320.0, 320.0]])
MASKS = [(3, 4, 5), (0, 1, 2)]
GRIDS = [(13, 13), (26, 26)]


def _gt(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_assignment_best_anchor_only_when_the_others_are_below_threshold() -> None:
    # a 40x40 box centred at (100, 60): IoU 0.25 with 20x20 and 80x80 (> 0.213!), so build one below it
    gt = _gt((0, 1, 92.0, 52.0, 108.0, 68.0))  # 16x16: IoU with 10x10 0.39, 20x20 0.64, 40x40 0.16
    coarse, fine = assign_targets(gt, ANCHORS, MASKS, GRIDS, (416, 416))
    assert len(coarse) == 0
    assert sorted(fine.anchor.tolist()) == [0, 1]  # best (20x20) plus 10x10 over 0.213
    assert fine.row.tolist() == [60 // 16] * 2 and fine.col.tolist() == [100 // 16] * 2
    assert fine.gt.tolist() == [0, 0] and fine.image.tolist() == [0, 0]


def test_assignment_several_anchors_across_heads_over_iou_threshold() -> None:
    # 56x56: IoU with 40x40 0.51, with 80x80 0.49, with 20x20 0.13 -> anchors 2 (fine head) and 3 (coarse head)
    gt = _gt((1, 2, 200.0, 300.0, 256.0, 356.0))
    coarse, fine = assign_targets(gt, ANCHORS, MASKS, GRIDS, (416, 416))
    assert coarse.anchor.tolist() == [0] and fine.anchor.tolist() == [2]
    assert (coarse.row.item(), coarse.col.item()) == (328 // 32, 228 // 32)
    assert (fine.row.item(), fine.col.item()) == (328 // 16, 228 // 16)
    assert coarse.image.tolist() == [1] and fine.image.tolist() == [1]


def test_assignment_threshold_is_strict_and_centres_on_the_edge_stay_in_the_grid() -> None:
    gt = _gt((0, 0, 380.0, 380.0, 416.0, 416.0))  # centre (398, 398), 36x36
    coarse, fine = assign_targets(gt, ANCHORS, MASKS, GRIDS, (416, 416), iou_threshold=1.0)
    assert len(coarse) == 0 and fine.anchor.tolist() == [2]  # best only
    assert (fine.row.item(), fine.col.item()) == (24, 24)
    edge = _gt((0, 0, 396.0, 396.0, 416.0, 416.0))  # centre 406 -> cell 25 of 26
    _, fine = assign_targets(edge, ANCHORS, MASKS, GRIDS, (416, 416), iou_threshold=1.0)
    assert (fine.row.item(), fine.col.item()) == (25, 25)


def test_loss_decode_is_the_served_decode_up_to_the_training_clamp() -> None:
    spec = load_spec(CFG)
    torch.manual_seed(0)
    outputs = [torch.randn(2, 24, 13, 13), torch.randn(2, 24, 26, 26)]  # |tw|, |th| < 6: below both clamps
    served, _, _ = decode_yolo(outputs, spec.yolo_layers, 416, 416)
    training = [
        yolo_boxes(out, head, 416, 416, max_log_size=TRAINING_MAX_LOG_SIZE).reshape(2, -1, 4)
        for out, head in zip(outputs, spec.yolo_layers, strict=True)
    ]
    assert torch.equal(torch.cat(training, 1), served)
    wild = torch.zeros(1, 24, 1, 1)
    wild[0, 2] = 10.0  # tw of anchor 0, between the two clamps
    head = spec.yolo_layers[0]

    def width(limit: float) -> torch.Tensor:
        box = yolo_boxes(wild, head, 416, 416, max_log_size=limit)[0, 0, 0, 0]
        return box[2] - box[0]

    assert width(TRAINING_MAX_LOG_SIZE).item() == pytest.approx(
        math.exp(TRAINING_MAX_LOG_SIZE) * head.anchors[0][0], rel=1e-5
    )
    assert width(MAX_LOG_SIZE).item() == pytest.approx(math.exp(10.0) * head.anchors[0][0], rel=1e-5)


def test_loss_is_lower_for_a_prediction_on_the_target() -> None:
    spec = load_spec(CFG)
    criterion = YoloLoss(spec)
    anchors, masks = anchors_and_masks(spec)
    # anchors[1] is the coarse head's second anchor (masks index the cfg's anchors in head order)
    assert masks[0][1] == 1
    gt = _gt((0, 1, 100.0, 100.0, 100.0 + float(anchors[1, 0]), 100.0 + float(anchors[1, 1])))
    outputs = [torch.zeros(1, 24, 10, 10), torch.zeros(1, 24, 20, 20)]
    outputs[0].view(1, 3, 8, 10, 10)[:, :, 4] = -8.0  # confident background everywhere
    outputs[1].view(1, 3, 8, 20, 20)[:, :, 4] = -8.0
    bad, bad_parts = criterion(outputs, gt, (320, 320))
    good_outputs = [o.clone() for o in outputs]
    head = good_outputs[0].view(1, 3, 8, 10, 10)
    centre = (100.0 + float(anchors[1, 0]) / 2, 100.0 + float(anchors[1, 1]) / 2)
    row, col = int(centre[1] // 32), int(centre[0] // 32)
    offset = ((centre[0] / 32 - col) + 0.025) / 1.05, ((centre[1] / 32 - row) + 0.025) / 1.05
    head[0, 1, 0, row, col] = math.log(offset[0] / (1 - offset[0]))
    head[0, 1, 1, row, col] = math.log(offset[1] / (1 - offset[1]))
    head[0, 1, 4, row, col] = 8.0
    head[0, 1, 5:, row, col] = torch.tensor([-8.0, 8.0, -8.0])
    good, parts = criterion(good_outputs, gt, (320, 320))
    assert parts["box"] < bad_parts["box"] and parts["cls"] < bad_parts["cls"]
    assert good < bad


def test_cosine_schedule_warms_up_then_decays() -> None:
    assert cosine_lr(0, 100, 10, 1.0, 0.1) == 0.0
    assert cosine_lr(5, 100, 10, 1.0, 0.1) == pytest.approx(0.5)
    assert cosine_lr(10, 100, 10, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 10, 1.0, 0.1) == pytest.approx(0.55)
    assert cosine_lr(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_box_loss_vanishes_for_an_exact_prediction_with_one_anchor() -> None:
    from yolo_server.training.loss import LossWeights

    spec = load_spec(CFG)
    criterion = YoloLoss(spec, LossWeights(iou_threshold=1.0))  # best anchor only
    anchors, _ = anchors_and_masks(spec)
    w, h = float(anchors[1, 0]), float(anchors[1, 1])
    cx, cy = 5 * 32 + 12.0, 4 * 32 + 20.0  # cell (row 4, col 5) of the stride-32 head
    gt = _gt((0, 2, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    outputs = [torch.zeros(1, 24, 10, 10), torch.zeros(1, 24, 20, 20)]
    head = outputs[0].view(1, 3, 8, 10, 10)
    for axis, offset in ((0, 12.0 / 32), (1, 20.0 / 32)):
        p = (offset + 0.025) / 1.05
        head[0, 1, axis, 4, 5] = math.log(p / (1 - p))
    _, parts = criterion(outputs, gt, (320, 320))
    assert parts["box"] == pytest.approx(0.0, abs=1e-4)


def test_a_training_step_through_the_real_network_lowers_the_loss() -> None:
    from yolo_server.training.network import build_trainable

    spec = load_spec(CFG, (128, 128))
    model = build_trainable(spec, seed=0).train()
    criterion = YoloLoss(spec)
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    gt = _gt((0, 1, 20.0, 30.0, 70.0, 90.0), (1, 2, 60.0, 10.0, 120.0, 50.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss, _ = criterion(model(images), gt, (128, 128))
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses
