"""Each module runs in one kind of process, and imports only what that process needs.

- A stub's ``model.py`` (inside Triton) imports neither the launcher nor build-time code, and no cpu stub (the fused
  ``NAME``, ``NAME_preprocess``, ``NAME_detector``, ``NAME_postprocess``) imports torch: checked in a fresh interpreter
  that loads the stub on the stand-in ``pb_utils`` and answers a request, so that lazy imports count too.
- By package, on every import statement (function-level ones too): ``ops/`` imports no torch (it is written
  against the array API); ``export/`` imports nothing of ``repository/`` (the build calls export, never the other
  way); ``triton/`` nothing of the launcher or the build; the launcher nothing of the build, of torch, or of the
  stubs' steps beyond the settings it reads from configs (the front's request cap and the sized knobs); ``tuning/``
  (``yolo-server tune``, which drives the launcher) nothing of the build or of torch.
- ``yolo_client`` is the bottom layer: it imports nothing of ``yolo_server`` (the server builds on the client's
  contract, geometry and scenes, never the other way), nor torch or OpenVINO; and the modules the server builds on
  (``contract``, ``geometry``, ``scenes``) import nothing but the standard library, numpy and OpenCV, so that a stub
  that reads the contract loads no gRPC.
- ``loadtest/`` (locust, on the client) imports nothing of ``yolo_server``.
"""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import python_backend
from tests.helpers.images import encode, scene
from tests.helpers.paths import ROOT
from tests.helpers.small_repository import SMALL_NAME, SMALL_SIZE
from yolo_client.contract import DETECTOR_INPUT, HEAD_PREFIX, IMAGE, RESIZE, model_name
from yolo_client.geometry import resize_params

PACKAGE = ROOT / "server" / "yolo_server"
CLIENT = ROOT / "client" / "yolo_client"
LOAD = ROOT / "loadtest"
# what the server imports of the client, and what each may import beyond the standard library and its own package
CLIENT_BASE = {"contract": set(), "geometry": {"numpy", "cv2"}, "scenes": {"numpy", "cv2"}}
BUILD = ("yolo_server.export", "yolo_server.repository", "yolo_server.training", "yolo_server.evaluation")
LAUNCHER = ("yolo_server.launcher", "yolo_server.cli")
IN_PROCESS = ("yolo_server.pipeline",)  # the oracle: torch eager on the darknet module
STUB_FORBIDDEN = (*BUILD, *LAUNCHER, *IN_PROCESS)
TORCH = ("torch",)

STUB_SCRIPT = """
import json, pickle, sys
sys.path[:0] = [sys.argv[1]]
from tests.helpers import python_backend as pb_utils
args, inputs = pickle.load(sys.stdin.buffer)
[response] = pb_utils.load_model(args).execute([pb_utils.InferenceRequest(inputs)])
assert not response.has_error(), response.error().message()
print(json.dumps(sorted(sys.modules)))
"""


def stub_imports(repository: Path, model: str, inputs: dict[str, np.ndarray]) -> set[str]:
    """The modules a fresh interpreter holds once ``model``'s stub has loaded and answered ``inputs``."""
    payload = pickle.dumps((python_backend.model_args(repository, model), inputs))
    done = subprocess.run(
        [sys.executable, "-c", STUB_SCRIPT, str(ROOT)], input=payload, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return set(json.loads(done.stdout.decode().splitlines()[-1]))


def under(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(f"{p}.") for p in packages))


