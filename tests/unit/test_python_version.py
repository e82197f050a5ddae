"""The Python both packages declare is the oldest their code runs on, and the one the linters check against.

``vermin`` reads the code and says which Python each construct needs (``typing.Unpack``,
``Popen(process_group=...)``: 3.11). A package that declared less would install on a Python it fails to import
under; one that declared more would refuse Pythons it runs on.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

PACKAGES = {"client": ROOT / "client" / "yolo_client", "server": ROOT / "server" / "yolo_server"}
# vermin's rules know Python 2's `long` builtin; torch tensors' `.long()` method is not it
NOT_PYTHON_FEATURES = ("long",)


def declared(package: str) -> tuple[int, int]:
    text = (ROOT / package / "pyproject.toml").read_text()
    requires = tomllib.loads(text)["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert match, f"{package}/pyproject.toml: requires-python {requires!r} is not a lower bound '>=3.N'"
    return 3, int(match.group(1))


def oldest_python(*paths: Path) -> tuple[int, int]:
    """The oldest Python 3 that vermin finds every construct of ``paths`` available in."""
    excluded = [arg for name in NOT_PYTHON_FEATURES for arg in ("--exclude", name)]
    result = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips", "--no-parse-comments",
         *excluded, *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    match = re.search(r"^Minimum required versions: (?:[^,\n]*, )?3\.(\d+)$", result.stdout, flags=re.MULTILINE)
    assert match, result.stdout + result.stderr
    return 3, int(match.group(1))


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_requires_python_is_the_oldest_python_the_code_runs_on(package: str) -> None:
    assert oldest_python(PACKAGES[package]) == declared(package), (
        f"{package}/pyproject.toml's requires-python differs from what its code needs"
    )


def test_both_packages_and_the_linters_name_one_python() -> None:
    client, server = declared("client"), declared("server")
    assert client == server
    ruff = tomllib.loads((ROOT / "ruff.toml").read_text())["target-version"]
    assert ruff == f"py{client[0]}{client[1]}"
    mypy = configparser.ConfigParser()
    mypy.read(ROOT / "mypy.ini")
    assert mypy["mypy"]["python_version"] == f"{client[0]}.{client[1]}"
    assert sys.version_info[:2] >= client, "the test environment runs an older Python than the packages declare"


def test_vermin_sees_a_newer_feature(tmp_path: Path) -> None:
    """The check can fail: code that needs 3.12 is reported as needing it."""
    (tmp_path / "newer.py").write_text("from typing import override\n")
    assert oldest_python(tmp_path) == (3, 12)
