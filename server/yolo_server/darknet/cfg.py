"""Darknet ``.cfg`` text -> typed layer specs (pure Python, no torch).

Example:
    >>> spec = parse_cfg_file("models/darknet/yolov4-tiny.cfg")
    >>> spec.net.width, len(spec.yolo_layers)
    (416, 2)

Every option of every section is either understood, explicitly known to be
training-only (and ignored), or rejected with a :class:`CfgError` naming the
option and its line. Nothing is silently skipped.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ACTIVATIONS = ("linear", "leaky", "mish", "logistic", "swish", "relu")

_Value = TypeVar("_Value")


class CfgError(ValueError):
    """A cfg that cannot be built, with the line that says why."""


@dataclass(frozen=True)
class RawSection:
    """One ``[name]`` block as written: options in order, 1-based line numbers."""

    name: str
    line: int
    options: Mapping[str, str]
    option_lines: Mapping[str, int]


@dataclass(frozen=True)
class NetSpec:
    """The ``[net]`` section: input size and channels (its training options are ignored)."""

    width: int
    height: int
    channels: int = 3
    letter_box: bool = False
    line: int = 1


@dataclass(frozen=True)
class ConvSpec:
    """A ``[convolutional]`` section: the kernel, its padding and groups, batch normalisation, activation."""

    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str
    line: int


@dataclass(frozen=True)
class RouteSpec:
    layers: tuple[int, ...]  # absolute indices into the layer list
    groups: int
    group_id: int
    line: int


@dataclass(frozen=True)
class ShortcutSpec:
    source: int  # absolute index
    activation: str
    line: int


@dataclass(frozen=True)
class MaxPoolSpec:
    size: int
    stride: int
    padding: int
    line: int


@dataclass(frozen=True)
class UpsampleSpec:
    stride: int
    line: int


@dataclass(frozen=True)
class YoloSpec:
    """A [yolo] head. ``anchors`` are the masked anchors in network pixels."""

    anchors: tuple[tuple[float, float], ...]
    classes: int
    scale_x_y: float
    new_coords: bool
    nms_kind: str
    beta_nms: float
    line: int

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)


LayerSpec = ConvSpec | RouteSpec | ShortcutSpec | MaxPoolSpec | UpsampleSpec | YoloSpec


@dataclass(frozen=True)
class DarknetSpec:
    """A whole network: [net] plus layers in cfg order (index = darknet layer index)."""

    net: NetSpec
    layers: tuple[LayerSpec, ...]

    @property
    def yolo_layers(self) -> tuple[YoloSpec, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, YoloSpec))

    @property
    def num_classes(self) -> int:
        """The classes of every [yolo] layer (:class:`CfgError` when they disagree)."""
        self.check_heads()
        return self.yolo_layers[0].classes

    def check_heads(self) -> None:
        """Raise :class:`CfgError` unless the [yolo] layers agree on the number of classes."""
        classes = {layer.classes for layer in self.yolo_layers}
        if len(classes) != 1:
            raise CfgError(f"[yolo] layers disagree on classes: {sorted(classes)}")

    def with_input_size(self, width: int, height: int) -> DarknetSpec:
        """The same network at another input size (multiples of 32)."""
        check_input_size(width, height)
        return dataclasses.replace(self, net=dataclasses.replace(self.net, width=width, height=height))


# Options that only matter to darknet's trainer; accepted and ignored.
_TRAINING_ONLY: Mapping[str, frozenset[str]] = {
    "net": frozenset(
        "batch subdivisions momentum decay angle saturation exposure hue learning_rate burn_in "
        "max_batches policy steps scales mosaic mosaic_bound cutmix mixup blur gaussian_noise "
        "ema_alpha adam B1 B2 eps power max_chart_loss flip label_smooth_eps track time_steps "
        "letter_box_pad aspect jitter min_crop max_crop random loss_scale dynamic_minibatch "
        "label_smooth_eps sequential_subdivisions try_fix_nan".split()
    ),
    "convolutional": frozenset("stopbackward dontload dontloadscales train_only_bn learning_rate".split()),
    "yolo": frozenset(
        "jitter ignore_thresh truth_thresh random resize iou_normalizer iou_loss cls_normalizer "
        "obj_normalizer max_delta iou_thresh objectness_smooth label_smooth_eps focal_loss "
        "counters_per_class random_type track_history_size sim_thresh dets_for_track "
        "dets_for_show track_ciou_norm embedding_layer map".split()
    ),
    "route": frozenset({"stopbackward"}),
    "shortcut": frozenset({"stopbackward"}),
    "maxpool": frozenset({"stopbackward"}),
    "upsample": frozenset({"stopbackward"}),
}

_SECTION_ALIASES = {"conv": "convolutional", "max": "maxpool", "network": "net"}


def parse_sections(text: str) -> list[RawSection]:
    """Split cfg text into raw sections; comments (``#``, ``;``) and blanks dropped."""
    sections: list[RawSection] = []
    name: str | None = None
    start = 0
    options: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise CfgError(f"line {number}: malformed section header {line!r}")
            if name is not None:
                sections.append(RawSection(name, start, options, lines))
            name, start, options, lines = line[1:-1].strip().lower(), number, {}, {}
            name = _SECTION_ALIASES.get(name, name)
            continue
        if name is None:
            raise CfgError(f"line {number}: option {line!r} before any [section]")
        key, sep, value = line.partition("=")
        if not sep:
            raise CfgError(f"line {number}: expected key=value, got {line!r}")
        key = key.strip()
        if key in options:
            raise CfgError(f"line {number}: option {key!r} repeated in [{name}] (first on line {lines[key]})")
        options[key], lines[key] = value.strip(), number
    if name is not None:
        sections.append(RawSection(name, start, options, lines))
    return sections


class _Options:
    """Typed reads from a raw section; tracks which options were used.

    Its methods ``int`` and ``float`` shadow the builtins inside the class body, so its annotations
    name ``builtins.int`` and ``builtins.float``.
    """

    def __init__(self, section: RawSection) -> None:
        self.section = section
        self.used: set[str] = set()

    def _where(self, key: str) -> str:
        line = self.section.option_lines.get(key, self.section.line)
        return f"line {line}: [{self.section.name}] {key}"

    def get(self, key: str, default: str | None, convert: Callable[[str], _Value]) -> _Value:
        """``convert`` of the option's text (or of ``default``; None: the option is required)."""
        self.used.add(key)
        if key not in self.section.options:
            if default is None:
                raise CfgError(f"line {self.section.line}: [{self.section.name}] needs option {key!r}")
            return convert(default)
        try:
            return convert(self.section.options[key])
        except ValueError as exc:
            raise CfgError(f"{self._where(key)}={self.section.options[key]!r}: {exc}") from None

    def int(self, key: str, default: builtins.int | None = None) -> builtins.int:
        return self.get(key, None if default is None else str(default), int)

    def float(self, key: str, default: builtins.float | None = None) -> builtins.float:
        return self.get(key, None if default is None else str(default), float)

    def ints(self, key: str, default: str | None = None) -> tuple[builtins.int, ...]:
        return self.get(key, default, _int_list)

    def floats(self, key: str) -> tuple[builtins.float, ...]:
        return self.get(key, None, _float_list)

    def choice(self, key: str, default: str, allowed: Sequence[str]) -> str:
        value = self.get(key, default, str)
        if value not in allowed:
            raise CfgError(f"{self._where(key)}={value!r} is not supported (supported: {', '.join(allowed)})")
        return value

    def require(self, key: str, expected: str) -> None:
        """Accept an option only at the value whose behaviour is implemented."""
        value = self.get(key, expected, str)
        if value != expected:
            raise CfgError(f"{self._where(key)}={value!r} is not supported (only {expected})")

    def finish(self) -> None:
        ignored = _TRAINING_ONLY.get(self.section.name, frozenset())
        for key in self.section.options:
            if key not in self.used and key not in ignored:
                raise CfgError(f"{self._where(key)}: unsupported option")


def _int_list(text: str) -> tuple[int, ...]:
    """``"1, 2,3,"`` -> ``(1, 2, 3)``: comma-separated, empty items skipped."""
    return tuple(int(x) for x in text.split(",") if x.strip())


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def check_input_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise CfgError(f"input size {width}x{height} must be positive multiples of 32")


def _absolute(index: int, current: int, where: str) -> int:
    absolute = current + index if index < 0 else index
    if not 0 <= absolute < current:
        raise CfgError(f"{where}: layer reference {index} is outside 0..{current - 1}")
    return absolute


def _net(opts: _Options) -> NetSpec:
    net = NetSpec(
        width=opts.int("width"),
        height=opts.int("height"),
        channels=opts.int("channels", 3),
        letter_box=bool(opts.int("letter_box", 0)),
        line=opts.section.line,
    )
    if net.channels != 3:
        raise CfgError(f"line {net.line}: [net] channels={net.channels} is not supported (only 3, RGB)")
    check_input_size(net.width, net.height)
    return net


def _conv(opts: _Options) -> ConvSpec:
    size = opts.int("size", 1)
    pad = opts.int("pad", 0)
    padding = opts.int("padding", 0)
    if "dilation" in opts.section.options:
        opts.require("dilation", "1")
    for key in ("stride_x", "stride_y"):
        if key in opts.section.options:
            opts.require(key, opts.section.options.get("stride", "1"))
    for key, expected in (
        ("binary", "0"),
        ("xnor", "0"),
        ("antialiasing", "0"),
        ("deform", "0"),
        ("share_index", "-1000000"),
    ):
        if key in opts.section.options:
            opts.require(key, expected)
    return ConvSpec(
        filters=opts.int("filters", 1),
        size=size,
        stride=opts.int("stride", 1),
        padding=size // 2 if pad else padding,
        groups=opts.int("groups", 1),
        batch_normalize=bool(opts.int("batch_normalize", 0)),
        activation=opts.choice("activation", "logistic", ACTIVATIONS),
        line=opts.section.line,
    )


def _route(opts: _Options, index: int) -> RouteSpec:
    where = f"line {opts.section.line}: [route]"
    layers = tuple(_absolute(i, index, where) for i in opts.ints("layers"))
    groups, group_id = opts.int("groups", 1), opts.int("group_id", 0)
    if not 0 <= group_id < groups:
        raise CfgError(f"{where} group_id={group_id} must be in 0..groups-1 (groups={groups})")
    return RouteSpec(layers, groups, group_id, opts.section.line)


def _shortcut(opts: _Options, index: int) -> ShortcutSpec:
    where = f"line {opts.section.line}: [shortcut]"
    sources = opts.ints("from")
    if len(sources) != 1:
        raise CfgError(f"{where} from={sources}: only a single source is supported")
    if "weights_type" in opts.section.options:
        opts.require("weights_type", "none")
    return ShortcutSpec(
        _absolute(sources[0], index, where), opts.choice("activation", "linear", ACTIVATIONS), opts.section.line
    )


def _maxpool(opts: _Options) -> MaxPoolSpec:
    size = opts.int("size", 1)
    stride = opts.int("stride", 1)
    for key in ("maxpool_depth", "antialiasing"):
        if key in opts.section.options:
            opts.require(key, "0")
    return MaxPoolSpec(size, stride, opts.int("padding", size - 1), opts.section.line)


def _yolo(opts: _Options) -> YoloSpec:
    where = f"line {opts.section.line}: [yolo]"
    classes = opts.int("classes", 20)
    num = opts.int("num", 1)
    flat = opts.floats("anchors")
    if len(flat) != 2 * num:
        raise CfgError(f"{where} anchors has {len(flat)} numbers, num={num} needs {2 * num}")
    mask = opts.ints("mask", ",".join(str(i) for i in range(num)))
    if any(not 0 <= m < num for m in mask):
        raise CfgError(f"{where} mask={list(mask)} refers past num={num}")
    return YoloSpec(
        anchors=tuple((flat[2 * m], flat[2 * m + 1]) for m in mask),
        classes=classes,
        scale_x_y=opts.float("scale_x_y", 1.0),
        new_coords=bool(opts.int("new_coords", 0)),
        nms_kind=opts.choice("nms_kind", "default", ("default", "greedynms", "diounms")),
        beta_nms=opts.float("beta_nms", 0.6),
        line=opts.section.line,
    )


def _upsample(opts: _Options) -> UpsampleSpec:
    if "scale" in opts.section.options:
        opts.require("scale", "1")
    return UpsampleSpec(opts.int("stride", 2), opts.section.line)


def build_spec(sections: Sequence[RawSection]) -> DarknetSpec:
    """Typed spec from raw sections; the first must be [net]."""
    if not sections or sections[0].name != "net":
        raise CfgError("line 1: a darknet cfg starts with a [net] section")
    net_opts = _Options(sections[0])
    net = _net(net_opts)
    net_opts.finish()
    layers: list[LayerSpec] = []
    for section in sections[1:]:
        opts = _Options(section)
        index = len(layers)
        if section.name == "convolutional":
            layer: LayerSpec = _conv(opts)
        elif section.name == "route":
            layer = _route(opts, index)
        elif section.name == "shortcut":
            layer = _shortcut(opts, index)
        elif section.name == "maxpool":
            layer = _maxpool(opts)
        elif section.name == "upsample":
            layer = _upsample(opts)
        elif section.name == "yolo":
            layer = _yolo(opts)
        else:
            raise CfgError(f"line {section.line}: unsupported section [{section.name}]")
        opts.finish()
        layers.append(layer)
    spec = DarknetSpec(net, tuple(layers))
    if not spec.yolo_layers:
        raise CfgError("the cfg has no [yolo] layer")
    spec.check_heads()
    return spec


def parse_cfg(text: str) -> DarknetSpec:
    """Parse cfg text into a :class:`DarknetSpec`."""
    return build_spec(parse_sections(text))


def parse_cfg_file(path: str | Path) -> DarknetSpec:
    """Parse a cfg file; errors are prefixed with the file name."""
    path = Path(path)
    try:
        return parse_cfg(path.read_text())
    except CfgError as exc:
        raise CfgError(f"{path}: {exc}") from None


def resize_cfg_text(text: str, width: int, height: int) -> str:
    """Cfg text with its ``[net]`` ``width=`` and ``height=`` lines replaced: the file at another input size, for
    readers of the file itself (OpenCV DNN, a model written to disk) rather than :meth:`DarknetSpec.with_input_size`."""
    text = re.sub(r"^width=\d+", f"width={width}", text, flags=re.M)
    return re.sub(r"^height=\d+", f"height={height}", text, flags=re.M)
