"""Options declared once (yolo_server.flags): the CLI, docker/entrypoint.sh, compose and docs/options.md all come
from the declarations, and every declared variable reaches its option through the real script and the real CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.deploy import MODELS, entrypoint_argv, gen_options, parse_yolo_server
from yolo_server.flags import Declared, add_flags, declared, flag, nested, options_from

DECLARED = [(command, item) for command in gen_options.COMMANDS for item in declared(gen_options.COMMANDS[command])]
CANDIDATES = ("7", "0.5", "320", "8,16")


def test_the_generated_blocks_and_the_options_page_are_current() -> None:
    stale = [path.name for path, text in gen_options.rendered().items() if path.read_text() != text]
    assert not stale, f"{stale} are stale: run python docker/gen_options.py"


def sample(item: Declared) -> tuple[str, Any]:
    """A value for ``item``'s variable that differs from its default, and what the CLI must make of it."""
    declared_flag = item.flag
    if declared_flag.kind in ("switch", "toggle"):
        return "1", True
    if declared_flag.kind == "keyed":
        return "3", [(declared_flag.keys[0], 3)]
    if declared_flag.choices:
        value = next(choice for choice in reversed(declared_flag.choices) if choice != item.default)
        return value, value
    parse = declared_flag.parse or str  # argparse's own default
    for text in CANDIDATES:
        try:
            parsed = parse(f"{MODELS}/{text}" if declared_flag.in_models else text)
        except (ValueError, argparse.ArgumentTypeError):
            continue
        if parsed != item.default:
            return text, parsed
    raise AssertionError(f"no sample for {declared_flag.flag}")


@pytest.mark.parametrize(
    ("command", "item"),
    [(c, i) for c, i in DECLARED if set(i.flag.variables()) - set(gen_options.CONTAINER_LAYOUT)],
    ids=lambda value: value.flag.flag if isinstance(value, Declared) else value,
)
def test_each_declared_variable_sets_its_option(command: str, item: Declared) -> None:
    text, parsed = sample(item)
    args = parse_yolo_server(entrypoint_argv(command, {item.flag.variables()[0]: text, "MODELS_DIR": MODELS}))
    assert getattr(args, item.flag.dest) == parsed


def test_a_new_option_is_one_declaration() -> None:
    """What adding an option takes: the field. The flag, its variable's line, compose's entry and the docs row
    follow from it."""

    @dataclasses.dataclass(frozen=True)
    class Inner:
        frames: int = flag("--frames", "frames a clip sends", default=8, variable="FRAMES", parse=int)

    @dataclasses.dataclass(frozen=True)
    class Options:
        clip: Path | None = flag("--clip", "a video file", default=None, variable="CLIP", parse=Path, in_models=True)
        inner: Inner = nested(default_factory=Inner)

    parser = argparse.ArgumentParser()
    add_flags(parser, Options)
    assert options_from(Options, parser.parse_args(["--clip", "a.mp4", "--frames", "3"])) == Options(
        Path("a.mp4"), Inner(3)
    )
    assert options_from(Options, parser.parse_args([])) == Options()
    [clip, frames] = declared(Options)
    assert list(gen_options._set(clip, "build")) == ['[ -z "${CLIP:-}" ] || set -- "$@" --clip "$(in_models "$CLIP")"']
    assert list(gen_options._set(frames, "serve")) == ['[ -z "${FRAMES:-}" ] || set -- --frames "$FRAMES" "$@"']
    assert frames.help_text() == "frames a clip sends (default 8)"


def test_per_target_defaults_are_shown_from_the_targets_own() -> None:
    from yolo_server.repository.spec import TARGET_BATCHING

    [max_batch] = [i for c, i in DECLARED if i.flag.flag == "--max-batch-size"]
    cpu, gpu = TARGET_BATCHING["cpu"].max_batch_size, TARGET_BATCHING["tensorrt"].max_batch_size
    assert f"cpu {cpu}, tensorrt {gpu}" in max_batch.help_text()
