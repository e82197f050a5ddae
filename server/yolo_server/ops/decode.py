"""Darknet ``[yolo]`` decode: raw head tensors -> boxes, objectness, class probabilities.

Example:
    >>> heads = spec.yolo_layers                      # YoloSpec per [yolo], cfg order
    >>> outputs = model(images)                       # [B, A*(5+C), h, w] per head
    >>> boxes, objectness, class_probs = decode_yolo(outputs, heads, 416, 416)
    >>> boxes.shape, objectness.shape, class_probs.shape
    ((B, N, 4), (B, N), (B, N, C))

``outputs`` are numpy arrays (the cpu stubs) or torch tensors (in process, training, a GPU instance): the math is
written once against the array API, and the results are of the outputs' kind and device.

Per cell (col, row) of a ``grid_w x grid_h`` head, anchor ``(aw, ah)`` in
network pixels, ``s = scale_x_y``:

* ``new_coords=0`` (yolov4, yolov4-tiny): ``x = (col + sigmoid(tx)*s - (s-1)/2) / grid_w``,
  ``w = exp(tw) * aw / net_w``; sigmoid on objectness and class logits.
* ``new_coords=1`` (yolov4-csp, yolov4x-mish): the conv before ``[yolo]`` is
  already logistic, so no sigmoid here: ``x = (col + tx*s - (s-1)/2) / grid_w``,
  ``w = tw^2 * 4 * aw / net_w``.

Boxes are returned as xyxy in network-input pixels (``x * net_w`` ...).
:func:`yolo_boxes` is the box part alone, per (anchor, row, col) and
differentiable: the training loss decodes with it.

``tw``/``th`` are clamped before ``exp``, at :data:`MAX_LOG_SIZE` when serving
and :data:`TRAINING_MAX_LOG_SIZE` in the loss; see :func:`yolo_boxes`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..darknet.cfg import YoloSpec
from .arrays import Tensor, array_namespace, device, sigmoid

MAX_LOG_SIZE = 20.0
TRAINING_MAX_LOG_SIZE = 6.0


def decode_yolo(
    outputs: Sequence[Tensor], heads: Sequence[YoloSpec], net_width: int, net_height: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Decode the raw inputs of every ``[yolo]`` layer.

    Args:
        outputs: per head, ``Tensor[B, A*(5+C), h, w]`` (any float dtype; decoded in float32).
        heads: the matching :class:`YoloSpec` per head, in cfg order.
        net_width: network input width in pixels.
        net_height: network input height in pixels.
    Returns:
        ``boxes`` float32 ``Tensor[B, N, 4]`` xyxy in network-input pixels,
        ``objectness`` float32 ``Tensor[B, N]`` and ``class_probs`` float32
        ``Tensor[B, N, C]``, with ``N = sum(A*h*w)`` ordered head by head,
        then (anchor, row, col) within a head.
    """
    if len(outputs) != len(heads) or not heads:
        raise ValueError(f"got {len(outputs)} outputs for {len(heads)} [yolo] heads")
    classes = {head.classes for head in heads}
    if len(classes) != 1:
        raise ValueError(f"[yolo] heads disagree on classes: {sorted(classes)}")
    batch = {output.shape[0] for output in outputs}
    if len(batch) != 1:
        raise ValueError(f"outputs disagree on batch size: {sorted(batch)}")
    xp = array_namespace(*outputs)
    decoded = [_decode_head(output, head, net_width, net_height) for output, head in zip(outputs, heads, strict=True)]
    boxes, objectness, class_probs = zip(*decoded, strict=True)
    return xp.concat(boxes, axis=1), xp.concat(objectness, axis=1), xp.concat(class_probs, axis=1)


