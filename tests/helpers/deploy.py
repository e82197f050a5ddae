"""What the deployment tests (tests/unit/test_deploy_*.py) share: docker/entrypoint.sh run for real, the CLI that
parses what it prints, the Makefile's settings, the Dockerfiles and Docker's .dockerignore rule.

``entrypoint_argv`` runs the script with ``sh`` and ``YOLO_DRY_RUN=1`` (it prints the argv instead of executing
it); ``parse_yolo_server`` puts that argv through the real ``yolo_server.cli.build_parser()``.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import subprocess

import pytest

from tests.helpers.paths import ROOT
from yolo_server.cli import build_parser
from yolo_server.repository.spec import model_base_name

DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*[!e]"))  # Dockerfile.builder|cpu|server, not *.dockerignore
IMAGE_APP = "/opt/yolo"  # where the Dockerfiles COPY the repository's files (test_deploy_images checks it)

# every variable compose passes to the builders (x-model-inputs), all optional
BUILD_VARIABLES = (
    "CFG",
    "WEIGHTS",
    "NAMES",
    "SIZE",
    "PRECISION",
    "CALIBRATION_IMAGES",
    "VALIDATION",
    "INT8_GATE_FAILURE",
    "MAX_BATCH_SIZE",
    "OPT_BATCH_SIZE",
    "PREFERRED_BATCH_SIZES",
    "PREPROCESS_INSTANCES",
    "DETECTOR_INSTANCES",
    "POSTPROCESS_INSTANCES",
)
# every variable of the servers' access settings (docker/compose.yaml passes them all, empty by default)
ACCESS_VARIABLES = ("ADMIN_KEY_FILE", "TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA")
PROBE_TIMEOUT_S = 12.0  # `entrypoint.sh health`'s own deadline: the images', compose's and k8s' timeouts exceed it


def makefile_var(name: str) -> str:
    """A ``NAME := value`` / ``NAME ?= value`` of the Makefile."""
    match = re.search(rf"^{name}\s*[:?]?=\s*(.*)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1).strip()


def entrypoint_argv(command: str, env: dict[str, str] | None = None) -> list[str]:
    """The argv docker/entrypoint.sh would exec for ``command`` under ``env`` (added to a minimal environment)."""
    full_env = {"PATH": os.environ["PATH"], "YOLO_DRY_RUN": "1", **(env or {})}
    result = subprocess.run(["sh", str(ENTRYPOINT), command], env=full_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def parse_yolo_server(argv: list[str]) -> argparse.Namespace:
    """``argv`` (starting with ``yolo-server``) through the real CLI parser; argparse errors fail the test."""
    assert argv[0] == "yolo-server", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse reports on stderr and exits 2
        pytest.fail(f"yolo-server rejects {argv}: exit {exc.code}")


def default_model_name() -> str:
    """The base model name `yolo-server build` gives the default cfg (the bytes ensemble's name)."""
    return model_base_name(makefile_var("DEFAULT_CFG"))


def health_probe(env: dict[str, str] | None = None) -> argparse.Namespace:
    """``entrypoint.sh health`` under ``env``, parsed: a ``yolo-server probe``."""
    args = parse_yolo_server(entrypoint_argv("health", env))
    assert args.command == "probe"
    return args


def ignored(pattern_lines: list[str], path: str) -> bool:
    """Docker's .dockerignore rule for one path: the last matching pattern wins, ``!`` re-includes."""
    result = False
    for pattern in pattern_lines:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # a match on a parent folder counts
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace("**/", "")) for p in prefixes):
            result = not negate
    return result
