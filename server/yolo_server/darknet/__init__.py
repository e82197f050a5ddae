"""Darknet cfg + weights -> PyTorch.

Example:
    >>> model, spec = load_darknet("models/darknet/yolov4-tiny.cfg", "yolov4-tiny.weights", input_size=(512, 320))
    >>> heads = model(torch.rand(1, 3, 320, 512))   # raw [yolo] inputs, cfg order
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolo_server.darknet.cfg import CfgError, DarknetSpec, YoloSpec, parse_cfg, parse_cfg_file
from yolo_server.darknet.weights import DarknetWeights, WeightsError, read_weights, write_weights

if TYPE_CHECKING:
    from yolo_server.darknet.model import DarknetModel

__all__ = [
    "CfgError",
    "DarknetModel",
    "DarknetSpec",
    "DarknetWeights",
    "WeightsError",
    "YoloSpec",
    "load_darknet",
    "load_spec",
    "parse_cfg",
    "parse_cfg_file",
    "read_weights",
    "write_weights",
]

InputSize = int | tuple[int, int] | None
_TORCH_NAMES = frozenset({"DarknetModel", "DARKNET_BN_EPS"})


def __getattr__(name: str) -> Any:
    """The torch half loads on first use, so that parsing cfgs and planning repositories import no torch."""
    if name in _TORCH_NAMES:
        from yolo_server.darknet import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_spec(cfg_path: str | Path, input_size: InputSize = None) -> DarknetSpec:
    """Parse a cfg and optionally override its input size (an int, or (width, height))."""
    spec = parse_cfg_file(cfg_path)
    if input_size is None:
        return spec
    width, height = (input_size, input_size) if isinstance(input_size, int) else input_size
    return spec.with_input_size(width, height)


def load_darknet(
    cfg_path: str | Path,
    weights_path: str | Path | None = None,
    input_size: InputSize = None,
    *,
    bn_eps: float | None = None,
    seed: int = 0,
) -> tuple[DarknetModel, DarknetSpec]:
    """Build the network of a cfg in eval mode, float32, BN folded (``bn_eps``: darknet's unless given).

    Without ``weights_path`` the weights are deterministic calibrated random
    weights (``seed``): fine for tests and benchmarks, useless for detection.
    """
    from yolo_server.darknet.model import DARKNET_BN_EPS, DarknetModel

    spec = load_spec(cfg_path, input_size)
    if weights_path is None:
        from yolo_server.darknet.random_weights import calibrated_random_weights

        weights = calibrated_random_weights(spec, seed)
    else:
        weights = read_weights(weights_path, spec)
    return DarknetModel(spec, weights, DARKNET_BN_EPS if bn_eps is None else bn_eps).eval(), spec
