"""The training loop: pool -> mosaic batches at random shapes -> loss -> AdamW -> EMA -> darknet ``.weights``.

Everything is drawn from ``seed``: the scene pool (scenes of seed ``seed``),
the initial weights, and the augmentation stream. The EMA of the weights is
written with :func:`yolo_server.darknet.write_weights` every
``checkpoint_every`` iterations (atomically), so a run cut short still leaves
a usable file.

Example:
    >>> config = TrainConfig(cfg="models/shapes/yolov4-tiny-shapes.cfg", output="shapes.weights", iterations=3000)
    >>> train(config)
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import nn

from yolo_server.darknet import DarknetModel, load_spec, write_weights
from yolo_server.training.augment import build_pool, sample_batch
from yolo_server.training.loss import LossWeights, YoloLoss
from yolo_server.training.network import build_trainable, export_weights
from yolo_server.training.schedule import cosine_lr

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class TrainConfig:
    """One training run (defaults: the shipped demo model)."""

    cfg: str
    output: str
    seed: int = 0
    pool_size: int = 6000
    pool_resolution: int = 416
    iterations: int = 3500
    batch: int = 32
    sizes: tuple[int, ...] = (288, 320, 352, 384, 416, 448)
    lr: float = 2e-3
    final_lr_ratio: float = 0.02
    warmup: int = 200
    weight_decay: float = 0.05
    mosaic_prob: float = 0.5
    no_mosaic_tail: float = 0.15  # last fraction of iterations on plain scenes, as the server sees them
    ema_decay: float = 0.998
    threads: int = 2
    bf16: bool = True
    checkpoint_every: int = 200
    progress: bool = True


class Ema(Generic[ModuleT]):
    """Exponential moving average of parameters and buffers (BN statistics), decay ramped up early on."""

    def __init__(self, model: ModuleT, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        self.updates = 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - np.exp(-self.updates / 100.0))
        current = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[name].detach(), alpha=1 - d)
            else:
                value.copy_(current[name])


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (decay if p.ndim == 4 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def save_checkpoint(model: DarknetModel, spec_path: str, output: str | Path, seen: int) -> None:
    """Write ``model`` as darknet weights to ``output`` atomically."""
    spec = load_spec(spec_path)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    write_weights(tmp, spec, export_weights(model, seen=seen))
    os.replace(tmp, path)


def train(config: TrainConfig) -> Path:
    """Run the training; returns the written ``.weights`` path."""
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    spec = load_spec(config.cfg)
    model = build_trainable(spec, seed=config.seed).train()
    ema = Ema(model, config.ema_decay)
    criterion = YoloLoss(spec, LossWeights())
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.999))
    pool = build_pool(
        config.seed, config.pool_size, config.pool_resolution, workers=config.threads, progress=config.progress
    )
    rng = np.random.default_rng([config.seed, 1])
    mosaic_until = int(config.iterations * (1.0 - config.no_mosaic_tail))
    seen = 0
    start = time.time()
    bar = tqdm(range(config.iterations), desc="train", disable=not config.progress, unit="it", dynamic_ncols=True)
    for iteration in bar:
        lr = cosine_lr(iteration, config.iterations, config.warmup, config.lr, config.lr * config.final_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        size = int(rng.choice(config.sizes))
        images, gt = sample_batch(
            rng, pool, config.batch, size, config.mosaic_prob if iteration < mosaic_until else 0.0
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            outputs = model(torch.from_numpy(images))
        loss, parts = criterion([o.float() for o in outputs], torch.from_numpy(gt), (size, size))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        ema.update(model)
        seen += config.batch
        bar.set_postfix(
            loss=f"{float(loss.detach()) / config.batch:.3f}",
            box=f"{parts['box']:.3f}",
            obj=f"{parts['obj']:.4f}",
            cls=f"{parts['cls']:.3f}",
            size=size,
            lr=f"{lr:.2e}",
        )
        if not config.progress and iteration % 20 == 0:
            print(
                f"it {iteration} size {size} loss {float(loss.detach()) / config.batch:.4f} {parts} lr {lr:.2e} "
                f"{time.time() - start:.0f}s",
                flush=True,
            )
        if (iteration + 1) % config.checkpoint_every == 0 or iteration + 1 == config.iterations:
            save_checkpoint(ema.model, config.cfg, config.output, seen)
    return Path(config.output)
