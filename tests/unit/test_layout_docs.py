"""The README's layout table and ``docs/layout.md`` match the tree: every path they name exists, and every
package and module is named (a moved or added module fails here until the docs say where it went)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.paths import ROOT

PACKAGES = (ROOT / "server" / "yolo_server", ROOT / "client" / "yolo_client")
UNNAMED = {"__init__.py", "__main__.py"}  # a package's door, not a module of its own


def table_rows(path: Path, heading: str | None = None) -> list[tuple[list[str], str]]:
    """``| path | what |`` rows under ``heading`` (or the whole file): the backticked names of the first cell."""
    text = path.read_text()
    if heading is not None:
        text = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", text, re.M)
    return [(re.findall(r"`([^`]+)`", first), what) for first, what in rows if not first.startswith(("path", "---"))]


def named_files(rows: list[tuple[list[str], str]]) -> set[Path]:
    """Paths a row names: its first name, and each other path-like name (``x.py``, ``dir/``, ``.ci/run``) inside
    the first (or beside it) where it is there, else from the root (``bench/``, ``loadtest/``); package and script names are not
    paths."""
    named: set[Path] = set()
    for names, _ in rows:
        base = ROOT / names[0]
        named.add(base)
        for name in names[1:]:
            if " " in name or not ("." in name or name.endswith("/")):
                continue
            inside = (base if base.is_dir() else base.parent) / name
            named.add(inside if inside.exists() else ROOT / name)
    return named


def missing(named: set[Path]) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in named if not p.exists())


def modules() -> set[Path]:
    found = set()
    for package in PACKAGES:
        found |= {
            path for path in package.rglob("*.py") if path.name not in UNNAMED and "__pycache__" not in path.parts
        }
    return found


def covered(path: Path, named: set[Path]) -> bool:
    """Named itself, or its folder is named with none of its files listed (``darknet/``: every module in it)."""
    listed_dirs = {p.parent for p in named if p.suffix}
    return path in named or (path.parent in named and path.parent not in listed_dirs)


def test_docs_layout_names_only_what_exists_and_every_module() -> None:
    named = named_files(table_rows(ROOT / "docs" / "layout.md"))
    assert missing(named) == []
    assert sorted(str(p.relative_to(ROOT)) for p in modules() if not covered(p, named)) == []


def test_the_readme_layout_table_names_every_subpackage() -> None:
    rows = table_rows(ROOT / "README.md", "Layout")
    assert missing(named_files(rows)) == []
    server_row = next(what for names, what in rows if names[0] == "server/")
    named = set(re.findall(r"`(\w+)/`", server_row)) | set(re.findall(r"`(\w+\.py)`", server_row))
    subpackages = {p.name for p in PACKAGES[0].iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert sorted(subpackages - named) == []
    assert sorted(n for n in named if not (PACKAGES[0] / n).exists()) == []


def test_a_moved_module_is_caught(tmp_path: Path) -> None:
    docs = tmp_path / "layout.md"
    docs.write_text("| path | what |\n|---|---|\n| `server/yolo_server/triton/` `access.py` | moved away |\n")
    assert missing(named_files(table_rows(docs))) == ["access.py"]
    unnamed = {ROOT / "server" / "yolo_server" / "launcher" / "access.py"} - {
        p for p in modules() if covered(p, named_files(table_rows(docs)))
    }
    assert unnamed, "and the module where it went is reported as named nowhere"
