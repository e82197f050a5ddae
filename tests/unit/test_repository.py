"""The generated Triton repository: configs valid through the protobuf, wiring consistent, committed copy current."""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tests.helpers.paths import ROOT
from yolo_client.contract import RANDOM_WEIGHTS, ModelInfo
from yolo_server.cli import build_options, build_parser
from yolo_server.darknet import load_spec
from yolo_server.darknet.model import DarknetModel
from yolo_server.repository.configs import FUSED_BATCH_THREADS, head_shapes, model_configs
from yolo_server.repository.plan import BuildOptions, Int8Options, RepositoryPlan, plan_repository
from yolo_server.repository.spec import TARGET_BATCHING, Batching, Instances, ModelNames, model_base_name
from yolo_server.repository.writer import artifact_directories, link_or_copy, repository_files, write_repository
from yolo_server.triton.python_models import adapter_source
from yolo_server.triton.settings import DetectorSettings, PostprocessSettings, PreprocessSettings, Sized

CFG_DIR = ROOT / "models" / "darknet"
TINY = CFG_DIR / "yolov4-tiny.cfg"
NAMES = CFG_DIR / "coco.names"
ARTIFACT_SUFFIXES = (".pt", ".ts", ".plan", ".xml", ".bin")
CONTRACT_PARAMETERS = {field.name for field in ModelInfo.parameter_fields()}


def plan(target: str = "cpu", **overrides: Any) -> RepositoryPlan:
    return plan_repository(BuildOptions(cfg=TINY, names=NAMES, size=(512, 320), target=target, **overrides))


def round_trip(config: pb.ModelConfig) -> pb.ModelConfig:
    parsed = text_format.Parse(text_format.MessageToString(config), pb.ModelConfig())
    assert parsed == config
    return parsed


