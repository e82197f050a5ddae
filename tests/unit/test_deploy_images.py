"""docker/Dockerfile.*: pinned, matching NGC releases; COPY sources that exist and reach the build context;
non-root users; the entrypoint's health check; ports and the torch pin that the rest of the project uses.

No Docker engine runs here: these read the Dockerfiles' instructions (a small parser for the subset they use) and
compare them with the repository, the Makefile and the CLI.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.helpers.deploy import (
    DOCKER,
    DOCKERFILES,
    IMAGE_APP,
    entrypoint_argv,
    ignored,
    makefile_var,
    parse_yolo_server,
)
from tests.helpers.paths import ROOT

NGC = re.compile(r"^nvcr\.io/nvidia/(pytorch|tritonserver):(\d\d\.\d\d)-py3$")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each FROM stage."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def build_args(path: Path) -> dict[str, str]:
    """The ``ARG NAME=default`` lines before the first FROM: what ``FROM ${NAME}`` builds on by default."""
    args: dict[str, str] = {}
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            return args
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def stage_names(path: Path) -> list[str]:
    return [stage[0][1].split(" AS ")[-1] if " AS " in stage[0][1] else "" for stage in stages(path)]


def base_images(path: Path) -> list[str]:
    """Each stage's base: an image (build arguments at their defaults), or an earlier stage's name."""
    args = build_args(path)
    return [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[0][1].split()[0]) for stage in stages(path)]


def image_instructions(path: Path, target: str | None = None) -> list[tuple[str, str]]:
    """What an image built with ``--target`` (default: the last stage) is made of: its stage after the stages it
    builds on."""
    names, bases, all_stages = stage_names(path), base_images(path), stages(path)
    index = names.index(target) if target else len(all_stages) - 1
    inherited = image_instructions(path, bases[index]) if bases[index] in names else []
    return inherited + all_stages[index]


def copy_sources(path: Path) -> list[str]:
    sources = []
    for keyword, rest in instructions(path):
        if keyword == "COPY":
            words = [w for w in rest.split() if not w.startswith("--")]
            sources += words[:-1]
    return sources


def test_three_images() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.builder", "Dockerfile.cpu", "Dockerfile.server"]


def test_builder_and_server_are_the_same_ngc_release() -> None:
    base = {p.name: base_images(p) for p in DOCKERFILES}
    builder, server = (NGC.match(base[name][0]) for name in ("Dockerfile.builder", "Dockerfile.server"))
    assert builder and builder.group(1) == "pytorch", base
    assert server and server.group(1) == "tritonserver", base
    assert builder.group(2) == server.group(2), "the builder's TensorRT must be the one Triton runs"
    readme = (ROOT / "README.md").read_text()
    assert f"pytorch:{builder.group(2)}-py3" in readme and f"tritonserver:{server.group(2)}-py3" in readme


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(path: Path) -> None:
    for image in base_images(path):
        if image not in stage_names(path):
            assert re.search(r":[\w.-]*\d[\w.-]*$", image) and "latest" not in image, f"{path.name}: {image}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_build_with_the_builtin_frontend_behind_any_registry(path: Path) -> None:
    """No `# syntax` line (it pulls a frontend image); the base and the package index are build arguments, and every
    pip install takes the CA secret and the wheels folder."""
    assert not path.read_text().startswith("# syntax"), path.name
    assert "BASE_IMAGE" in build_args(path) and base_images(path)[0] == build_args(path)["BASE_IMAGE"]
    runs = [rest for kw, rest in instructions(path) if kw == "RUN" and "pip install" in rest]
    assert runs, path.name
    for run in runs:
        assert "--mount=type=secret,id=ca" in run and "PIP_CERT=/run/secrets/ca" in run, run[:120]
        assert "--mount=type=bind,source=docker/wheels,target=/wheels" in run and "--find-links /wheels" in run
    stage_args = [rest for stage in stages(path) for kw, rest in stage if kw == "ARG"]
    assert any(arg.startswith("PIP_INDEX_URL=") for arg in stage_args), path.name


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_pass_the_dockerignore(path: Path) -> None:
    patterns = [
        line.strip()
        for line in Path(f"{path}.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copy_sources(path):
        assert (ROOT / source).exists(), f"{path.name}: COPY {source} does not exist"
        assert not ignored(patterns, source), f"{path.name}: COPY {source} is excluded by {path.name}.dockerignore"
        assert ignored(patterns, ".venv") and ignored(patterns, "build/model_repository")


def test_dockerignores_are_one_file() -> None:
    texts = {Path(f"{p}.dockerignore").read_text() for p in DOCKERFILES}
    assert len(texts) == 1


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_runs_as_a_non_root_user(path: Path) -> None:
    """Every stage that is an image (it has an ENTRYPOINT of its own or inherited), not only a base of others."""
    for name in stage_names(path):
        image = image_instructions(path, name or None)
        if any(kw == "ENTRYPOINT" for kw, _ in image):
            users = [rest for kw, rest in image if kw == "USER"]
            assert users and users[-1] not in ("root", "0"), f"{path.name}: stage {name} runs as root"


@pytest.mark.parametrize("name", ["Dockerfile.builder", "Dockerfile.server", "Dockerfile.cpu"])
def test_entrypoint_and_default_model_are_copied_where_the_script_looks(name: str) -> None:
    image = image_instructions(DOCKER / name)  # Dockerfile.cpu: the builder, on the server stage
    final = dict(image)
    copies = [rest for kw, rest in image if kw == "COPY"]
    assert final["WORKDIR"] == IMAGE_APP
    assert any(c.endswith("docker/entrypoint.sh entrypoint.sh") and "--chmod=755" in c for c in copies)
    assert any(
        c == f"{Path(makefile_var('DEFAULT_CFG')).parent} {Path(makefile_var('DEFAULT_CFG')).parent}" for c in copies
    )
    # NGC images keep NVIDIA's entrypoint (CUDA forward compatibility) in front of ours
    nvidia = '"/opt/nvidia/nvidia_entrypoint.sh", ' if NGC.match(base_images(DOCKER / name)[0]) else ""
    assert final["ENTRYPOINT"] == f'[{nvidia}"{IMAGE_APP}/entrypoint.sh"]'
    assert bool(nvidia) == (name != "Dockerfile.cpu")


def healthcheck_options(arguments: str) -> dict[str, float]:
    """``--interval=10s --timeout=10s ... CMD [...]`` -> {"interval": 10.0, ...} in seconds."""
    options = re.findall(r"--([a-z-]+)=(\d+)(s|m)?\b", arguments.partition(" CMD ")[0])
    return {name: float(value) * (60 if unit == "m" else 1) for name, value, unit in options}


@pytest.mark.parametrize(("name", "target"), [("Dockerfile.server", None), ("Dockerfile.cpu", "server")])
def test_servers_expose_the_served_ports_and_check_health_with_the_probe(name: str, target: str | None) -> None:
    final = dict(image_instructions(DOCKER / name, target))
    serve = parse_yolo_server(entrypoint_argv("serve"))
    assert final["EXPOSE"].split() == [str(p) for p in (serve.http_port, serve.grpc_port, serve.metrics_port)]
    assert final["HEALTHCHECK"].endswith(f'CMD ["{IMAGE_APP}/entrypoint.sh", "health"]')
    probe = parse_yolo_server(entrypoint_argv("health"))
    assert probe.command == "probe"
    options = healthcheck_options(final["HEALTHCHECK"])
    # Docker kills a check at --timeout: the probe must give its own verdict first
    assert options["timeout"] > probe.timeout, options
    assert options["start-period"] >= 300 and options["retries"] >= 2 and options["interval"] > 0, options
    assert final["CMD"] == '["serve"]'


def test_cpu_builder_adds_the_makefiles_cpu_torch_to_a_server_without_torch() -> None:
    makefile_torch = re.search(r"pip install -q (torch==[\d.]+)", (ROOT / "Makefile").read_text())
    assert makefile_torch
    builder = image_instructions(DOCKER / "Dockerfile.cpu", "builder")
    server = image_instructions(DOCKER / "Dockerfile.cpu", "server")
    assert server == builder[: len(server)], "the builder is the server plus the build's packages"
    server_runs = " ".join(rest for kw, rest in server if kw == "RUN")
    # nvidia-pytriton: the tritonserver binary; the cpu detector's runtime; and the proof that torch is absent
    assert "'./server[serve,openvino]'" in server_runs and '! python -c "import torch"' in server_runs
    builder_runs = " ".join(rest for kw, rest in builder[len(server) :] if kw == "RUN")
    assert f'${{TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}} {makefile_torch.group(1)} ' in builder_runs
    assert "'./server[build,openvino,int8]'" in builder_runs
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in [rest for kw, rest in builder if kw == "ARG"]
    assert "TARGET=cpu" in " ".join(rest for kw, rest in builder if kw == "ENV")


def test_builder_keeps_the_ngc_torch_and_targets_tensorrt() -> None:
    runs = " ".join(rest for kw, rest in instructions(DOCKER / "Dockerfile.builder") if kw == "RUN")
    assert "print('torch==' + m.version('torch'))\" > /tmp/image-pins.txt" in runs
    assert "$constraints ./client './server[build]'" in runs
    env = " ".join(rest for kw, rest in instructions(DOCKER / "Dockerfile.builder") if kw == "ENV")
    assert "TARGET=tensorrt" in env
    assert parse_yolo_server(entrypoint_argv("build", {"TARGET": "tensorrt"})).target == "tensorrt"


@pytest.mark.parametrize("name", ["Dockerfile.builder", "Dockerfile.server"])
def test_ngc_images_build_without_a_gpu(name: str) -> None:
    """`docker build` steps get no GPU, and Torch-TensorRT 2.9 asks CUDA for a device at import: no step imports it
    (the container checks at start: `yolo-server build --preflight`)."""
    runs = " ".join(rest for kw, rest in instructions(DOCKER / name) if kw == "RUN")
    modules = [name.split()[0] for names in re.findall(r"\bimport ([\w., ]+)", runs) for name in names.split(",")]
    assert "yolo_server.export.tensorrt" in modules or name == "Dockerfile.server", modules
    assert not {module.split(".")[0] for module in modules} & {"torch_tensorrt", "tensorrt"}, modules


@pytest.mark.parametrize("name", ["Dockerfile.builder", "Dockerfile.server"])
def test_ngc_images_install_the_project_within_the_images_constraints(name: str) -> None:
    """The NGC constraint file is honoured where the image has one, beside the image's own pins (torch in the builder,
    numpy in the server): the project's install cannot replace what the image was built with."""
    runs = " ".join(rest for kw, rest in instructions(DOCKER / name) if kw == "RUN")
    assert 'constraints="--constraint /tmp/image-pins.txt"' in runs
    assert (
        'if [ -f /etc/pip/constraint.txt ]; then constraints="$constraints --constraint /etc/pip/constraint.txt"; fi'
        in runs
    )
    [install] = re.findall(r"pip install [^&]*\./server\b[^&]*", runs)
    assert "$constraints" in install and "./client" in install
    pinned = {"Dockerfile.builder": "torch", "Dockerfile.server": "numpy"}[name]
    assert f"print('{pinned}==' + m.version('{pinned}'))\" > /tmp/image-pins.txt" in runs


def test_only_the_extras_that_need_them_pin_numpy_1_and_opencv_4_11() -> None:
    """numpy<2 is the bundled pytriton stub's need (the serve extra), OpenCV < 4.12 the parity reference's beside it
    (the test extra): the NGC images install the core without either."""
    project = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())["project"]
    pins = {
        name: [req for req in requirements if re.match(r"(numpy|opencv-python-headless)\b.*<", req)]
        for name, requirements in {"core": project["dependencies"], **project["optional-dependencies"]}.items()
    }
    assert {name: found for name, found in pins.items() if found} == {
        "serve": ["numpy<2"],
        "test": ["opencv-python-headless<4.12"],
    }