def stub_requests(repository: Path) -> dict[str, dict[str, np.ndarray]]:
    """One valid request per stub of a repository, by role."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    detector = model_name(SMALL_NAME, "detector")
    config = text_format.Parse((repository / detector / "config.pbtxt").read_text(), pb.ModelConfig())
    heads = {o.name: np.zeros((1, *o.dims), np.float32) for o in config.output if o.name.startswith(HEAD_PREFIX)}
    params = resize_params(64, 48, SMALL_SIZE, SMALL_SIZE, letterbox=True)
    image = np.array([[encode(".png", scene(48, 64))]], dtype=object)
    return {
        "images": {IMAGE: image},
        "preprocess": {IMAGE: image},
        "detector": {DETECTOR_INPUT: np.zeros((1, 3, SMALL_SIZE, SMALL_SIZE), np.float32)},
        "postprocess": {**heads, RESIZE: params.pack()[None]},
    }


@pytest.mark.parametrize(("layout", "role"), [("fused", "images"), ("ensemble", "preprocess"), ("fused", "detector"),
                                              ("fused", "postprocess")])  # fmt: skip
def test_a_stub_imports_neither_the_launcher_nor_build_code(
    small_repositories: dict[str, Path], layout: str, role: str
) -> None:
    repository = small_repositories[layout]
    modules = stub_imports(repository, model_name(SMALL_NAME, role), stub_requests(repository)[role])
    assert "yolo_server.triton.execution" in modules, "the stub ran through the shared execute"
    assert under(modules, STUB_FORBIDDEN) == []
    # the detector runs OpenVINO on numpy, the preprocess decodes with cv2/PIL and decode + NMS run the array-API ops
    # on numpy: torch would only cost memory (over 200 MiB resident) and start-up time in every cpu instance
    assert under(modules, TORCH) == []


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any level of its code (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def package_imports(package: str) -> dict[str, set[str]]:
    directory = PACKAGE.joinpath(*package.split(".")[1:])
    files = sorted(directory.rglob("*.py")) if directory.is_dir() else [directory.with_suffix(".py")]
    assert files, package
    return {str(path.relative_to(PACKAGE)): imports_of(path) for path in files}


RULES = {
    "yolo_server.export": BUILD[1:] + LAUNCHER,
    "yolo_server.triton": STUB_FORBIDDEN,
    # the one copy of decode + NMS, written against the array API: numpy in the stubs, torch where the caller has it
    "yolo_server.ops": (*STUB_FORBIDDEN, *TORCH, "yolo_server.triton"),
    "yolo_server.launcher": (*BUILD, *IN_PROCESS, *TORCH, "yolo_server.darknet", "yolo_server.ops", "openvino"),
    "yolo_server.precision": (*STUB_FORBIDDEN, *TORCH, "yolo_server.triton"),
    "yolo_server.extras": (*STUB_FORBIDDEN, *TORCH, "yolo_server.triton"),
    # the options' declarations are read by the build, the launcher and the stubs' configs alike: they import none
    "yolo_server.flags": (*STUB_FORBIDDEN, *TORCH, "yolo_server.triton", "yolo_server.darknet", "yolo_server.ops"),
    # tune drives the launcher against a built repository: it builds nothing and runs no network itself
    "yolo_server.tuning": (*BUILD, *IN_PROCESS, *TORCH, "yolo_server.darknet", "yolo_server.ops", "openvino"),
}


@pytest.mark.parametrize("package", sorted(RULES))
def test_a_package_imports_nothing_of_the_processes_it_does_not_run_in(package: str) -> None:
    broken = {
        path: under(modules, RULES[package])
        for path, modules in package_imports(package).items()
        if under(modules, RULES[package])
    }
    assert broken == {}


def test_the_launcher_reads_only_the_settings_of_the_stubs_steps() -> None:
    used = {
        m
        for modules in package_imports("yolo_server.launcher").values()
        for m in under(modules, ("yolo_server.triton",))
    }
    assert {m.rsplit(".", 1)[0] if m.count(".") > 2 else m for m in used} == {"yolo_server.triton.settings"}


def test_the_rules_see_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def later():\n    from yolo_server.repository.spec import RepositorySpec\n")
    assert under(imports_of(module), RULES["yolo_server.export"]) == [
        "yolo_server.repository.spec",
        "yolo_server.repository.spec.RepositorySpec",
    ]


@pytest.mark.parametrize("folder", [CLIENT, LOAD], ids=["yolo_client", "loadtest"])
def test_the_client_and_the_load_test_import_nothing_of_the_server(folder: Path) -> None:
    forbidden = ("yolo_server", *TORCH, "openvino")
    broken = {
        str(path.relative_to(ROOT)): under(imports_of(path), forbidden)
        for path in sorted(folder.rglob("*.py"))
        if under(imports_of(path), forbidden)
    }
    assert broken == {}


@pytest.mark.parametrize("module", sorted(CLIENT_BASE))
def test_what_the_server_builds_on_in_the_client_is_light(module: str) -> None:
    """Third-party imports (top-level names outside the standard library) of ``yolo_client.<module>``, at any level;
    its relative imports stay inside the package (checked here against the same list, by name)."""
    tree = ast.parse((CLIENT / f"{module}.py").read_text())
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert relative <= set(CLIENT_BASE), relative
    top = {name.split(".")[0] for name in imports_of(CLIENT / f"{module}.py")}
    assert top - sys.stdlib_module_names - {"__future__"} <= CLIENT_BASE[module]
