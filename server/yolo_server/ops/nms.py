"""Exact greedy DIoU-NMS, batched over arbitrary groups (vectorised; numpy or torch on CPU and GPU, one array-API
implementation).

Example:
    >>> # per-class NMS for a whole batch in one pass
    >>> groups = image_idx * num_classes + class_id
    >>> keep = batched_diou_nms(boxes, scores, groups, iou_threshold=0.45)
    >>> boxes[keep], scores[keep]          # sorted by score, descending

Semantics (darknet's ``diounms_sort`` with a stable sort): candidates are
ranked by score, descending, ties by lower index first. Walking down that
ranking, a candidate is dropped when a higher-ranked *kept* candidate of the
same group has ``diou(kept, candidate) > iou_threshold`` (strict).

How it is vectorised: the suppression relation ``S[i, j]`` (``i`` ranked above
``j``, same group, ``diou > threshold``) is computed once, as an edge list
built in blocks of rows (memory: one block of at most ``_BLOCK_ELEMENTS`` pairs
plus the edges, never ``K^2`` over a whole batch; work: about the sum of the
squared group sizes). Only pairs with ``iou > threshold`` get the distance term,
which is exact because ``diou <= iou``. Greedy NMS is the unique solution of::

    keep[j] = not any(keep[i] and S[i, j] for i ranked above j)

Unique, because ``keep[j]`` only depends on higher-ranked entries (induction
on rank). The Jacobi iteration ``keep <- ~any(S[keep rows], dim=0)`` from
all-True is therefore exact once it stops changing: after iteration ``t`` the
``t`` highest-ranked entries hold their final values and never change again,
so it reaches the fixed point in at most ``K + 1`` rounds, and any fixed point
is the greedy result. In practice the number of rounds is the length of the
longest chain "a suppresses b, which would have suppressed c ...", a handful.
"""

from __future__ import annotations

import math

from .arrays import Tensor, array_namespace, device
from .boxes import box_iou, paired_box_diou

# Upper bound on the elements of one block of pairwise DIoUs (rows x columns).
_BLOCK_ELEMENTS = 1 << 22
_MIN_BLOCK_ROWS = 256


def batched_diou_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float, beta: float = 0.6) -> Tensor:
    """Greedy DIoU-NMS, done independently within each group.

    Args:
        boxes: ``Tensor[K, 4]`` xyxy.
        scores: ``Tensor[K]``.
        groups: ``Tensor[K]`` integer group ids (e.g. ``image * C + class``
            for per-class NMS over a batch, ``image`` for class-agnostic NMS).
        iou_threshold: suppress when DIoU is strictly greater.
        beta: exponent of DIoU's distance term (darknet's ``beta_nms``).
    Returns:
        ``Tensor[k]`` int64 indices of the kept candidates, sorted by score,
        descending, ties by lower index first.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [K, 4], got {list(boxes.shape)}")
    if scores.shape != boxes.shape[:1] or groups.shape != boxes.shape[:1]:
        shapes = f"boxes {list(boxes.shape)}, scores {list(scores.shape)}, groups {list(groups.shape)}"
        raise ValueError(f"{shapes} disagree")
    xp = array_namespace(boxes, scores, groups)
    if boxes.shape[0] == 0:
        return xp.zeros(0, dtype=xp.int64, device=device(boxes))
    # Rank order: score descending, ties by index (stable sort over arange).
    order = xp.argsort(scores, descending=True, stable=True)
    # Bring each group together, keeping rank order inside it.
    order = order[xp.argsort(groups[order], stable=True)]
    src, dst = _suppression_edges(boxes[order], groups[order], iou_threshold, beta)
    keep = _greedy_fixed_point(order.shape[0], src, dst)
    kept = order[keep]
    # Back to global rank order: index ascending, then stable by score.
    kept = xp.sort(kept)
    return kept[xp.argsort(scores[kept], descending=True, stable=True)]


def diou_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, beta: float = 0.6) -> Tensor:
    """Greedy DIoU-NMS over one group: :func:`batched_diou_nms` with all groups equal.

    Args:
        boxes: ``Tensor[K, 4]`` xyxy.
        scores: ``Tensor[K]``.
        iou_threshold: suppress when DIoU is strictly greater.
        beta: exponent of DIoU's distance term.
    Returns:
        ``Tensor[k]`` int64 kept indices, by score descending, ties by lower index.
    """
    xp = array_namespace(scores)
    groups = xp.zeros(scores.shape, dtype=xp.int64, device=device(scores))
    return batched_diou_nms(boxes, scores, groups, iou_threshold, beta)


def _suppression_edges(boxes: Tensor, groups: Tensor, threshold: float, beta: float) -> tuple[Tensor, Tensor]:
    """All ``(i, j)`` with ``i < j``, same group and ``diou > threshold``.

    ``boxes`` and ``groups`` are sorted by (group, rank), so the partners of a
    row lie between it and the end of its group. Rows are processed in blocks
    whose columns span at most the block's rows plus the largest group.
    Returns two ``Tensor[E]`` int64 positions (suppressor, suppressed).
    """
    xp = array_namespace(boxes, groups)
    on = device(boxes)
    count = boxes.shape[0]
    # groups are sorted: a row's group ends where searching for its id from the right lands (one past its run)
    group_end = xp.searchsorted(groups, groups, side="right")
    largest_group = int(xp.max(group_end - xp.searchsorted(groups, groups, side="left")))
    rows_per_block = _rows_per_block(largest_group)
    srcs: list[Tensor] = []
    dsts: list[Tensor] = []
    for start in range(0, count, rows_per_block):  # bounded: ceil(K / rows_per_block) blocks
        stop = min(start + rows_per_block, count)
        col_stop = int(group_end[stop - 1])
        rows = xp.arange(start, stop, device=on)
        cols = xp.arange(start, col_stop, device=on)
        pair = (cols[None, :] > rows[:, None]) & (cols[None, :] < group_end[start:stop, None])
        # diou <= iou, so iou > threshold is necessary: the costly distance term
        # (a pow) is computed only for the few pairs that pass it.
        pair &= box_iou(boxes[start:stop], boxes[start:col_stop]) > threshold
        r, c = xp.nonzero(pair)
        r, c = r + start, c + start
        hit = paired_box_diou(boxes[r], boxes[c], beta) > threshold
        srcs.append(r[hit])
        dsts.append(c[hit])
    return xp.concat(srcs), xp.concat(dsts)


def _rows_per_block(largest_group: int) -> int:
    """Rows per block: about the largest group (so few columns are wasted on other groups),
    at least ``_MIN_BLOCK_ROWS``, and with ``rows * (rows + largest_group) <= _BLOCK_ELEMENTS``."""
    limit = int((math.sqrt(largest_group * largest_group + 4 * _BLOCK_ELEMENTS) - largest_group) / 2)
    return max(1, min(limit, max(largest_group, _MIN_BLOCK_ROWS)))


def _greedy_fixed_point(count: int, src: Tensor, dst: Tensor) -> Tensor:
    """Iterate ``keep[j] = not any(keep[i] for edges i -> j)`` to its fixed point: ``Tensor[K]`` bool."""
    xp = array_namespace(src, dst)
    keep = xp.ones(count, dtype=xp.bool, device=device(src))
    for _ in range(count + 1):  # converges in at most K + 1 rounds (module docstring)
        suppressed = xp.zeros_like(keep)
        # integer-array assignment: beyond the standard, but numpy and torch both scatter this way
        suppressed[dst[keep[src]]] = True
        new_keep = ~suppressed
        if bool(xp.all(new_keep == keep)):
            break
        keep = new_keep
    return keep
