"""Run a saved detector as Triton's libtorch backend would: torch plus, at most, the Torch-TensorRT runtime library.

Imports nothing of this project and not the ``torch_tensorrt`` package, so running it in a fresh process shows that
the artifact needs only what the NGC Triton image has. ``tests/gpu/check.py`` runs it that way for the TensorRT
artifact, and calls :func:`probe` in process for the exported program.

    python tests/gpu/runtime_probe.py ARTIFACT INPUTS.pt OUTPUT.pt --device cuda [--runtime-library libtorchtrt_runtime.so]

``INPUTS.pt`` holds ``{"images": float32 [N, 3, H, W], "batches": [..], "throughput_batches": [..]}``; ``OUTPUT.pt``
gets ``{"heads": per head [N, ...] (in chunks of the largest batch), "by_batch": {b: heads of images[:b]},
"images_per_second": {b: float}}``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch

Heads = Sequence[torch.Tensor]


def _run(module: Callable[[torch.Tensor], Heads], images: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    with torch.no_grad():
        return [head.float().cpu() for head in module(images.to(device))]


def images_per_second(
    module: Callable[[torch.Tensor], Heads], shape: Sequence[int], batch: int, device: torch.device, seconds: float
) -> float:
    """Forward passes at ``batch`` for about ``seconds`` after a warm-up, synchronized; images/s."""
    x = torch.rand(batch, *shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(3):
            module(x)
        sync()
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            module(x)
            runs += 1
        sync()
        return runs * batch / (time.perf_counter() - started)


def probe(
    module: Callable[[torch.Tensor], Heads],
    images: torch.Tensor,
    batches: Sequence[int],
    throughput_batches: Sequence[int],
    device: torch.device,
    seconds: float = 2.0,
) -> dict[str, object]:
    """Heads for every image (chunks of the largest batch), for ``images[:b]`` per batch ``b``, and images/s."""
    chunk = max(batches)
    per_chunk = [_run(module, images[start : start + chunk], device) for start in range(0, len(images), chunk)]
    heads = [torch.cat(parts) for parts in zip(*per_chunk, strict=True)]
    by_batch = {batch: _run(module, images[:batch], device) for batch in batches}
    shape = tuple(images.shape[1:])
    speed = {batch: images_per_second(module, shape, batch, device, seconds) for batch in throughput_batches}
    return {"heads": heads, "by_batch": by_batch, "images_per_second": speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("inputs")
    parser.add_argument("output")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--runtime-library", help="libtorchtrt_runtime.so: the TensorRT engine ops, as Triton loads them"
    )
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if args.runtime_library:
        torch.ops.load_library(args.runtime_library)
    device = torch.device(args.device)
    module = torch.jit.load(args.artifact, map_location=device).eval()
    inputs = torch.load(args.inputs)
    result = probe(module, inputs["images"], inputs["batches"], inputs["throughput_batches"], device, args.seconds)
    torch.save(result, args.output)


if __name__ == "__main__":
    main()