def make_build_args() -> list[str]:
    """The ``yolo-server build`` arguments of ``make build`` with the Makefile's defaults (make's dry run)."""
    dry_run = subprocess.run(
        ["make", "--dry-run", "--always-make", "build"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    [line] = [line for line in dry_run.splitlines() if "yolo-server build" in line]
    words = shlex.split(line)
    return words[[Path(word).name for word in words].index("yolo-server") + 1 :]


def test_committed_repository_is_what_make_build_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    args = make_build_args()
    assert args[0] == "build" and "--output" in args and args[args.index("--output") + 1] == "model_repository"
    monkeypatch.chdir(ROOT)
    repository_plan = plan_repository(build_options(build_parser().parse_args(args)))
    # the INT8 gate's figures are measured by the build, not planned: the committed ones must be a pass
    fused = text_format.Parse((ROOT / "model_repository" / repository_plan.spec.name / "config.pbtxt").read_text(),
                              pb.ModelConfig())  # fmt: skip
    int8_gate = fused.parameters["int8_gate"].string_value
    assert "--calibration-images" in args and int8_gate.startswith("passed: mAP@0.5 "), int8_gate
    spec = dataclasses.replace(repository_plan.spec, int8_gate=int8_gate)
    expected = repository_files(spec, repository_plan.darknet, repository_plan.cfg_bytes)
    committed = {
        path.relative_to(ROOT / "model_repository").as_posix(): path.read_bytes()
        for path in (ROOT / "model_repository").rglob("*")
        if path.is_file() and path.suffix not in ARTIFACT_SUFFIXES and "__pycache__" not in path.parts
    }
    assert sorted(committed) == sorted(expected), "run `make build` and commit model_repository/"
    for relative, content in expected.items():
        assert committed[relative] == content, f"model_repository/{relative} is stale: run `make build`"


@pytest.mark.parametrize(("target", "fused"), [("cpu", True), ("cpu", False), ("tensorrt", False)])
def test_configs_round_trip_through_the_protobuf(target: str, fused: bool) -> None:
    repository_plan = plan(target, batching=Batching.for_target(target, max_batch_size=8), fused=fused)
    assert repository_plan.spec.fused == fused
    configs = {
        name: round_trip(config)
        for name, config in model_configs(repository_plan.spec, repository_plan.darknet).items()
    }
    names = ModelNames("yolov4_tiny")
    assert sorted(configs) == sorted(set(names.all()) - ({names.preprocess} if fused else set()))
    for name, config in configs.items():
        assert config.name == name and config.max_batch_size == 8
        if config.platform != "ensemble":
            assert config.dynamic_batching.max_queue_delay_microseconds == {"cpu": 0, "tensorrt": 2000}[target]
            policy = config.dynamic_batching.default_queue_policy
            assert policy.max_queue_size == TARGET_BATCHING[target].max_queue_images // 8  # in full batches of 8
            assert policy.timeout_action == pb.ModelQueuePolicy.REJECT
            assert policy.default_timeout_microseconds == TARGET_BATCHING[target].queue_timeout_us
    detector = configs[names.detector]
    gpu = target == "tensorrt"
    if gpu:
        assert detector.platform == "pytorch_libtorch" and not detector.backend
        assert [g.kind for g in detector.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
        assert list(detector.dynamic_batching.preferred_batch_size) == [4, 8]  # the profile's optimum and max
        assert detector.parameters["precision"].string_value == "fp16"
    else:
        assert detector.backend == "python" and not detector.platform
        assert [g.kind for g in detector.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
        assert not detector.dynamic_batching.preferred_batch_size
    assert [(t.name, list(t.dims)) for t in detector.output] == [("YOLO__0", [255, 10, 16]), ("YOLO__1", [255, 20, 32])]
    # the libtorch backend warms up from the config; the cpu detector's runner in Python (test_python_models)
    assert [w.batch_size for w in detector.model_warmup] == ([1, 8] if gpu else [])
    kinds = {
        # decoding images is CPU work on both targets
        names.images if fused else names.preprocess: pb.ModelInstanceGroup.KIND_CPU,
        names.postprocess: pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU,
    }
    for python_model, kind in kinds.items():
        assert configs[python_model].backend == "python"
        assert [g.kind for g in configs[python_model].instance_group] == [kind]


def test_gpu_repository_defaults_and_options() -> None:
    """The tensorrt target's batching is sized for a GPU; every part of it is a build option."""
    detector = model_configs(plan("tensorrt").spec, plan("tensorrt").darknet)["yolov4_tiny_detector"]
    assert detector.max_batch_size == 32 and list(detector.dynamic_batching.preferred_batch_size) == [16, 32]
    args = build_parser().parse_args(
        ["build", "--cfg", str(TINY), "--target", "tensorrt", "--max-batch-size", "64", "--opt-batch-size", "24",
         "--preferred-batch-sizes", "32,64,24", "--instances", "detector=3"]
    )  # fmt: skip
    options = build_options(args)
    assert options.batching == Batching(
        max_batch_size=64, opt_batch_size=24, max_queue_images=16384, preferred_batch_sizes=(24, 32, 64)
    )
    assert options.batching.max_queue_size == 256
    configs = model_configs(plan_repository(options).spec, plan_repository(options).darknet)
    detector = configs["yolov4_tiny_detector"]
    assert [(g.kind, g.count) for g in detector.instance_group] == [(pb.ModelInstanceGroup.KIND_GPU, 3)]
    assert list(detector.dynamic_batching.preferred_batch_size) == [24, 32, 64]
    assert Batching.for_target("tensorrt", max_batch_size=8).preferred_batch_sizes == (4, 8)
    with pytest.raises(ValueError, match="preferred batch sizes"):
        Batching.for_target("tensorrt", max_batch_size=8, preferred_batch_sizes=(16,))
    cpu = plan("cpu", batching=Batching.for_target("cpu", preferred_batch_sizes=(4, 8)))
    assert list(model_configs(cpu.spec, cpu.darknet)["yolov4_tiny_detector"].dynamic_batching.preferred_batch_size) == [
        4,
        8,
    ]


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_ensembles_wire_every_tensor_with_matching_type_and_shape(target: str) -> None:
    repository_plan = plan(target)
    configs = model_configs(repository_plan.spec, repository_plan.darknet)
    for ensemble in (c for c in configs.values() if c.platform == "ensemble"):
        available = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
        for step in ensemble.ensemble_scheduling.step:
            model = configs[step.model_name]
            inputs = {t.name: (t.data_type, list(t.dims)) for t in model.input}
            required = {t.name for t in model.input if not t.optional}
            assert required <= set(step.input_map) <= set(inputs), (
                f"{ensemble.name}: {model.name} inputs not all mapped"
            )
            for model_input, source in step.input_map.items():
                assert available[source] == inputs[model_input], (
                    f"{ensemble.name}: {source} -> {model.name}.{model_input}"
                )
            outputs = {t.name: (t.data_type, list(t.dims)) for t in model.output}
            available.update({target_name: outputs[name] for name, target_name in step.output_map.items()})
        for output in ensemble.output:
            assert available[output.name] == (output.data_type, list(output.dims))


def test_the_fused_model_reads_every_steps_settings_from_its_own_directory() -> None:
    """cpu by default: one Python model, IMAGE in and the ragged outputs out, with the parameters of all three steps."""
    repository_plan = plan()
    spec, names = repository_plan.spec, repository_plan.spec.names
    assert spec.fused and spec.instances.fused is None  # left to serve's sizing: a placeholder count
    fused = model_configs(spec, repository_plan.darknet)[names.images]
    assert fused.backend == "python" and not fused.platform and not fused.ensemble_scheduling.step
    assert [(g.kind, g.count) for g in fused.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 1)]
    assert [(t.name, t.data_type, list(t.dims)) for t in fused.input] == [("IMAGE", pb.TYPE_STRING, [1])]
    assert [t.name for t in fused.output] == ["BOXES", "SCORES", "CLASSES", "COUNT"]
    parameters = {key: value.string_value for key, value in fused.parameters.items()}
    assert PreprocessSettings.from_parameters(parameters) == PreprocessSettings(
        512,
        320,
        False,
        50_000_000,
        64 << 20,
        True,  # uint8 rows until the batch is written
        "scaled",
    )
    assert DetectorSettings.from_parameters(parameters) == DetectorSettings(
        512, 320, "auto", "model.xml", 0, FUSED_BATCH_THREADS, "", ""
    )
    detector = model_configs(spec, repository_plan.darknet)[names.detector].parameters
    assert DetectorSettings.from_parameters({k: v.string_value for k, v in detector.items()}).batch_threads == 0
    assert PostprocessSettings.from_parameters(parameters) == PostprocessSettings("model.cfg", 5000, 1)
    assert Sized.from_parameters(parameters) == Sized(("instances", "lone_threads", "batch_threads"))
    files = repository_files(spec, repository_plan.darknet, repository_plan.cfg_bytes)
    assert files[f"{names.images}/1/model.py"] == adapter_source("fused").encode()
    assert files[f"{names.images}/1/model.cfg"] == repository_plan.cfg_bytes
    assert not any(path.startswith(f"{names.preprocess}/") for path in files)
    assert artifact_directories(spec, Path("out")) == [Path(f"out/{names.detector}/1"), Path(f"out/{names.images}/1")]
    with pytest.raises(ValueError, match="only the cpu target has a fused model"):
        plan("tensorrt", fused=True)


def test_the_artifact_is_linked_into_the_fused_model_not_copied(tmp_path: Path) -> None:
    source = tmp_path / "a" / "model.bin"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    (tmp_path / "b").mkdir()
    linked = link_or_copy(source, tmp_path / "b" / "model.bin")
    assert linked.read_bytes() == b"weights" and linked.stat().st_ino == source.stat().st_ino
    assert link_or_copy(source, linked) == linked  # a rebuild replaces the link


def test_contract_parameters_on_ensembles_and_postprocess() -> None:
    repository_plan = plan(weights=None)
    configs = model_configs(repository_plan.spec, repository_plan.darknet)
    names = repository_plan.spec.names
    for name in (names.images, names.tensor_ensemble, names.postprocess):
        parameters = {key: value.string_value for key, value in configs[name].parameters.items()}
        assert CONTRACT_PARAMETERS <= set(parameters), name
        info = ModelInfo.from_parameters(parameters)
        assert info.weights == RANDOM_WEIGHTS and info.target == "cpu" and info.precision == "auto"
        assert (info.input_width, info.input_height, info.letterbox) == (512, 320, False)
        assert len(info.class_names) == 80 and info.class_names[0] == "person"
        assert (info.score_threshold, info.nms_threshold, info.beta_nms, info.max_detections) == (0.25, 0.45, 0.6, 300)


def test_weights_file_is_named_by_its_sha256(tmp_path: Path) -> None:
    weights = tmp_path / "some.weights"
    weights.write_bytes(b"not really weights")
    assert plan(weights=weights).spec.info.weights == hashlib.sha256(b"not really weights").hexdigest()


@pytest.mark.parametrize("cfg", ["yolov4-tiny.cfg", "yolov4.cfg", "yolov4-csp.cfg", "yolov4x-mish.cfg"])
def test_head_shapes_match_the_network(cfg: str) -> None:
    spec = load_spec(CFG_DIR / cfg, (512, 320))
    model = DarknetModel(spec).to("meta")
    outputs = model(torch.empty(1, 3, 320, 512, device="meta"))
    assert [tuple(o.shape[1:]) for o in outputs] == head_shapes(spec)


def test_build_output_is_deterministic_and_relocatable(tmp_path: Path) -> None:
    repository_plan = plan()
    first, second = tmp_path / "a", tmp_path / "b"
    for output in (first, second):
        write_repository(repository_plan.spec, repository_plan.darknet, repository_plan.cfg_bytes, output)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        content = (first / relative).read_bytes()
        assert content == (second / relative).read_bytes()
        assert str(tmp_path).encode() not in content and str(ROOT).encode() not in content


def test_write_replaces_only_its_own_models(tmp_path: Path) -> None:
    repository_plan = plan()
    stale = tmp_path / "yolov4_tiny_preprocess" / "1" / "stale.py"
    other = tmp_path / "other_model" / "config.pbtxt"
    for path in (stale, other):
        path.parent.mkdir(parents=True)
        path.write_text("x")
    write_repository(repository_plan.spec, repository_plan.darknet, repository_plan.cfg_bytes, tmp_path)
    assert not stale.exists() and other.read_text() == "x"


def test_cli_options() -> None:
    args = build_parser().parse_args(
        ["build", "--cfg", str(TINY), "--size", "512x320", "--instances", "preprocess=3", "--instances", "detector=2",
         "--max-batch-size", "16", "--max-pixels", "2e6", "--class-agnostic"]
    )  # fmt: skip
    options = build_options(args)
    assert options.size == (512, 320)
    assert options.instances == Instances(preprocess=3, detector=2)  # the others sized by serve
    spec = plan_repository(options).spec
    configs = model_configs(spec, plan_repository(options).darknet)
    sized = {name: Sized.from_parameters({k: v.string_value for k, v in c.parameters.items()}).sized
             for name, c in configs.items() if c.backend == "python"}  # fmt: skip
    assert sized == {
        "yolov4_tiny": ("instances", "lone_threads", "batch_threads"),
        "yolov4_tiny_detector": ("lone_threads", "batch_threads"),  # its instances were given
        "yolov4_tiny_postprocess": ("instances",),
    }
    assert options.batching == Batching(max_batch_size=16, opt_batch_size=8, max_queue_delay_us=0)
    assert options.fused is None and plan_repository(options).spec.fused  # the cpu default
    fused = ["build", "--cfg", str(TINY), "--instances", "fused=3"]
    assert build_options(build_parser().parse_args(fused)).instances.fused == 3
    assert not plan_repository(build_options(build_parser().parse_args([*fused, "--no-fused"]))).spec.fused
    assert options.decoding.max_pixels == 2_000_000 and options.class_agnostic
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "--cfg", str(TINY), "--instances", "gpu=2"])


def test_invalid_combinations_are_rejected() -> None:
    with pytest.raises(ValueError, match="--precision int8 needs --calibration-images DIR"):
        plan(precision="int8")
    with pytest.raises(ValueError, match="tensorrt precision 'int8': not built: Torch-TensorRT's dynamo frontend"):
        plan("tensorrt", precision="int8")
    calibration = Int8Options(ROOT / "calibration")
    for target, precision in (("cpu", "fp32"), ("cpu", "bf16"), ("tensorrt", "fp16")):
        with pytest.raises(ValueError, match=f"--calibration-images builds an INT8 IR.*not {target} {precision}"):
            plan(target, precision=precision, int8=calibration)
    with pytest.raises(ValueError, match="on_gate_failure"):
        Int8Options(ROOT / "calibration", on_gate_failure="ignore")
    with pytest.raises(ValueError, match="--validation checks an INT8 build"):
        build_options(build_parser().parse_args(["build", "--cfg", str(TINY), "--validation", "val.json"]))
    with pytest.raises(ValueError, match="opt_batch_size"):
        Batching(max_batch_size=4, opt_batch_size=8)
    assert model_base_name("models/darknet/yolov4-tiny.cfg") == "yolov4_tiny"
    assert model_base_name("3d.cfg") == "m_3d"


def test_queues_are_bounded_in_images_and_shed_before_the_sdk_gives_up() -> None:
    """One queue holds at most max_queue_images images however the requests are batched; the three queues of an
    ensemble together time out within the SDK's default deadline."""
    from yolo_client.options import DEFAULT_TIMEOUT

    for target, batching in TARGET_BATCHING.items():
        assert batching.max_queue_size * batching.max_batch_size <= batching.max_queue_images, target
        assert batching.max_queue_size >= 1
        assert 3 * batching.queue_timeout_us / 1e6 <= DEFAULT_TIMEOUT, target
    assert Batching(max_batch_size=8, max_queue_images=100).max_queue_size == 12
    with pytest.raises(ValueError, match="at least one full batch"):
        Batching(max_batch_size=8, max_queue_images=7)
    args = build_parser().parse_args(
        ["build", "--cfg", str(TINY), "--max-queue-images", "64", "--queue-timeout-us", "500000"]
    )
    options = build_options(args)
    assert (options.batching.max_queue_size, options.batching.queue_timeout_us) == (8, 500_000)


def test_build_help_and_repository_planning_import_no_torch() -> None:
    """The build's configs are pure: only exporting the detector needs torch (lazily imported there)."""
    script = f"""
import contextlib, io, sys
from yolo_server.cli import build_options, build_parser
from yolo_server.repository.plan import plan_repository
from yolo_server.repository.writer import repository_files
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    build_parser().parse_args(["build", "--help"])
plan = plan_repository(build_options(build_parser().parse_args(["build", "--cfg", {str(TINY)!r}])))
assert repository_files(plan.spec, plan.darknet, plan.cfg_bytes)
print(sorted(name for name in ("torch", "openvino", "cv2") if name in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split("\n")[-2] == "[]", done.stdout + done.stderr
