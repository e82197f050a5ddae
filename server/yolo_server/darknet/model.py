"""The cfg-driven darknet network as a ``torch.nn.Module``.

The forward pass returns the raw tensors that enter each [yolo] layer; decoding
lives in :mod:`yolo_server.ops.decode`. Batch normalisation is folded into the
convolutions (in float64) when the module is built, so the module holds only
``Conv2d`` layers with bias.

Example:
    >>> spec = parse_cfg_file("models/darknet/yolov4-tiny.cfg")
    >>> model = DarknetModel(spec, read_weights("yolov4-tiny.weights", spec)).eval()
    >>> [o.shape for o in model(torch.rand(1, 3, 416, 416))]
    [torch.Size([1, 255, 13, 13]), torch.Size([1, 255, 26, 26])]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from yolo_server.darknet.cfg import (
    ConvSpec,
    DarknetSpec,
    MaxPoolSpec,
    RouteSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
)
from yolo_server.darknet.weights import ConvWeights, DarknetWeights, conv_shapes, output_channels

DARKNET_BN_EPS = 1e-5


def activation(name: str) -> nn.Module:
    """Darknet activation by cfg name."""
    modules: dict[str, nn.Module] = {
        "linear": nn.Identity(),
        "leaky": nn.LeakyReLU(0.1, inplace=True),
        "mish": nn.Mish(),
        "logistic": nn.Sigmoid(),
        "swish": nn.SiLU(),
        "relu": nn.ReLU(),
    }
    return modules[name]


def fold_batch_norm(params: ConvWeights, eps: float = DARKNET_BN_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Fold BN into the convolution in float64.

    Returns:
        (weight float32 [n, c, k, k], bias float32 [n]) with
        ``conv(x, w') + b' == gamma * (conv(x, w) - mean) / sqrt(var + eps) + beta``.
    """
    weight = params.weight.astype(np.float64)
    bias = params.bias.astype(np.float64)
    batch_norm = params.batch_norm
    if batch_norm is None:
        return weight.astype(np.float32), bias.astype(np.float32)
    scale = batch_norm.gamma.astype(np.float64) / np.sqrt(batch_norm.running_var.astype(np.float64) + eps)
    folded_weight = weight * scale[:, None, None, None]
    folded_bias = bias - batch_norm.running_mean.astype(np.float64) * scale
    return folded_weight.astype(np.float32), folded_bias.astype(np.float32)


class ConvLayer(nn.Sequential):
    """[convolutional] with BN folded in: ``Conv2d(bias=True)`` then the activation."""

    def __init__(self, spec: ConvSpec, in_channels: int) -> None:
        conv = nn.Conv2d(in_channels, spec.filters, spec.size, spec.stride, spec.padding, groups=spec.groups, bias=True)
        super().__init__(conv, activation(spec.activation))

    def load(self, params: ConvWeights, bn_eps: float) -> None:
        weight, bias = fold_batch_norm(params, bn_eps)
        conv = self[0]
        assert isinstance(conv, nn.Conv2d) and conv.bias is not None  # built above, with bias=True
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight))
            conv.bias.copy_(torch.from_numpy(bias))


class MaxPoolLayer(nn.Module):
    """[maxpool] with darknet's padding: ``padding // 2`` before, the rest after, padded cells ignored."""

    def __init__(self, spec: MaxPoolSpec) -> None:
        super().__init__()
        before = spec.padding // 2
        self.before, self.after = before, spec.padding - before
        self.size, self.stride = spec.size, spec.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.before == self.after and 2 * self.before <= self.size:  # SPP: pooling's own -inf padding, no copy
            return F.max_pool2d(x, self.size, self.stride, padding=self.before)
        height, width = x.shape[-2:]
        if self.before == 0 and not (self._reads_padding(height) or self._reads_padding(width)):
            return F.max_pool2d(x, self.size, self.stride)  # the trailing padding is never inside a window
        x = F.pad(x, (self.before, self.after, self.before, self.after), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def _reads_padding(self, length: int) -> bool:
        """Whether some window of the padded axis reaches past the ``length`` real cells."""
        outputs = (length + self.before + self.after - self.size) // self.stride + 1
        return (outputs - 1) * self.stride + self.size > length


class DarknetModel(nn.Module):
    """A darknet network built from its cfg.

    ``forward(x: Tensor[B, 3, H, W]) -> list[Tensor[B, A*(5+C), h, w]]``: the input
    of every [yolo] layer in cfg order, for RGB input in [0, 1] at any size that
    is a multiple of 32.
    """

    def __init__(
        self, spec: DarknetSpec, weights: DarknetWeights | None = None, bn_eps: float = DARKNET_BN_EPS
    ) -> None:
        super().__init__()
        self.spec = spec
        shapes = {id(conv): shape for conv, shape in conv_shapes(spec)}
        layers: list[nn.Module] = []
        for layer in spec.layers:
            if isinstance(layer, ConvSpec):
                layers.append(ConvLayer(layer, shapes[id(layer)][1] * layer.groups))
            elif isinstance(layer, MaxPoolSpec):
                layers.append(MaxPoolLayer(layer))
            elif isinstance(layer, UpsampleSpec):
                layers.append(nn.Upsample(scale_factor=layer.stride, mode="nearest"))
            elif isinstance(layer, ShortcutSpec):
                layers.append(activation(layer.activation))
            else:  # route and yolo hold no parameters
                layers.append(nn.Identity())
        self.layers = nn.ModuleList(layers)
        referenced = {i for layer in spec.layers if isinstance(layer, RouteSpec) for i in layer.layers}
        referenced |= {layer.source for layer in spec.layers if isinstance(layer, ShortcutSpec)}
        self._keep = frozenset(referenced)
        channels = output_channels(spec)
        self._route_slices = {
            index: self._slices(channels, layer)
            for index, layer in enumerate(spec.layers)
            if isinstance(layer, RouteSpec)
        }
        if weights is not None:
            self.load_weights(weights, bn_eps)

    @staticmethod
    def _slices(channels: list[int], route: RouteSpec) -> list[tuple[int, int | None]]:
        if route.groups == 1:
            return [(0, None)] * len(route.layers)
        parts = [channels[source] // route.groups for source in route.layers]
        return [(part * route.group_id, part * (route.group_id + 1)) for part in parts]

    def load_weights(self, weights: DarknetWeights, bn_eps: float = DARKNET_BN_EPS) -> None:
        convs = [module for module in self.layers if isinstance(module, ConvLayer)]
        if len(convs) != len(weights.convs):
            raise ValueError(f"the cfg has {len(convs)} convolutions, the weights {len(weights.convs)}")
        for module, params in zip(convs, weights.convs, strict=True):
            module.load(params, bn_eps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        saved: dict[int, torch.Tensor] = {}
        heads: list[torch.Tensor] = []
        for index, (layer, module) in enumerate(zip(self.spec.layers, self.layers, strict=True)):
            if isinstance(layer, RouteSpec):
                parts = [
                    saved[source] if end is None else saved[source][:, start:end]
                    for source, (start, end) in zip(layer.layers, self._route_slices[index], strict=True)
                ]
                x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            elif isinstance(layer, ShortcutSpec):
                x = module(x + saved[layer.source])
            elif isinstance(layer, YoloSpec):
                heads.append(x)
            else:
                x = module(x)
            if index in self._keep:
                saved[index] = x
        return heads
