"""Options declared once, as data on the dataclass field each one fills.

A field made by :func:`flag` carries its command-line flag, its container variable (``docker/entrypoint.sh``), its
help and how its text is parsed; a field made by :func:`nested` holds a dataclass whose own fields carry flags.
From these declarations come the argparse flags (:func:`add_flags`), the options object a parsed namespace makes
(:func:`options_from`), and, through ``docker/gen_options.py``, the entrypoint's variable mapping, compose's
variable lists and the options table of ``docs/options.md``. Like Triton's and pytriton's own CLIs: the options are
data and every interface is read from it.

Example:
    >>> @dataclass(frozen=True)
    ... class Options:
    ...     size: int = flag("--size", "network input", default=416, parse=int)  # variable SIZE
    >>> parser = argparse.ArgumentParser()
    >>> add_flags(parser, Options)
    >>> options_from(Options, parser.parse_args(["--size", "512"]))
    Options(size=512)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

_KEY = "yolo_server.flag"
T = typing.TypeVar("T")
PER_TARGET = "{per_target}"  # in a help text: "cpu 8, tensorrt 32", from the nested class's per-target defaults


@dataclass(frozen=True)
class Flag:
    """One command-line option and its container variable.

    ``kind``: ``value`` (``--flag VALUE``), ``switch`` (``--flag`` sets True), ``toggle`` (``--flag``/``--no-flag``,
    unset None), ``keyed`` (repeatable ``--flag KEY=N``, one variable a key: ``variable`` holds ``{KEY}``),
    ``positional``. ``convert`` turns the parsed value (None when not given) into the field's value.
    ``in_models``: a file, relative values of the variable are under the container's ``MODELS_DIR``. ``by_hand``:
    the entrypoint maps the variable itself (its default depends on other variables).
    """

    flag: str
    help: str
    variable: str | None = "{DEST}"  # None: none; {DEST}: the flag in capitals (--max-bytes: MAX_BYTES)
    parse: Callable[[str], Any] | None = None
    kind: str = "value"
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    convert: Callable[[Any], Any] | None = None
    keys: tuple[str, ...] = ()
    in_models: bool = False
    by_hand: bool = False

    @property
    def dest(self) -> str:
        """The argparse destination, named for the flag (what the tests and the entrypoint's argv speak of)."""
        return self.flag.lstrip("-").replace("-", "_")

    def variables(self) -> tuple[str, ...]:
        if self.variable is None:
            return ()
        dest = self.dest.upper()
        return tuple(self.variable.format(DEST=dest, KEY=key.upper()) for key in self.keys or ("",))


@dataclass(frozen=True)
class Nested:
    """A field holding a dataclass of flagged fields: ``make(values, made)`` builds it from its fields' values and
    the fields of the enclosing options made so far; ``per_target`` gives the defaults per target, for help texts."""

    make: Callable[[dict[str, Any], Mapping[str, Any]], Any] | None = None
    per_target: Callable[[], Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class Declared:
    """One flag as the walk of an options class meets it: the field, its flag, and its default to show."""

    name: str
    flag: Flag
    default: Any  # MISSING where the field has none
    per_target: Mapping[str, Any] | None = None
    nested: bool = False  # a field of a nested dataclass: its flags are never required

    def default_text(self) -> str:
        """The default as the help and the docs say it ('' where the help says it in words)."""
        if self.per_target is not None:
            return ", ".join(
                f"{target} {_shown(getattr(value, self.name))}" for target, value in self.per_target.items()
            )
        if self.default is MISSING or self.default is None or self.flag.kind in ("switch", "toggle", "keyed"):
            return ""
        return _shown(self.default)

    def help_text(self) -> str:
        text = self.flag.help.replace(PER_TARGET, self.default_text())
        if "default" in text or not self.default_text():
            return text
        return f"{text} (default {self.default_text()})" if text else f"default {self.default_text()}"


def flag(name: str, help: str, *, default: Any = MISSING, default_factory: Any = MISSING, **declared: Any) -> Any:
    """A dataclass field declared as an option: ``flag("--size", "network input", default=None, parse=size)``."""
    metadata = {_KEY: Flag(name, help, **declared)}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def positive_ints(what: str, example: str) -> Callable[[str], tuple[int, ...]]:
    """A parser of ``N[,N...]``: the distinct positive integers, sorted."""

    def parse(text: str) -> tuple[int, ...]:
        numbers = text.replace(" ", "").split(",")
        if not all(number.isdigit() and int(number) > 0 for number in numbers):
            raise argparse.ArgumentTypeError(
                f"{what} {text!r}: use positive integers separated by commas, e.g. {example}"
            )
        return tuple(sorted({int(number) for number in numbers}))

    return parse


def nested(
    default: Any = MISSING,
    *,
    make: Callable[[dict[str, Any], Mapping[str, Any]], Any] | None = None,
    default_factory: Any = MISSING,
    per_target: Callable[[], Mapping[str, Any]] | None = None,
) -> Any:
    """A dataclass field holding flagged options of its own (see :class:`Nested`)."""
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={_KEY: Nested(make, per_target)}
    )


def declared(options: type) -> Iterator[Declared]:
    """Every flag of ``options`` and of the dataclasses it nests, in declaration order."""
    yield from _walk(options, None, nested=False)


def _walk(options: type, per_target: Mapping[str, Any] | None, *, nested: bool) -> Iterator[Declared]:
    for field in dataclasses.fields(options):
        mark = field.metadata.get(_KEY)
        if isinstance(mark, Flag):
            default = field.default_factory() if field.default_factory is not MISSING else field.default
            yield Declared(field.name, mark, default, per_target, nested)
        elif isinstance(mark, Nested):
            targets = mark.per_target() if mark.per_target else None
            yield from _walk(_nested_class(options, field), targets, nested=True)


def _nested_class(options: type, field: dataclasses.Field[Any]) -> type:
    """The dataclass a nested field holds: its default factory's, else the one named in its annotation."""
    if isinstance(field.default_factory, type):
        return field.default_factory
    hint = typing.get_type_hints(options)[field.name]
    classes: list[type] = [arg for arg in (*typing.get_args(hint), hint) if isinstance(arg, type)]
    return next(c for c in classes if dataclasses.is_dataclass(c))


def add_flags(parser: argparse.ArgumentParser, options: type) -> None:
    """An argparse argument for every flag of ``options``, its default the field's."""
    for item in declared(options):
        parser.add_argument(item.flag.flag, **_argument(item))


def _argument(item: Declared) -> dict[str, Any]:
    flag = item.flag
    argument: dict[str, Any] = {"help": item.help_text() or None}
    if flag.kind == "switch":
        return {**argument, "action": "store_true"}
    if flag.kind == "toggle":
        return {**argument, "action": argparse.BooleanOptionalAction, "default": item.default}
    if flag.kind == "keyed":
        return {**argument, "action": "append", "default": [], "type": flag.parse, "metavar": flag.metavar}
    if flag.kind != "positional":
        argument["dest"] = flag.dest
        if item.default is MISSING:
            argument["required"] = not item.nested
        elif item.per_target is None:
            argument["default"] = item.default
    return {**argument, "type": flag.parse, "choices": flag.choices, "metavar": flag.metavar}


def options_from(options: type[T], namespace: argparse.Namespace, **given: Any) -> T:
    """``options`` made from a parsed namespace: each flagged field from its flag, each nested one by its ``make``
    (default: its class from its fields); ``given`` fields are taken as they are."""
    return options(**_made(options, namespace, given))


def _made(options: type, namespace: argparse.Namespace, given: Mapping[str, Any]) -> dict[str, Any]:
    made = dict(given)
    for field in dataclasses.fields(options):
        mark = field.metadata.get(_KEY)
        if field.name in made or mark is None:
            continue
        if isinstance(mark, Flag):
            value = getattr(namespace, mark.dest)
            made[field.name] = mark.convert(value) if mark.convert else value
        else:
            inner = _nested_class(options, field)
            values = _made(inner, namespace, {})
            made[field.name] = inner(**values) if mark.make is None else mark.make(values, made)
    return made


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return str(value)
