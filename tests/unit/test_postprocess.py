"""postprocess against darknet's threshold + per-class sort-and-suppress, written as plain loops, on numpy (the cpu
stubs) and on torch (in process, a GPU instance), and the two against each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.namespaces import NAMESPACES, host, on
from tests.helpers.reference_boxes import reference_diou
from yolo_client.geometry import ResizeParams, resize_params
from yolo_server.darknet.cfg import YoloSpec
from yolo_server.ops.config import PostprocessConfig
from yolo_server.ops.decode import decode_yolo
from yolo_server.ops.postprocess import Detections, postprocess, select_candidates

NET_W, NET_H = 128, 96
RANDOM_HEADS = [
    YoloSpec(((40, 36), (60, 50), (90, 70)), 4, 1.05, False, "greedynms", 0.6, line=1),  # grid 4x3
    YoloSpec(((14, 12), (24, 30), (36, 22)), 4, 1.1, False, "greedynms", 0.6, line=2),  # grid 8x6
]
IMAGE_SIZES = [(640, 480, True), (300, 500, True), (128, 96, False), (1000, 200, False)]


def decoded(namespace: str, outputs: list[torch.Tensor], heads=RANDOM_HEADS) -> tuple[np.ndarray, ...]:
    """decode_yolo (already tested) on ``namespace``'s arrays: boxes, objectness, class_probs as numpy."""
    return tuple(host(a) for a in decode_yolo([on(namespace, o) for o in outputs], heads, NET_W, NET_H))


def run(namespace: str, outputs: list[torch.Tensor], heads, width, height, resize, config) -> list[Detections]:
    """postprocess on ``namespace``'s arrays of the torch ``outputs``."""
    return postprocess([on(namespace, o) for o in outputs], heads, width, height, resize, config)


def reference_postprocess(namespace: str, outputs, heads, resize, config: PostprocessConfig) -> list[tuple]:
    """Per image (boxes, scores, class_ids) the slow way, from the namespace's decoded (already tested) values."""
    boxes, objectness, class_probs = decoded(namespace, outputs, heads)
    thresh = np.float32(config.score_threshold)
    result = []
    for b, params in enumerate(resize):
        candidates = []  # (box index, class, score) in (box, class) order
        for n in range(boxes.shape[1]):
            if not objectness[b, n] > thresh:
                continue
            for c in range(class_probs.shape[2]):
                score = objectness[b, n] * class_probs[b, n, c]  # float32 product, like darknet
                if score > thresh:
                    candidates.append((n, c, score))
        ranked = sorted(range(len(candidates)), key=lambda k: (-candidates[k][2], k))[: config.pre_nms_top_k]
        kept, removed = [], set()
        for position, k in enumerate(ranked):
            if k in removed:
                continue
            kept.append(k)
            n, c, _ = candidates[k]
            for k2 in ranked[position + 1 :]:
                n2, c2, _ = candidates[k2]
                same_group = config.class_agnostic or c2 == c
                diou = reference_diou(boxes[b, n].tolist(), boxes[b, n2].tolist(), config.beta_nms)
                if same_group and diou > config.nms_threshold:
                    removed.add(k2)
        kept = kept[: config.max_detections]
        net_boxes = np.array([boxes[b, candidates[k][0]] for k in kept], dtype=np.float32).reshape(-1, 4)
        result.append(
            (
                params.to_original(net_boxes),
                np.array([candidates[k][2] for k in kept], dtype=np.float32),
                np.array([candidates[k][1] for k in kept], dtype=np.int32),
            )
        )
    return result