def yolo_boxes(
    output: Tensor, head: YoloSpec, net_width: int, net_height: int, max_log_size: float = MAX_LOG_SIZE
) -> Tensor:
    """The boxes of one ``[yolo]`` head, before any threshold; differentiable.

    ``max_log_size`` caps ``tw``/``th`` before ``exp`` (``new_coords=0``), with
    two values because the two callers fail differently:

    * :data:`MAX_LOG_SIZE` (20, serving): darknet would produce ``inf`` there;
      ``exp(20) * anchor`` is already ~1e8 times any real box, stays finite in
      float32 (also its squared area), and is clipped to the image after
      mapping back, so served boxes keep darknet's values for every sane logit.
    * :data:`TRAINING_MAX_LOG_SIZE` (6, the loss): ``exp(6)`` is ~400x the anchor, already past
      any box of the network input, so no real target needs more; at 20 an
      early, wild prediction's CIoU areas reach ~1e22 and their squares in the
      backward pass overflow float32.

    Args:
        output: ``Tensor[B, A*(5+C), h, w]`` (any float dtype; decoded in float32).
        head: its :class:`YoloSpec`.
        net_width: network input width in pixels.
        net_height: network input height in pixels.
        max_log_size: upper clamp of ``tw``/``th``.
    Returns:
        float32 ``Tensor[B, A, h, w, 4]`` xyxy in network-input pixels.
    """
    xp = array_namespace(output)
    x = _per_anchor(output, head)
    batch, anchors, _, grid_h, grid_w = x.shape
    on = device(x)
    tx, ty, tw, th = x[:, :, 0], x[:, :, 1], x[:, :, 2], x[:, :, 3]  # [B, A, h, w]
    if head.new_coords:
        w_scale, h_scale = tw * tw * 4.0, th * th * 4.0
    else:
        tx, ty = sigmoid(tx), sigmoid(ty)
        w_scale, h_scale = xp.exp(xp.minimum(tw, max_log_size)), xp.exp(xp.minimum(th, max_log_size))
    s = float(head.scale_x_y)
    shift = -0.5 * (s - 1.0)
    cols = xp.reshape(xp.arange(grid_w, dtype=xp.float32, device=on), (1, 1, 1, grid_w))
    rows = xp.reshape(xp.arange(grid_h, dtype=xp.float32, device=on), (1, 1, grid_h, 1))
    cx = (cols + tx * s + shift) * (net_width / grid_w)
    cy = (rows + ty * s + shift) * (net_height / grid_h)
    anchor = xp.reshape(xp.asarray(head.anchors, dtype=xp.float32, device=on), (1, anchors, 1, 1, 2))
    w = w_scale * anchor[..., 0]
    h = h_scale * anchor[..., 1]
    return xp.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


def _decode_head(output: Tensor, head: YoloSpec, net_width: int, net_height: int) -> tuple[Tensor, Tensor, Tensor]:
    """One head: ``Tensor[B, A*(5+C), h, w]`` -> ``[B, A*h*w, 4]``, ``[B, A*h*w]``, ``[B, A*h*w, C]``."""
    xp = array_namespace(output)
    boxes = yolo_boxes(output, head, net_width, net_height)
    batch, anchors, grid_h, grid_w, _ = boxes.shape
    x = _per_anchor(output, head)
    objectness, class_probs = x[:, :, 4], x[:, :, 5:]
    if not head.new_coords:  # new_coords=1: the conv before [yolo] is already logistic
        objectness, class_probs = sigmoid(objectness), sigmoid(class_probs)
    count = anchors * grid_h * grid_w
    return (
        xp.reshape(boxes, (batch, count, 4)),
        xp.reshape(objectness, (batch, count)),
        xp.reshape(xp.permute_dims(class_probs, (0, 1, 3, 4, 2)), (batch, count, head.classes)),
    )


def _per_anchor(output: Tensor, head: YoloSpec) -> Tensor:
    """``Tensor[B, A*(5+C), h, w]`` (checked against ``head``) -> float32 ``Tensor[B, A, 5+C, h, w]``, a view where
    the output is already float32."""
    xp = array_namespace(output)
    anchors, classes = head.num_anchors, head.classes
    if output.ndim != 4 or output.shape[1] != anchors * (5 + classes):
        raise ValueError(
            f"[yolo] at cfg line {head.line} expects [B, {anchors * (5 + classes)}, h, w], got {list(output.shape)}"
        )
    batch, _, grid_h, grid_w = output.shape
    return xp.reshape(xp.astype(output, xp.float32, copy=False), (batch, anchors, 5 + classes, grid_h, grid_w))
