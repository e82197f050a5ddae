"""What the deployment tests (tests/unit/test_deploy_*.py) share: docker/entrypoint.sh run for real, the CLI that
parses what it prints, the Makefile's settings, the Dockerfiles and Docker's .dockerignore rule.

``entrypoint_argv`` runs the script with ``sh`` and ``YOLO_DRY_RUN=1`` (it prints the argv instead of executing
it); ``parse_yolo_server`` puts that argv through the real ``yolo_server.cli.build_parser()``.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import ROOT
from yolo_client.contract import DEFAULT_MODEL
from yolo_server.cli import build_parser
from yolo_server.repository.spec import model_base_name

DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*[!e]"))  # Dockerfile.builder|cpu|server, not *.dockerignore
IMAGE_APP = "/opt/yolo"  # where the Dockerfiles COPY the repository's files (test_deploy_images checks it)


@dataclass(frozen=True)
class Knob:
    """One variable of docker/entrypoint.sh: set to ``value``, it gives ``command``'s option ``dest`` the value
    ``parsed`` (as the real CLI parses the argv the script prints)."""

    variable: str
    command: str  # build | serve
    dest: str
    value: str
    parsed: Any


MODELS = "/models"  # MODELS_DIR in the knobs' runs: relative file names land under it
KNOBS = (
    Knob("CFG", "build", "cfg", "my.cfg", Path(f"{MODELS}/my.cfg")),
    Knob("WEIGHTS", "build", "weights", "my.weights", Path(f"{MODELS}/my.weights")),
    Knob("NAMES", "build", "names", "my.names", Path(f"{MODELS}/my.names")),
    Knob("SIZE", "build", "size", "512x320", (512, 320)),
    Knob("TARGET", "build", "target", "tensorrt", "tensorrt"),
    Knob("PRECISION", "build", "precision", "fp32", "fp32"),
    Knob("CALIBRATION_IMAGES", "build", "calibration_images", "calibration", Path(f"{MODELS}/calibration")),
    Knob("VALIDATION", "build", "validation", "val.json", Path(f"{MODELS}/val.json")),
    Knob("INT8_GATE_FAILURE", "build", "int8_gate_failure", "stop", "stop"),
    Knob("MAX_BATCH_SIZE", "build", "max_batch_size", "16", 16),
    Knob("OPT_BATCH_SIZE", "build", "opt_batch_size", "8", 8),
    Knob("PREFERRED_BATCH_SIZES", "build", "preferred_batch_sizes", "8,16", (8, 16)),
    Knob("MAX_QUEUE_DELAY_US", "build", "max_queue_delay_us", "100", 100),
    Knob("MAX_QUEUE_IMAGES", "build", "max_queue_images", "1024", 1024),
    Knob("QUEUE_TIMEOUT_US", "build", "queue_timeout_us", "5000000", 5_000_000),
    Knob("PREPROCESS_INSTANCES", "build", "instances", "3", [("preprocess", 3)]),
    Knob("DETECTOR_INSTANCES", "build", "instances", "2", [("detector", 2)]),
    Knob("POSTPROCESS_INSTANCES", "build", "instances", "3", [("postprocess", 3)]),
    Knob("FUSED_INSTANCES", "build", "instances", "8", [("fused", 8)]),
    Knob("DETECTOR_THREADS", "build", "detector_threads", "8", 8),
    Knob("FUSED", "build", "fused", "0", False),
    Knob("MODEL_NAME", "build", "name", "street", "street"),
    Knob("SCORE_THRESHOLD", "build", "score_threshold", "0.4", 0.4),
    Knob("NMS_THRESHOLD", "build", "nms_threshold", "0.5", 0.5),
    Knob("MAX_DETECTIONS", "build", "max_detections", "100", 100),
    Knob("CLASS_AGNOSTIC", "build", "class_agnostic", "1", True),
    Knob("MAX_PIXELS", "build", "max_pixels", "4000000", 4_000_000),
    Knob("MAX_BYTES", "build", "max_bytes", "1048576", 1 << 20),
    Knob("REPOSITORY", "build", "output", "/srv/repository", Path("/srv/repository")),
    Knob("REPOSITORY", "serve", "repository", "/srv/repository", Path("/srv/repository")),
    Knob("EXIT_TIMEOUT", "serve", "exit_timeout", "20", 20),
    Knob("READY_TIMEOUT", "serve", "ready_timeout", "120", 120.0),
    Knob("SHM_BYTES", "serve", "shm_bytes", str(64 << 20), 64 << 20),
    Knob("MAX_REQUEST_BYTES", "serve", "max_request_bytes", str(8 << 20), 8 << 20),
    Knob("TUNING", "serve", "tuning", "tuned.json", Path(f"{MODELS}/tuned.json")),
    Knob("CHECK_INTERVAL", "serve", "check_interval", "0", 0.0),
    Knob("CANARY_INTERVAL", "serve", "canary_interval", "10", 10.0),
    Knob("CANARY_TIMEOUT", "serve", "canary_timeout", "20", 20.0),
    Knob("LOG_VERBOSE", "serve", "log_verbose", "1", 1),
    Knob(
        "ADMIN_KEY_FILE", "serve", "admin_key_file", "/run/secrets/yolo/admin-key", Path("/run/secrets/yolo/admin-key")
    ),
    Knob("TLS_CERT", "serve", "tls_cert", "/run/secrets/yolo/tls.crt", Path("/run/secrets/yolo/tls.crt")),
    Knob("TLS_KEY", "serve", "tls_key", "/run/secrets/yolo/tls.key", Path("/run/secrets/yolo/tls.key")),
    Knob("TLS_CLIENT_CA", "serve", "tls_client_ca", "/run/secrets/yolo/ca.crt", Path("/run/secrets/yolo/ca.crt")),
)
# the options no variable sets, and why
FIXED_OPTIONS = {
    ("build", "preflight"): "the entrypoint's own check, run before it clears the repository volume",
    ("serve", "front"): "always on in a container: Triton itself has no request cap",
}


def _load_gen_options() -> Any:
    """docker/gen_options.py, a script beside the Dockerfiles rather than a package module."""
    spec = importlib.util.spec_from_file_location("gen_options", DOCKER / "gen_options.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_options = _load_gen_options()
# every variable compose passes to the builders (x-model-inputs, all optional; TARGET per service)
BUILD_VARIABLES = tuple(v for v in gen_options.variables("build") if v not in gen_options.CONTAINER_LAYOUT)
# every variable of the servers' access settings (docker/compose.yaml passes them all, empty by default)
ACCESS_VARIABLES = ("ADMIN_KEY_FILE", "TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA")
# every variable compose passes to the servers
SERVE_VARIABLES = tuple(v for v in gen_options.variables("serve") if v not in gen_options.CONTAINER_LAYOUT)
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
    """The base model name `yolo-server build` gives the default cfg (the image entry point's name), which is the
    wire contract's default model."""
    name = model_base_name(makefile_var("DEFAULT_CFG"))
    assert name == DEFAULT_MODEL, f"the Makefile's default cfg serves {name}, the contract names {DEFAULT_MODEL}"
    return name


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
