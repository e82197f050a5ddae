"""Darknet ``.weights`` read/write: the only file I/O of the model.

Layout (darknet's ``load_weights``): int32 major, minor, revision; ``seen`` as
uint64 when ``major*10+minor >= 2`` else uint32; then little-endian float32s,
convolution by convolution in cfg order: bias[n]; when batch-normalised also
gamma[n], running mean[n], running var[n]; then the kernel in PyTorch's
``Conv2d`` order (out, in/groups, k, k).

Example:
    >>> spec = parse_cfg_file("models/darknet/yolov4-tiny.cfg")
    >>> expected_float_count(spec)
    6062814
    >>> weights = read_weights("yolov4-tiny.weights", spec)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from yolo_server.darknet.cfg import ConvSpec, DarknetSpec, RouteSpec


class WeightsError(ValueError):
    """A weights file that does not fit its cfg."""


class BatchNormWeights(NamedTuple):
    """The batch normalisation of one [convolutional] layer, float32 ``[n]`` each (beta is the conv's bias)."""

    gamma: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray


@dataclass(frozen=True)
class ConvWeights:
    """Parameters of one [convolutional] layer, float32 numpy arrays."""

    bias: np.ndarray  # [n]; the BN beta when batch-normalised
    weight: np.ndarray  # [n, in/groups, k, k]
    gamma: np.ndarray | None = None  # [n]
    running_mean: np.ndarray | None = None  # [n]
    running_var: np.ndarray | None = None  # [n]

    @property
    def batch_normalized(self) -> bool:
        return self.gamma is not None

    @property
    def batch_norm(self) -> BatchNormWeights | None:
        """gamma, running mean and running var when batch-normalised (:attr:`batch_normalized`), else None."""
        if self.gamma is None:
            return None
        if self.running_mean is None or self.running_var is None:
            raise WeightsError("a batch-normalised convolution needs gamma, running_mean and running_var")
        return BatchNormWeights(self.gamma, self.running_mean, self.running_var)


@dataclass(frozen=True)
class DarknetWeights:
    """A whole file: header plus one :class:`ConvWeights` per [convolutional], in cfg order."""

    convs: tuple[ConvWeights, ...]
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0


def output_channels(spec: DarknetSpec) -> list[int]:
    """Output channels of every layer (index = layer index); shapes only, no torch."""
    channels: list[int] = []
    previous = spec.net.channels
    for layer in spec.layers:
        if isinstance(layer, ConvSpec):
            previous = layer.filters
        elif isinstance(layer, RouteSpec):
            previous = sum(channels[i] // layer.groups for i in layer.layers)
        # shortcut, maxpool, upsample and yolo keep the channel count
        channels.append(previous)
    return channels


def conv_shapes(spec: DarknetSpec) -> list[tuple[ConvSpec, tuple[int, int, int, int]]]:
    """(conv spec, kernel shape) for every [convolutional], in cfg order."""
    outputs = output_channels(spec)
    inputs = [spec.net.channels] + outputs[:-1]
    shapes = []
    for layer, in_channels in zip(spec.layers, inputs, strict=True):
        if isinstance(layer, ConvSpec):
            if in_channels % layer.groups or layer.filters % layer.groups:
                raise WeightsError(f"line {layer.line}: groups={layer.groups} does not divide the channels")
            shapes.append((layer, (layer.filters, in_channels // layer.groups, layer.size, layer.size)))
    return shapes


def expected_float_count(spec: DarknetSpec) -> int:
    """Number of float32 values a ``.weights`` file for this cfg holds after its header."""
    total = 0
    for conv, shape in conv_shapes(spec):
        total += conv.filters * (4 if conv.batch_normalize else 1) + int(np.prod(shape))
    return total


def _header_size(major: int, minor: int) -> int:
    return 20 if major * 10 + minor >= 2 else 16


def read_weights(path: str | Path, spec: DarknetSpec) -> DarknetWeights:
    """Read a darknet ``.weights`` file for ``spec``; the float count must match exactly."""
    raw = Path(path).read_bytes()
    if len(raw) < 12:
        raise WeightsError(f"{path}: {len(raw)} bytes is too short for a darknet header")
    major, minor, revision = (int(v) for v in np.frombuffer(raw[:12], dtype="<i4"))
    header = _header_size(major, minor)
    if len(raw) < header:
        raise WeightsError(f"{path}: {len(raw)} bytes is too short for a darknet header")
    seen = int(np.frombuffer(raw[12:header], dtype="<u8" if header == 20 else "<u4")[0])
    body = raw[header:]
    expected = expected_float_count(spec)
    if len(body) % 4:
        raise WeightsError(f"{path}: {len(body)} bytes after the header is not a whole number of float32 values")
    found = len(body) // 4
    if found != expected:
        word = "short" if found < expected else "long"
        raise WeightsError(f"{path}: too {word}: the cfg expects {expected:,} floats, the file has {found:,}")
    floats = np.frombuffer(body, dtype="<f4")
    offset = 0

    def take(count: int) -> np.ndarray:
        nonlocal offset
        chunk = floats[offset : offset + count].astype(np.float32)
        offset += count
        return chunk

    convs = []
    for conv, shape in conv_shapes(spec):
        n = conv.filters
        bias = take(n)
        gamma = mean = var = None
        if conv.batch_normalize:
            gamma, mean, var = take(n), take(n), take(n)
        weight = take(int(np.prod(shape))).reshape(shape)
        convs.append(ConvWeights(bias, weight, gamma, mean, var))
    return DarknetWeights(tuple(convs), major, minor, revision, seen)


def write_weights(path: str | Path, spec: DarknetSpec, weights: DarknetWeights) -> None:
    """Write ``weights`` as a darknet ``.weights`` file; shapes are checked against ``spec``."""
    shapes = conv_shapes(spec)
    if len(shapes) != len(weights.convs):
        raise WeightsError(f"the cfg has {len(shapes)} convolutions, the weights {len(weights.convs)}")
    parts: list[np.ndarray] = []
    for (conv, shape), params in zip(shapes, weights.convs, strict=True):
        if params.weight.shape != shape or params.batch_normalized != conv.batch_normalize:
            raise WeightsError(
                f"line {conv.line}: weights {params.weight.shape} (bn={params.batch_normalized}) do not fit "
                f"{shape} (bn={conv.batch_normalize})"
            )
        parts.append(params.bias)
        batch_norm = params.batch_norm
        if batch_norm is not None:
            parts += [batch_norm.gamma, batch_norm.running_mean, batch_norm.running_var]
        parts.append(params.weight.reshape(-1))
    header = np.array([weights.major, weights.minor, weights.revision], dtype="<i4").tobytes()
    seen_dtype = "<u8" if _header_size(weights.major, weights.minor) == 20 else "<u4"
    header += np.array([weights.seen], dtype=seen_dtype).tobytes()
    body = np.concatenate([np.asarray(p, dtype="<f4").reshape(-1) for p in parts]).tobytes()
    Path(path).write_bytes(header + body)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, hex: names the weights a repository was built from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
