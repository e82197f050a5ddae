"""docker/entrypoint.sh: every `yolo-server` command the containers run is one that yolo_server.cli accepts.

The script runs for real (``sh``, ``YOLO_DRY_RUN=1`` prints the argv instead of executing it) and its output goes
through the real ``yolo_server.cli.build_parser()`` (``tests/helpers/deploy.py``, shared with the compose, image and
k8s tests, which run it with each container's own environment).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.darknet_files import DEMO_CFG
from tests.helpers.deploy import (
    ACCESS_VARIABLES,
    BUILD_VARIABLES,
    ENTRYPOINT,
    FIXED_OPTIONS,
    IMAGE_APP,
    KNOBS,
    MODELS,
    PROBE_TIMEOUT_S,
    Knob,
    default_model_name,
    entrypoint_argv,
    gen_options,
    health_probe,
    makefile_var,
    parse_yolo_server,
)
from tests.helpers.paths import ROOT
from yolo_server.cli import build_parser
from yolo_server.flags import declared
from yolo_server.repository.spec import model_base_name


def build_args(env: dict[str, str] | None = None) -> argparse.Namespace:
    """The ``yolo-server build`` the entrypoint runs under ``env``, parsed."""
    args = parse_yolo_server(entrypoint_argv("build", env))
    assert args.command == "build"
    return args


def test_default_build_is_the_makefiles_default_model() -> None:
    args = build_args()
    assert str(args.cfg) == f"{IMAGE_APP}/{makefile_var('DEFAULT_CFG')}"
    assert str(args.names) == f"{IMAGE_APP}/{makefile_var('DEFAULT_NAMES')}"
    assert str(args.weights) == f"{IMAGE_APP}/{makefile_var('DEFAULT_WEIGHTS')}"
    assert args.target == "cpu" and args.name is None
    for variable in ("DEFAULT_CFG", "DEFAULT_NAMES", "DEFAULT_WEIGHTS"):
        assert (ROOT / makefile_var(variable)).is_file(), variable
    assert model_base_name(args.cfg) == default_model_name()


def test_default_build_calibrates_int8_on_the_makefiles_demo_scenes() -> None:
    """The container's default repository is `make build`'s: INT8 from the same seeds and counts."""
    args = build_args()
    assert str(args.calibration_images).endswith("/yolo-demo-scenes/calibration/images")
    assert str(args.validation).endswith("/yolo-demo-scenes/validation/annotations.json")
    text = ENTRYPOINT.read_text()
    for name, seed, count in (("CALIBRATION", "TRAIN_SEED", "CALIBRATION_COUNT"),
                              ("VALIDATION", "VALIDATION_SEED", "VALIDATION_COUNT")):  # fmt: skip
        [value] = re.findall(rf'^DEMO_{name}="(\d+) (\d+)"$', text, flags=re.MULTILINE)
        assert value == (makefile_var(seed), makefile_var(count)), name
    for env in ({"PRECISION": "fp32"}, {"TARGET": "tensorrt"}, {"CALIBRATION_IMAGES": "mine"}, {"CFG": "my.cfg"}):
        args = build_args(env)
        assert "yolo-demo-scenes" not in f"{args.calibration_images} {args.validation}", env


def test_user_model_files_are_taken_from_the_mounted_folder() -> None:
    args = build_args({"CFG": "darknet/yolov4.cfg", "WEIGHTS": "yolov4.weights", "NAMES": "/abs/coco.names",
                       "SIZE": "512x320", "TARGET": "tensorrt", "PRECISION": "fp16", "MAX_BATCH_SIZE": "16",
                       "MODELS_DIR": "/models"})  # fmt: skip
    assert (str(args.cfg), str(args.weights), str(args.names)) == (
        "/models/darknet/yolov4.cfg",
        "/models/yolov4.weights",
        "/abs/coco.names",
    )
    assert (args.size, args.target, args.precision, args.max_batch_size) == ((512, 320), "tensorrt", "fp16", 16)
    assert str(args.output) == "/repository"


def test_int8_inputs_come_from_the_mounted_folder() -> None:
    args = build_args({"CALIBRATION_IMAGES": "calibration", "VALIDATION": "val/annotations.json",
                       "INT8_GATE_FAILURE": "stop", "MODELS_DIR": "/models"})  # fmt: skip
    assert (str(args.calibration_images), str(args.validation)) == (
        "/models/calibration",
        "/models/val/annotations.json",
    )
    assert args.int8_gate_failure == "stop"


def test_gpu_shape_comes_from_the_environment() -> None:
    args = build_args({"TARGET": "tensorrt", "MAX_BATCH_SIZE": "64", "OPT_BATCH_SIZE": "32",
                       "PREFERRED_BATCH_SIZES": "32,64", "PREPROCESS_INSTANCES": "4", "DETECTOR_INSTANCES": "2",
                       "POSTPROCESS_INSTANCES": "3"})  # fmt: skip
    assert (args.max_batch_size, args.opt_batch_size, args.preferred_batch_sizes) == (64, 32, (32, 64))
    assert args.instances == [("preprocess", 4), ("detector", 2), ("postprocess", 3)]


def options(command: str) -> set[str]:
    """Every option of ``yolo-server COMMAND``, by its argparse dest."""
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest for a in commands.choices[command]._actions if a.dest != "help"}


@pytest.mark.parametrize("command", ["build", "serve"])
def test_every_option_has_its_variable_or_a_reason(command: str) -> None:
    """A new `yolo-server build|serve` option fails here until it reaches docker/entrypoint.sh (and so compose and
    k8s), or its reason to be fixed in a container is written in FIXED_OPTIONS."""
    declared_options = list(declared(gen_options.COMMANDS[command]))
    from_variables = {item.flag.dest for item in declared_options if item.flag.variable}
    fixed = {dest for (fixed_command, dest) in FIXED_OPTIONS if fixed_command == command}
    assert not from_variables & fixed
    assert from_variables | fixed == options(command)
    assert {k.dest for k in KNOBS if k.command == command} <= from_variables
    documented = re.findall(r"^#\s+([A-Z0-9_, ]+?)\s{2,}", ENTRYPOINT.read_text(), flags=re.MULTILINE)
    named = {name.strip() for line in documented for name in line.split(",")}
    variables = {v for item in declared_options for v in item.flag.variables()}
    assert variables | {k.variable for k in KNOBS} <= named, "each variable is listed in the entrypoint's header"


@pytest.mark.parametrize("knob", KNOBS, ids=lambda k: f"{k.variable}-{k.command}")
def test_each_variable_sets_its_option(knob: Knob) -> None:
    default = getattr(parse_yolo_server(entrypoint_argv(knob.command, {"MODELS_DIR": MODELS})), knob.dest)
    args = parse_yolo_server(entrypoint_argv(knob.command, {knob.variable: knob.value, "MODELS_DIR": MODELS}))
    assert getattr(args, knob.dest) == knob.parsed != default


@pytest.mark.parametrize("variable", ["FUSED", "CLASS_AGNOSTIC"])
def test_switches_take_1_or_0_and_refuse_anything_else(variable: str) -> None:
    for value in ("1", "true", "0", "false"):
        parse_yolo_server(entrypoint_argv("build", {variable: value}))
    result = subprocess.run(["sh", str(ENTRYPOINT), "build"], env={"PATH": os.environ["PATH"], "YOLO_DRY_RUN": "1",
                            variable: "maybe"}, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2 and f"{variable} must be 1 or 0" in result.stderr and not result.stdout


def test_empty_variables_mean_defaults() -> None:
    """compose passes ``CFG: ${CFG:-}``: an empty value must behave like an unset one."""
    empty = dict.fromkeys(BUILD_VARIABLES, "")
    assert entrypoint_argv("build", empty) == entrypoint_argv("build")


def test_serve_listens_on_all_interfaces_on_the_cli_default_ports() -> None:
    args = parse_yolo_server(entrypoint_argv("serve", {"EXIT_TIMEOUT": "30"}))
    defaults = build_parser().parse_args(["serve", "x"])
    assert args.command == "serve" and str(args.repository) == "/repository"
    assert args.host == "0.0.0.0"
    assert (args.http_port, args.grpc_port, args.metrics_port) == (
        defaults.http_port,
        defaults.grpc_port,
        defaults.metrics_port,
    )
    assert (args.http_port, args.grpc_port, args.metrics_port) == tuple(
        int(makefile_var(name)) for name in ("HTTP_PORT", "GRPC_PORT", "METRICS_PORT")
    )
    assert args.exit_timeout == 30


@pytest.mark.parametrize("repository", [None, "/srv/models-built"])
def test_health_probes_the_served_repository_on_the_loopback_http_port(repository: str | None) -> None:
    env = {"REPOSITORY": repository} if repository else {}
    serve = parse_yolo_server(entrypoint_argv("serve", env))
    probe = health_probe(env)
    # loopback: with TLS on, Triton's HTTP binds 127.0.0.1 only, and no network policy stands in the way
    assert probe.url == f"127.0.0.1:{serve.http_port}"
    assert probe.repository == serve.repository == Path(repository or "/repository")
    assert probe.model == [] and probe.timeout == PROBE_TIMEOUT_S


def test_access_variables_become_serve_options_that_the_cli_accepts(tmp_path: Path) -> None:
    """The argv's options are turned into the launcher's settings by the real ``serve_options`` (files read)."""
    from yolo_server.cli import serve_options

    files = {name: tmp_path / name.lower() for name in ACCESS_VARIABLES}
    files["ADMIN_KEY_FILE"].write_text("0123456789abcdef0123456789abcdef\n")
    for name in ("TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA"):
        files[name].write_text("-----BEGIN PEM-----\n")
    args = parse_yolo_server(entrypoint_argv("serve", {name: str(path) for name, path in files.items()}))
    assert (args.admin_key_file, args.tls_cert, args.tls_key, args.tls_client_ca) == tuple(
        files[name] for name in ACCESS_VARIABLES
    )
    access = serve_options(args).access
    assert access.admin_key == "0123456789abcdef0123456789abcdef"
    assert access.tls is not None and access.tls.client_ca == files["TLS_CLIENT_CA"]
    assert access.http_host(args.host) == "127.0.0.1"  # plaintext HTTP stays in the container with TLS on
    # server TLS alone, no client certificates
    one_way = {name: str(files[name]) for name in ("TLS_CERT", "TLS_KEY")}
    args = parse_yolo_server(entrypoint_argv("serve", one_way))
    assert args.tls_client_ca is None and args.admin_key_file is None
    assert serve_options(args).access.tls.client_ca is None


def test_empty_access_variables_leave_the_admin_apis_off_and_tls_off() -> None:
    empty = parse_yolo_server(entrypoint_argv("serve", dict.fromkeys(ACCESS_VARIABLES, "")))
    assert (empty.admin_key_file, empty.tls_cert, empty.tls_key, empty.tls_client_ca) == (None, None, None, None)
    assert entrypoint_argv("serve", dict.fromkeys(ACCESS_VARIABLES, "")) == entrypoint_argv("serve")


def test_set_access_variables_are_strict(tmp_path: Path) -> None:
    """A key file that is not there, or a client CA without a certificate, stops the server: no silent fallback."""
    from yolo_server.cli import serve_options

    missing = parse_yolo_server(entrypoint_argv("serve", {"ADMIN_KEY_FILE": str(tmp_path / "absent")}))
    with pytest.raises(OSError):
        serve_options(missing)
    (tmp_path / "ca.pem").write_text("-----BEGIN PEM-----\n")
    ca_only = parse_yolo_server(entrypoint_argv("serve", {"TLS_CLIENT_CA": str(tmp_path / "ca.pem")}))
    with pytest.raises(ValueError, match="--tls-cert"):
        serve_options(ca_only)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the preflight would pass")
def test_a_tensorrt_build_without_a_gpu_says_so_and_leaves_the_volume(tmp_path: Path) -> None:
    """The builder container without a GPU: the real `yolo-server build --preflight` stops it before the volume is
    cleared, with what is missing."""
    repository = tmp_path / "repository"
    repository.mkdir()
    (repository / "served_model").mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TARGET": "tensorrt",
        "CFG": str(DEMO_CFG),
        "REPOSITORY": str(repository),
    }
    result = subprocess.run(["sh", str(ENTRYPOINT), "build"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no CUDA GPU" in result.stderr and "--gpus all" in result.stderr
    assert [p.name for p in repository.iterdir()] == ["served_model"]


def test_the_front_is_on_and_max_request_bytes_sets_its_cap() -> None:
    default = parse_yolo_server(entrypoint_argv("serve"))
    assert default.front and default.max_request_bytes is None  # the repository's largest request
    capped = parse_yolo_server(entrypoint_argv("serve", {"MAX_REQUEST_BYTES": str(8 << 20)}))
    assert capped.front and capped.max_request_bytes == 8 << 20
