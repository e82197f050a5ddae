"""Box conversions, IoU, DIoU and CIoU: pure array math, written once against the array API (numpy in the cpu
stubs, torch in process, in training and on the GPU; results are of the inputs' kind, dtype and device).

Boxes are ``Tensor[..., 4]``, either ``xyxy`` (x1, y1, x2, y2 with x1 <= x2,
y1 <= y2) or ``cxcywh`` (centre x, centre y, width, height). Pairwise functions
take ``Tensor[N, 4]`` and ``Tensor[M, 4]`` and return ``Tensor[N, M]``; the
``paired_*`` functions take two ``Tensor[N, 4]`` and return ``Tensor[N]``.
DIoU is the NMS criterion, CIoU the training loss's (``yolo_server.training``).

Example:
    >>> a = np.array([[0.0, 0.0, 4.0, 2.0]])
    >>> b = np.array([[1.0, 0.0, 3.0, 2.0]])
    >>> box_iou(a, b)
    array([[0.5]])
    >>> box_diou(torch.from_numpy(a), torch.from_numpy(b))          # same centre: no distance penalty
    tensor([[0.5000]], dtype=torch.float64)

DIoU follows darknet's ``box_diou`` / ``box_diou_nms`` (used by its
``greedynms`` and ``diounms`` NMS kinds)::

    diou = iou - (d^2 / c^2) ** beta

with ``d`` the distance between the box centres and ``c`` the diagonal of the
smallest box enclosing both. Darknet returns plain IoU when ``c == 0``; here
``c^2`` is clamped to the smallest normal float, which gives the same value
(``d`` is then 0 as well).
"""

from __future__ import annotations

import math

