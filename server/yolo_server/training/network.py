"""A trainable darknet network: the cfg's layers with batch normalisation kept, exportable as ``.weights``.

:class:`yolo_server.darknet.DarknetModel` folds BN into the convolutions for
inference. Training needs BN as a layer, so :func:`build_trainable` builds the
same module and swaps every [convolutional] for ``Conv2d(bias=not bn)`` +
``BatchNorm2d`` + activation. :func:`export_weights` turns it back into
:class:`~yolo_server.darknet.DarknetWeights` (beta, gamma, running mean/var,
kernel), which :func:`~yolo_server.darknet.write_weights` saves and
:func:`~yolo_server.darknet.load_darknet` reads: the user's path, exactly.

Example:
    >>> spec = load_spec("models/shapes/yolov4-tiny-shapes.cfg")
    >>> model = build_trainable(spec, seed=0)
    >>> heads = model(torch.rand(2, 3, 320, 320))      # [2, A*(5+C), 10, 10], [2, A*(5+C), 20, 20]
    >>> write_weights("out.weights", spec, export_weights(model))
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from yolo_server.darknet import DarknetModel, DarknetSpec, DarknetWeights
from yolo_server.darknet.cfg import ConvSpec
from yolo_server.darknet.model import DARKNET_BN_EPS, activation
from yolo_server.darknet.weights import ConvWeights, conv_shapes


class TrainConv(nn.Sequential):
    """[convolutional] for training: ``Conv2d`` (bias only without BN), ``BatchNorm2d`` when the cfg says, activation."""

    def __init__(self, spec: ConvSpec, in_channels: int) -> None:
        conv = nn.Conv2d(
            in_channels,
            spec.filters,
            spec.size,
            spec.stride,
            spec.padding,
            groups=spec.groups,
            bias=not spec.batch_normalize,
        )
        parts: list[nn.Module] = [conv]
        if spec.batch_normalize:
            parts.append(nn.BatchNorm2d(spec.filters, eps=DARKNET_BN_EPS, momentum=0.03))
        parts.append(activation(spec.activation))
        super().__init__(*parts)
        self.batch_normalize = spec.batch_normalize

    @property
    def conv(self) -> nn.Conv2d:
        """The convolution (the first module)."""
        conv = self[0]
        assert isinstance(conv, nn.Conv2d)
        return conv

    @property
    def batch_norm(self) -> nn.BatchNorm2d | None:
        """The ``BatchNorm2d`` after the convolution, when the cfg asks for one."""
        if not self.batch_normalize:
            return None
        batch_norm = self[1]
        assert isinstance(batch_norm, nn.BatchNorm2d)
        return batch_norm


def build_trainable(spec: DarknetSpec, seed: int = 0, prior_objectness: float = 0.01) -> DarknetModel:
    """The cfg's network with BN kept, freshly initialised from ``seed``.

    Head convolutions (the ones right before a [yolo]) get an objectness bias of
    ``log(p/(1-p))`` so training starts from "almost nothing is an object".
    Returns a :class:`DarknetModel` whose ``forward`` is unchanged.
    """
    torch.manual_seed(seed)
    model = DarknetModel(spec)  # no weights: parameters replaced below
    shapes = {id(conv): shape for conv, shape in conv_shapes(spec)}
    for index, layer in enumerate(spec.layers):
        if isinstance(layer, ConvSpec):
            model.layers[index] = TrainConv(layer, shapes[id(layer)][1] * layer.groups)
    for index in range(len(spec.layers)):
        module = model.layers[index]
        if isinstance(module, TrainConv):
            conv = module.conv
            nn.init.kaiming_normal_(conv.weight, a=0.1, mode="fan_in", nonlinearity="leaky_relu")
            if not module.batch_normalize:
                _init_head(conv, spec, index, prior_objectness)
    return model


def _init_head(conv: nn.Conv2d, spec: DarknetSpec, index: int, prior: float) -> None:
    """Small weights and an objectness prior for a head conv feeding the next [yolo]."""
    heads = [i for i, layer in enumerate(spec.layers) if i > index and type(layer).__name__ == "YoloSpec"]
    classes = spec.num_classes
    assert conv.bias is not None  # a convolution without BN, built with a bias
    with torch.no_grad():
        conv.weight.mul_(0.01)
        conv.bias.zero_()
        if heads:
            bias = conv.bias.view(-1, 5 + classes)
            bias[:, 4] = math.log(prior / (1.0 - prior))
            bias[:, 5:] = math.log(1.0 / (classes - 0.99 + 1e-9)) if classes > 1 else 0.0


def export_weights(model: DarknetModel, seen: int = 0) -> DarknetWeights:
    """Trainable model -> darknet weights (float32), in cfg order, BN parameters unfolded."""
    convs: list[ConvWeights] = []
    for module in model.layers:
        if not isinstance(module, TrainConv):
            continue
        conv = module.conv
        weight = conv.weight.detach().float().cpu().numpy().astype(np.float32)
        bn = module.batch_norm
        if bn is not None:
            convs.append(
                ConvWeights(
                    bias=_np(bn.bias),
                    weight=weight,
                    gamma=_np(bn.weight),
                    running_mean=_np(bn.running_mean),
                    running_var=_np(bn.running_var),
                )
            )
        else:
            convs.append(ConvWeights(bias=_np(conv.bias), weight=weight))
    return DarknetWeights(tuple(convs), major=0, minor=2, revision=0, seen=seen)


def _np(tensor: torch.Tensor | None) -> np.ndarray:
    assert tensor is not None
    return tensor.detach().float().cpu().numpy().astype(np.float32)
