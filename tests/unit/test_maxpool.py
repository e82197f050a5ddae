"""[maxpool] takes shortcuts (pooling's own padding, no padding where no window reaches it): same as pad-then-pool."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from yolo_server.darknet.cfg import MaxPoolSpec
from yolo_server.darknet.model import MaxPoolLayer


def padded_then_pooled(x: torch.Tensor, size: int, stride: int, padding: int) -> torch.Tensor:
    """Darknet's definition, literally: ``padding // 2`` cells of -inf before, the rest after, then pool."""
    before = padding // 2
    x = F.pad(x, (before, padding - before, before, padding - before), value=float("-inf"))
    return F.max_pool2d(x, size, stride)


LAYERS = [(2, 2, 1), (2, 1, 1), (3, 2, 2), (5, 1, 4), (9, 1, 8), (13, 1, 12), (3, 1, 2), (2, 2, 0), (3, 3, 1)]
INPUTS = [(13, 13), (26, 20), (7, 9), (1, 4)]
# every pairing with at least one full window (darknet has no layer without one)
CASES = [(*layer, *shape) for layer in LAYERS for shape in INPUTS if min(shape) + layer[2] >= layer[0]]


@pytest.mark.parametrize("size, stride, padding, height, width", CASES)
def test_maxpool_equals_darknets_padding(size: int, stride: int, padding: int, height: int, width: int) -> None:
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(height * width + size))
    layer = MaxPoolLayer(MaxPoolSpec(size=size, stride=stride, padding=padding, line=1))
    torch.testing.assert_close(layer(x), padded_then_pooled(x, size, stride, padding), rtol=0, atol=0)