from .arrays import Tensor, array_namespace, stop_gradient


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert ``Tensor[..., 4]`` boxes from ``cxcywh`` to ``xyxy``."""
    cx, cy, w, h = _coordinates(boxes)
    return array_namespace(boxes).stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert ``Tensor[..., 4]`` boxes from ``xyxy`` to ``cxcywh``."""
    x1, y1, x2, y2 = _coordinates(boxes)
    return array_namespace(boxes).stack(((x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1), axis=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``Tensor[..., 4]`` ``xyxy`` boxes, shape ``Tensor[...]``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of ``xyxy`` boxes, optionally batched over leading dimensions.

    Args:
        boxes1: ``Tensor[..., N, 4]`` xyxy.
        boxes2: ``Tensor[..., M, 4]`` xyxy (leading dimensions broadcast with ``boxes1``'s).
    Returns:
        ``Tensor[..., N, M]``; 0 where the union is empty.
    """
    return _iou(boxes1[..., :, None, :], boxes2[..., None, :, :])


def box_diou(boxes1: Tensor, boxes2: Tensor, beta: float = 0.6) -> Tensor:
    """Pairwise darknet DIoU ``iou - (d^2 / c^2) ** beta`` of ``xyxy`` boxes.

    Args:
        boxes1: ``Tensor[N, 4]`` xyxy.
        boxes2: ``Tensor[M, 4]`` xyxy.
        beta: exponent of the distance term (darknet's ``beta_nms``, 0.6).
    Returns:
        ``Tensor[N, M]``, in ``[-1, 1]``.
    """
    return _diou(boxes1[:, None, :], boxes2[None, :, :], beta)


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of ``boxes1[i]`` with ``boxes2[i]``: two ``Tensor[N, 4]`` xyxy -> ``Tensor[N]``."""
    _check_paired(boxes1, boxes2)
    return _iou(boxes1, boxes2)


def paired_box_diou(boxes1: Tensor, boxes2: Tensor, beta: float = 0.6) -> Tensor:
    """DIoU of ``boxes1[i]`` with ``boxes2[i]``: two ``Tensor[N, 4]`` xyxy -> ``Tensor[N]``."""
    _check_paired(boxes1, boxes2)
    return _diou(boxes1, boxes2, beta)


def paired_box_ciou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU (Zheng et al. 2020) of ``boxes1[i]`` with ``boxes2[i]``: two ``Tensor[N, 4]`` xyxy -> ``Tensor[N]``.

    ``CIoU = IoU - d^2/c^2 - alpha*v`` with ``d`` the centre distance, ``c`` the diagonal of the enclosing box,
    ``v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2`` and ``alpha = v / (1 - IoU + v)``, a constant in the gradient
    (as in the paper). In ``(-1.5, 1]``; 1 for identical boxes. ``eps`` keeps empty boxes finite.
    """
    _check_paired(boxes1, boxes2)
    xp = array_namespace(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    d2, c2 = _distance_terms(boxes1, boxes2)
    iou = inter / (union + eps)
    aw, ah = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    bw, bh = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    v = (4 / math.pi**2) * (xp.atan(bw / (bh + eps)) - xp.atan(aw / (ah + eps))) ** 2
    alpha = stop_gradient(v / (v - iou + (1 + eps)))  # the paper's alpha: no gradient flows through it
    return iou - d2 / (c2 + eps) - alpha * v


def size_iou(sizes1: Tensor, sizes2: Tensor) -> Tensor:
    """Pairwise IoU of boxes sharing a centre, from their sizes: ``Tensor[N, 2]`` (w, h), ``Tensor[M, 2]`` ->
    ``Tensor[N, M]`` (anchor matching and k-means anchors)."""
    xp = array_namespace(sizes1, sizes2)
    inter = xp.minimum(sizes1[:, None, 0], sizes2[None, :, 0]) * xp.minimum(sizes1[:, None, 1], sizes2[None, :, 1])
    return inter / ((sizes1[:, 0] * sizes1[:, 1])[:, None] + (sizes2[:, 0] * sizes2[:, 1])[None, :] - inter)


def _check_paired(boxes1: Tensor, boxes2: Tensor) -> None:
    if boxes1.shape != boxes2.shape:
        raise ValueError(f"paired boxes need equal shapes, got {list(boxes1.shape)} and {list(boxes2.shape)}")


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas of broadcastable ``Tensor[..., 4]`` xyxy boxes (per coordinate: fast on
    broadcast views)."""
    xp = array_namespace(boxes1, boxes2)
    ax1, ay1, ax2, ay2 = _coordinates(boxes1)
    bx1, by1, bx2, by2 = _coordinates(boxes2)
    iw = xp.maximum(xp.minimum(ax2, bx2) - xp.maximum(ax1, bx1), 0.0)
    ih = xp.maximum(xp.minimum(ay2, by2) - xp.maximum(ay1, by1), 0.0)
    inter = iw * ih
    union = ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1)) - inter
    return inter, union


def _distance_terms(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """``d^2`` (squared distance of the centres) and ``c^2`` (squared diagonal of the smallest enclosing box) of
    broadcastable ``Tensor[..., 4]`` xyxy boxes."""
    xp = array_namespace(boxes1, boxes2)
    ax1, ay1, ax2, ay2 = _coordinates(boxes1)
    bx1, by1, bx2, by2 = _coordinates(boxes2)
    cw = xp.maximum(ax2, bx2) - xp.minimum(ax1, bx1)
    ch = xp.maximum(ay2, by2) - xp.minimum(ay1, by1)
    dx = (ax1 + ax2) * 0.5 - (bx1 + bx2) * 0.5
    dy = (ay1 + ay2) * 0.5 - (by1 + by2) * 0.5
    return dx * dx + dy * dy, cw * cw + ch * ch


def _iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of broadcastable ``Tensor[..., 4]`` xyxy boxes."""
    inter, union = _inter_union(boxes1, boxes2)
    # union == 0 only for two empty boxes, where inter == 0 too: 0 / tiny = 0.
    return inter / array_namespace(union).maximum(union, _smallest_normal(union))


def _diou(boxes1: Tensor, boxes2: Tensor, beta: float) -> Tensor:
    """Darknet DIoU of broadcastable ``Tensor[..., 4]`` xyxy boxes."""
    d2, c2 = _distance_terms(boxes1, boxes2)
    return _iou(boxes1, boxes2) - (d2 / array_namespace(c2).maximum(c2, _smallest_normal(c2))) ** beta


def _coordinates(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four coordinates of ``Tensor[..., 4]`` boxes, each ``Tensor[...]`` (views, no copies)."""
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def _smallest_normal(x: Tensor) -> float:
    """The smallest positive normal number of ``x``'s floating dtype (torch's ``finfo.tiny``)."""
    return float(array_namespace(x).finfo(x.dtype).smallest_normal)
