"""Deterministic, calibrated random weights for a cfg (tests, demos, benchmarks).

Plain random weights make deep darknets useless: activations blow up through
the residual additions and the heads saturate. Here every convolution is drawn
and then calibrated on a few smooth synthetic images, in the order the forward
pass reaches it: batch-norm statistics are set to the statistics the layer
really sees (so each layer's output has about unit scale and the BN variances
stay far above eps), and the head convolutions are scaled to unit-variance
logits. Same cfg and seed -> the same floats, on any machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from yolo_server.darknet.cfg import DarknetSpec, parse_cfg_file, resize_cfg_text
from yolo_server.darknet.model import ConvLayer, DarknetModel
from yolo_server.darknet.weights import ConvWeights, DarknetWeights, conv_shapes, write_weights

MIN_RUNNING_VAR = 0.05
MAX_CALIBRATION_SIDE = 320


def calibration_images(spec: DarknetSpec, seed: int, count: int = 2) -> torch.Tensor:
    """float32 [count, 3, h, w] smooth images in [0, 1] at (at most) 320 px a side, multiples of 32."""
    rng = np.random.default_rng(seed + 1)
    ratio = min(1.0, MAX_CALIBRATION_SIDE / max(spec.net.width, spec.net.height))
    width = max(32, int(spec.net.width * ratio) // 32 * 32)
    height = max(32, int(spec.net.height * ratio) // 32 * 32)
    coarse = torch.from_numpy(rng.random((count, 3, 6, 6), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.normal(0.0, 0.05, (count, 3, height, width)).astype(np.float32))
    return (smooth + noise).clamp(0.0, 1.0)


def calibrated_random_weights(spec: DarknetSpec, seed: int = 0) -> DarknetWeights:
    """Random weights for ``spec`` calibrated layer by layer; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    model = DarknetModel(spec).eval()
    convs = [module for module in model.layers if isinstance(module, ConvLayer)]
    shapes = conv_shapes(spec)
    drawn: list[ConvWeights | None] = [None] * len(convs)

    def calibrate(index: int, module: torch.nn.Conv2d, x: torch.Tensor) -> None:
        conv_spec, shape = shapes[index]
        fan_in = shape[1] * shape[2] * shape[3]
        weight = rng.normal(0.0, (2.0 / fan_in) ** 0.5, shape).astype(np.float32)
        raw = F.conv2d(x, torch.from_numpy(weight), None, module.stride, module.padding, module.dilation, module.groups)
        filters = conv_spec.filters
        if conv_spec.batch_normalize:
            mean = raw.mean(dim=(0, 2, 3)).double().numpy()
            var = raw.var(dim=(0, 2, 3)).double().numpy()
            params = ConvWeights(
                bias=rng.normal(0.0, 0.2, filters).astype(np.float32),
                weight=weight,
                gamma=rng.uniform(0.8, 1.2, filters).astype(np.float32),
                running_mean=(mean + rng.normal(0.0, 0.05, filters) * np.sqrt(var)).astype(np.float32),
                running_var=np.maximum(var * rng.uniform(0.8, 1.25, filters), MIN_RUNNING_VAR).astype(np.float32),
            )
        else:
            scale = float(raw.std()) or 1.0
            params = ConvWeights(
                bias=rng.normal(0.0, 0.5, filters).astype(np.float32), weight=weight / np.float32(scale)
            )
        drawn[index] = params
        convs[index].load(params, bn_eps=1e-5)

    handles = [
        module[0].register_forward_pre_hook(lambda mod, args, i=i: calibrate(i, mod, args[0]))
        for i, module in enumerate(convs)
    ]
    try:
        with torch.no_grad():
            model(calibration_images(spec, seed))
    finally:
        for handle in handles:
            handle.remove()
    return DarknetWeights(tuple(params for params in drawn if params is not None))


def write_random_model(
    cfg: Path, directory: Path, width: int, height: int, seed: int = 0
) -> tuple[Path, Path, DarknetSpec]:
    """``cfg`` at ``width`` x ``height`` and its calibrated random weights (``seed``), written into ``directory`` as
    ``NAME-WxH.cfg`` and ``NAME-WxH-seedS.weights``: a model to run without trained weights. Returns (cfg, weights,
    spec)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{cfg.stem}-{width}x{height}"
    sized = directory / f"{stem}.cfg"
    sized.write_text(resize_cfg_text(cfg.read_text(), width, height))
    spec = parse_cfg_file(sized)
    weights = directory / f"{stem}-seed{seed}.weights"
    write_weights(weights, spec, calibrated_random_weights(spec, seed))
    return sized, weights, spec