def random_outputs(seed: int, batch: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    outputs = []
    for grid_h, grid_w in ((3, 4), (6, 8)):
        x = torch.randn(batch, 3, 9, grid_h, grid_w, generator=g)
        x[:, :, 2:4] *= 0.5  # sizes near the anchors: plenty of overlap
        x[:, :, 4:] *= 2.0
        outputs.append(x.reshape(batch, 27, grid_h, grid_w))
    return outputs


def random_resize(batch: int) -> list[ResizeParams]:
    return [resize_params(w, h, NET_W, NET_H, letterbox) for w, h, letterbox in IMAGE_SIZES[:batch]]


def assert_same(actual: list[Detections], expected: list[tuple]) -> None:
    assert len(actual) == len(expected)
    for det, (boxes, scores, class_ids) in zip(actual, expected, strict=True):
        assert det.boxes.dtype == np.float32 and det.boxes.shape == (len(scores), 4)
        assert det.scores.dtype == np.float32 and det.class_ids.dtype == np.int32
        np.testing.assert_array_equal(det.scores, scores)
        np.testing.assert_array_equal(det.class_ids, class_ids)
        np.testing.assert_allclose(det.boxes, boxes, rtol=1e-5, atol=1e-3)


CONFIGS = {
    "darknet-defaults": PostprocessConfig(),
    "class-agnostic": PostprocessConfig(class_agnostic=True),
    "max-detections": PostprocessConfig(max_detections=4),
    "pre-nms-top-k": PostprocessConfig(pre_nms_top_k=40, score_threshold=0.3, class_agnostic=True),
    "tight-nms-beta-1": PostprocessConfig(nms_threshold=0.2, beta_nms=1.0, score_threshold=0.1),
}


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_on_random_outputs(namespace: str, name: str, seed: int):
    outputs, resize, config = random_outputs(seed, 3), random_resize(3), CONFIGS[name]
    actual = run(namespace, outputs, RANDOM_HEADS, NET_W, NET_H, resize, config)
    expected = reference_postprocess(namespace, outputs, RANDOM_HEADS, resize, config)
    assert_same(actual, expected)
    assert all(len(d) > 0 for d in actual)
    for det in actual:
        assert (np.diff(det.scores) <= 0).all()
        assert len(det) <= config.max_detections


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_candidate_counts_are_the_pairs_above_the_threshold_per_image(namespace: str):
    outputs, resize, config = random_outputs(2, 3), random_resize(3), CONFIGS["pre-nms-top-k"]
    found = run(namespace, outputs, RANDOM_HEADS, NET_W, NET_H, resize, config)
    _, objectness, class_probs = decoded(namespace, outputs)
    thresh = np.float32(config.score_threshold)
    expected = [
        sum(1 for n in range(objectness.shape[1]) for c in range(class_probs.shape[2])
            if objectness[b, n] > thresh and objectness[b, n] * class_probs[b, n, c] > thresh)
        for b in range(3)
    ]  # fmt: skip
    assert [d.candidates for d in found] == expected
    assert all(count > config.pre_nms_top_k for count in expected)  # counted before the top-k cut, before NMS
    assert_same(found, reference_postprocess(namespace, outputs, RANDOM_HEADS, resize, config))


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_batched_equals_per_image(namespace: str):
    outputs, resize, config = random_outputs(5, 4), random_resize(4), PostprocessConfig(score_threshold=0.2)
    batched = run(namespace, outputs, RANDOM_HEADS, NET_W, NET_H, resize, config)
    for i in range(4):
        (alone,) = run(
            namespace, [o[i : i + 1] for o in outputs], RANDOM_HEADS, NET_W, NET_H, resize[i : i + 1], config
        )
        np.testing.assert_array_equal(batched[i].boxes, alone.boxes)
        np.testing.assert_array_equal(batched[i].scores, alone.scores)
        np.testing.assert_array_equal(batched[i].class_ids, alone.class_ids)


# Constructed cases use new_coords=1 heads: no sigmoid, so every value is set exactly.
# With scale_x_y=2, tx=ty=0.5 puts the centre mid-cell and tw=th=0.5 makes w, h equal the anchor.


def exact_head(anchors, classes) -> YoloSpec:
    return YoloSpec(tuple(anchors), classes, 2.0, True, "greedynms", 0.6, line=1)


def exact_output(spec: YoloSpec, grid: int, cells: dict, batch: int = 1) -> torch.Tensor:
    """cells: {(image, anchor, row, col): (objectness, [class probs])}; everything else has objectness 0."""
    x = torch.zeros(batch, spec.num_anchors, 5 + spec.classes, grid, grid)
    x[:, :, 0:4] = 0.5
    for (b, a, row, col), (obj, probs) in cells.items():
        x[b, a, 4, row, col] = obj
        x[b, a, 5:, row, col] = torch.tensor(probs)
    return x.reshape(batch, -1, grid, grid)


def identity(size: int, batch: int = 1) -> list[ResizeParams]:
    return [resize_params(size, size, size, size, letterbox=False)] * batch


def run_exact(namespace, spec, output, config, size=64):
    return run(namespace, [output], [spec], size, size, identity(size, output.shape[0]), config)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_thresholds_are_strict_on_objectness_and_score(namespace: str):
    spec = exact_head([(16, 16)], 1)
    cells = {
        (0, 0, 0, 0): (0.25, [1.0]),  # objectness exactly at the threshold: rejected
        (0, 0, 0, 1): (0.5, [0.5]),  # score exactly 0.25: rejected
        (0, 0, 1, 0): (0.2578125, [1.0]),  # just above
        (0, 0, 1, 1): (0.5, [0.5078125]),  # score 0.25390625
    }
    (det,) = run_exact(namespace, spec, exact_output(spec, 2, cells), PostprocessConfig(score_threshold=0.25))
    assert det.scores.tolist() == [0.2578125, 0.25390625]
    np.testing.assert_array_equal(det.boxes, [[8, 40, 24, 56], [40, 40, 56, 56]])


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_one_box_may_give_several_classes_unless_class_agnostic(namespace: str):
    spec = exact_head([(16, 16)], 3)
    output = exact_output(spec, 2, {(0, 0, 0, 0): (0.5, [0.75, 1.0, 0.25])})
    (det,) = run_exact(namespace, spec, output, PostprocessConfig())
    assert det.class_ids.tolist() == [1, 0] and det.scores.tolist() == [0.5, 0.375]
    np.testing.assert_array_equal(det.boxes[0], det.boxes[1])
    (agnostic,) = run_exact(namespace, spec, output, PostprocessConfig(class_agnostic=True))
    assert agnostic.class_ids.tolist() == [1]
    tie = exact_output(spec, 2, {(0, 0, 0, 0): (0.5, [0.75, 0.75, 0.0])})
    assert run_exact(namespace, spec, tie, PostprocessConfig(class_agnostic=True))[0].class_ids.tolist() == [0]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_nms_threshold_is_strict_end_to_end(namespace: str):
    # Two anchors on one cell: concentric 32x16 and 16x16 boxes, IoU = DIoU = 0.5 exactly.
    spec = exact_head([(32, 16), (16, 16)], 1)
    output = exact_output(spec, 2, {(0, 0, 0, 0): (0.75, [1.0]), (0, 1, 0, 0): (0.5, [1.0])})
    (det,) = run_exact(namespace, spec, output, PostprocessConfig(nms_threshold=0.5))
    assert det.scores.tolist() == [0.75, 0.5]
    np.testing.assert_array_equal(det.boxes, [[0, 8, 32, 24], [8, 8, 24, 24]])
    assert len(run_exact(namespace, spec, output, PostprocessConfig(nms_threshold=0.4921875))[0]) == 1


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_max_detections_and_pre_nms_top_k_keep_the_best(namespace: str):
    spec = exact_head([(8, 8)], 1)
    scores = np.linspace(0.3, 0.9, 16, dtype=np.float32)
    rng = np.random.default_rng(0)
    cells = {(0, 0, int(i) // 4, int(i) % 4): (float(scores[j]), [1.0]) for j, i in enumerate(rng.permutation(16))}
    output = exact_output(spec, 4, cells)
    best = sorted(scores.tolist(), reverse=True)
    assert run_exact(namespace, spec, output, PostprocessConfig(), 128)[0].scores.tolist() == best
    assert run_exact(namespace, spec, output, PostprocessConfig(max_detections=5), 128)[0].scores.tolist() == best[:5]
    assert run_exact(namespace, spec, output, PostprocessConfig(pre_nms_top_k=3), 128)[0].scores.tolist() == best[:3]
    assert len(run_exact(namespace, spec, output, PostprocessConfig(max_detections=0), 128)[0]) == 0


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_empty_results_have_the_right_types(namespace: str):
    spec = exact_head([(16, 16)], 2)
    output = exact_output(spec, 2, {(1, 0, 1, 1): (0.9, [0.9, 0.0])}, batch=3)
    dets = run_exact(namespace, spec, output, PostprocessConfig())
    assert [len(d) for d in dets] == [0, 1, 0]
    for det in (dets[0], dets[2]):
        assert det.boxes.shape == (0, 4) and det.boxes.dtype == np.float32
        assert det.scores.shape == (0,) and det.scores.dtype == np.float32
        assert det.class_ids.shape == (0,) and det.class_ids.dtype == np.int32
    assert run_exact(namespace, spec, output[:0], PostprocessConfig()) == []


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_select_candidates_order_and_values(namespace: str):
    objectness = on(namespace, torch.tensor([[0.5, 0.1, 1.0], [0.75, 0.5, 0.25]]))
    class_probs = torch.tensor([[[1.0, 0.75], [1.0, 1.0], [0.25, 0.5]], [[0.5, 0.25], [0.75, 0.5], [1.0, 1.0]]])
    image_idx, box_idx, class_id, score = select_candidates(objectness, on(namespace, class_probs), 0.25)
    assert list(zip(image_idx.tolist(), box_idx.tolist(), class_id.tolist(), strict=True)) == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 2, 1),
        (1, 0, 0),
        (1, 1, 0),
    ]
    assert score.tolist() == [0.5, 0.375, 0.5, 0.375, 0.375]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_argument_errors(namespace: str):
    spec = exact_head([(16, 16)], 1)
    with pytest.raises(ValueError, match="2 resize params for a batch of 1"):
        run(namespace, [exact_output(spec, 2, {})], [spec], 64, 64, identity(64, 2), PostprocessConfig())
    with pytest.raises(ValueError, match="score_threshold"):
        PostprocessConfig(score_threshold=1.5)
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\), got 1.0"):  # 1 keeps nothing
        PostprocessConfig(score_threshold=1.0)
    with pytest.raises(ValueError, match="max_detections"):
        PostprocessConfig(max_detections=-1)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_numpy_and_torch_find_the_same_detections(namespace: str):
    outputs, resize, config = random_outputs(6, 4), random_resize(4), PostprocessConfig(score_threshold=0.1)
    served = run("numpy", outputs, RANDOM_HEADS, NET_W, NET_H, resize, config)  # a cpu stub's
    oracle = run(namespace, outputs, RANDOM_HEADS, NET_W, NET_H, resize, config)  # the in-process Detector's
    assert sum(len(d) for d in oracle) > 20
    for a, b in zip(served, oracle, strict=True):
        assert a.candidates == b.candidates
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_numpy(namespace: str):
    outputs, resize, config = random_outputs(3, 3), random_resize(3), PostprocessConfig(score_threshold=0.1)
    cpu = run(namespace, outputs, RANDOM_HEADS, NET_W, NET_H, resize, config)
    gpu = postprocess([o.cuda() for o in outputs], RANDOM_HEADS, NET_W, NET_H, resize, config)
    for a, b in zip(cpu, gpu, strict=True):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-5, atol=1e-3)


def test_a_gpu_instance_runs_on_cuda_only_where_torch_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from yolo_server.triton.postprocess import instance_device

    assert instance_device("CPU", 0) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert instance_device("GPU", 1) == "cpu"  # a GPU repository on a host whose torch has no CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert instance_device("GPU", "1") == "cuda:1"
    assert instance_device("CPU", 1) == "cpu"
