"""The CPUs serve may use (affinity, cgroup v1/v2 quotas on injected trees) and the settings staged from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tests.helpers.paths import ROOT
from tests.helpers.small_repository import configs_only
from yolo_client.contract import SERVING_PARAMETER
from yolo_server.launcher.sizing import CpuBudget, cgroup_quota, cpu_budget, sized_settings
from yolo_server.launcher.staging import plan_serving, read_config
from yolo_server.launcher.tuned import TUNING_FILE, ModelTuning, Tuning
from yolo_server.precision import CpuFeatures

pytestmark = pytest.mark.timeout(60)

AVX2 = CpuFeatures(frozenset({"avx", "avx2", "fma"}))
COMMITTED = ROOT / "model_repository"


def cgroup_tree(tmp_path: Path, membership: str, files: dict[str, str]) -> Path:
    """A fake root holding ``proc/self/cgroup`` and the cgroup files given (paths under sys/fs/cgroup)."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(membership)
    for relative, text in files.items():
        path = tmp_path / "sys/fs/cgroup" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_v2_quota_of_the_process_cgroup(tmp_path: Path) -> None:
    root = cgroup_tree(tmp_path, "0::/kubepods/pod1/c1\n", {"kubepods/pod1/c1/cpu.max": "400000 100000\n"})
    assert cgroup_quota(root) == 4.0
    assert cpu_budget(root, affinity=lambda: set(range(64))) == CpuBudget(64, 4.0)
    assert cpu_budget(root, affinity=lambda: set(range(64))).cpus == 4


def test_v2_a_parent_limit_binds_and_max_is_none(tmp_path: Path) -> None:
    root = cgroup_tree(
        tmp_path,
        "0::/a/b\n",
        {"a/cpu.max": "150000 100000\n", "a/b/cpu.max": "max 100000\n", "cpu.max": "max 100000\n"},
    )
    assert cgroup_quota(root) == 1.5
    unlimited = cgroup_tree(tmp_path / "u", "0::/a\n", {"a/cpu.max": "max 100000\n"})
    assert cgroup_quota(unlimited) is None


def test_v2_inside_a_container_namespace(tmp_path: Path) -> None:
    """The container sees its own cgroup as "/", and the host path from outside does not exist under the mount."""
    root = cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "200000 100000\n"})
    assert cgroup_quota(root) == 2.0
    moved = cgroup_tree(tmp_path / "m", "0::/host/path/not/mounted\n", {"cpu.max": "300000 100000\n"})
    assert cgroup_quota(moved) == 3.0


def test_v1_cfs_quota(tmp_path: Path) -> None:
    membership = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
    root = cgroup_tree(
        tmp_path,
        membership,
        {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_quota(root) == 2.5
    unlimited = cgroup_tree(
        tmp_path / "u",
        membership,
        {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"},
    )
    assert cgroup_quota(unlimited) is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None
    assert cgroup_quota(cgroup_tree(tmp_path / "e", "0::/x\n", {})) is None


@pytest.mark.parametrize(
    ("affinity", "quota", "cpus"),
    [(64, None, 64), (64, 4.0, 4), (2, 8.0, 2), (8, 2.5, 2), (8, 0.5, 1), (1, None, 1), (4, 4.0, 4)],
)
def test_cpus_are_the_smaller_of_affinity_and_the_quota_rounded_down(
    affinity: int, quota: float | None, cpus: int
) -> None:
    assert CpuBudget(affinity, quota).cpus == cpus


def test_the_rule_on_one_two_and_sixteen_cpus() -> None:
    assert sized_settings("images", python=True, cpus=2) == {"instances": 3, "lone_threads": 2, "batch_threads": 1}
    assert sized_settings("images", python=True, cpus=1) == {"instances": 2, "lone_threads": 1, "batch_threads": 1}
    assert sized_settings("preprocess", python=True, cpus=16) == {"instances": 16}
    assert sized_settings("detector", python=True, cpus=16) == {"instances": 1, "lone_threads": 16, "batch_threads": 16}
    assert sized_settings("postprocess", python=True, cpus=16) == {"instances": 4}
    assert sized_settings("postprocess", python=True, cpus=1) == {"instances": 1}
    assert sized_settings("detector", python=False, cpus=16) == {}  # the tensorrt detector: on the GPU
    assert sized_settings("images", python=False, cpus=16) == {}  # the bytes ensemble


def staged(plan, name: str, tmp_path: Path) -> pb.ModelConfig:
    directory = plan.stage(tmp_path / "staged")
    return read_config(directory / name / "config.pbtxt")


def test_the_committed_repository_is_sized_at_serve(tmp_path: Path) -> None:
    plan = plan_serving(COMMITTED, CpuBudget(4), cpu=AVX2)
    fused = staged(plan, "yolov4_tiny_shapes", tmp_path)
    version = tmp_path / "staged/yolov4_tiny_shapes/1"
    assert version.is_symlink() and version.resolve() == (COMMITTED / "yolov4_tiny_shapes/1").resolve()
    assert fused.instance_group[0].count == 5  # one per CPU and a spare
    assert fused.parameters["lone_threads"].string_value == "4"
    assert fused.parameters["batch_threads"].string_value == "1"
    serving = json.loads(fused.parameters[SERVING_PARAMETER].string_value)
    assert serving["instances"] == {"value": 5, "source": "sized"}
    assert plan.lines()[0].startswith("sized to 4 CPUs (affinity 4, cgroup quota none); tuning: none")
    assert any(re.fullmatch(r"  yolov4_tiny_shapes +instances 5 \(sized\), .*", line) for line in plan.lines())


def resolved(plan, name: str) -> dict[str, tuple[object, str]]:
    return {knob: (s.value, s.source) for knob, s in {m.name: m.settings for m in plan.models}[name].items()}


def test_a_count_the_user_gave_wins(tmp_path: Path) -> None:
    from yolo_server.repository.spec import Instances

    repository = configs_only(tmp_path / "repo", instances=Instances(fused=3, postprocess=2), detector_threads=5)
    plan = plan_serving(repository, CpuBudget(8), cpu=AVX2)
    fused = resolved(plan, "yolov4_tiny")
    assert fused["instances"] == (3, "build") and fused["lone_threads"] == (5, "build")
    assert fused["batch_threads"] == (1, "sized")
    assert resolved(plan, "yolov4_tiny_postprocess") == {"instances": (2, "build")}
    assert resolved(plan, "yolov4_tiny_detector") == {
        "instances": (1, "sized"), "lone_threads": (5, "build"), "batch_threads": (5, "build")
    }  # fmt: skip
    assert resolved(plan, "yolov4_tiny_tensor") == {}


def test_the_layouts_and_targets_are_sized_by_role(tmp_path: Path) -> None:
    ensemble = plan_serving(configs_only(tmp_path / "ensemble", fused=False), CpuBudget(8), cpu=AVX2)
    assert resolved(ensemble, "yolov4_tiny_preprocess") == {"instances": (8, "sized")}
    assert resolved(ensemble, "yolov4_tiny_detector")["lone_threads"] == (8, "sized")
    assert resolved(ensemble, "yolov4_tiny") == {}  # the bytes ensemble
    gpu = plan_serving(configs_only(tmp_path / "gpu", target="tensorrt"), CpuBudget(16), cpu=AVX2)
    assert resolved(gpu, "yolov4_tiny_preprocess") == {"instances": (16, "sized")}
    assert resolved(gpu, "yolov4_tiny_postprocess") == {"instances": (4, "sized")}
    assert resolved(gpu, "yolov4_tiny_detector") == {"instances": (1, "build")}  # one per GPU, not CPU-sized


def test_tuning_wins_where_measured_on_this_machine(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    for config in COMMITTED.glob("*/config.pbtxt"):
        (repository / config.parent.name).mkdir()
        (repository / config.parent.name / "config.pbtxt").write_text(config.read_text())
    tuned = ModelTuning(
        instances=3, batch_threads=2, max_batch_size=4, preferred_batch_sizes=(4,), max_queue_delay_us=500
    )
    Tuning(2, AVX2.isa(), {"yolov4_tiny_shapes": tuned}).write(repository / TUNING_FILE)

    plan = plan_serving(repository, CpuBudget(2), cpu=AVX2)
    config = staged(plan, "yolov4_tiny_shapes", tmp_path)
    assert config.instance_group[0].count == 3 and config.parameters["batch_threads"].string_value == "2"
    assert config.max_batch_size == 4 and list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 512 // 4  # the same images queued
    assert config.parameters["lone_threads"].string_value == "2"  # not tuned: sized

    elsewhere = plan_serving(repository, CpuBudget(16), cpu=AVX2)
    assert "not applied: measured on 2 CPUs" in elsewhere.lines()[0]
    assert {m.name: m.settings for m in elsewhere.models}["yolov4_tiny_shapes"]["instances"].value == 17
    forced = plan_serving(repository, CpuBudget(16), tuning=repository / TUNING_FILE, cpu=AVX2)
    assert {m.name: m.settings for m in forced.models}["yolov4_tiny_shapes"]["instances"].value == 3


def test_a_tuning_file_for_another_repository_is_refused(tmp_path: Path) -> None:
    path = tmp_path / TUNING_FILE
    Tuning(2, AVX2.isa(), {"other_model": ModelTuning(instances=2)}).write(path)
    with pytest.raises(ValueError, match="other_model"):
        plan_serving(COMMITTED, CpuBudget(2), tuning=path, cpu=AVX2)
    path.write_text('{"measured_on": {"cpus": 2}, "models": {}}')
    with pytest.raises(ValueError, match="not a tuning file"):
        Tuning.read(path)


def test_staged_configs_parse_as_triton_reads_them(tmp_path: Path) -> None:
    plan = plan_serving(COMMITTED, CpuBudget(2), cpu=AVX2)
    directory = plan.stage(tmp_path / "staged")
    for model in plan.models:
        text = (directory / model.name / "config.pbtxt").read_text()
        assert text.startswith("# Staged by yolo-server serve")
        text_format.Parse(text, pb.ModelConfig())


def test_a_tuned_precision_the_repository_cannot_serve_is_refused_before_serving(tmp_path: Path) -> None:
    repository = configs_only(tmp_path / "repo")  # no INT8 IR built
    path = tmp_path / TUNING_FILE
    Tuning(2, AVX2.isa(), {"yolov4_tiny": ModelTuning(precision="int8")}).write(path)
    with pytest.raises(ValueError, match="no INT8 IR"):
        plan_serving(repository, CpuBudget(2), tuning=path, cpu=AVX2)
    Tuning(2, AVX2.isa(), {"yolov4_tiny": ModelTuning(max_batch_size=2, preferred_batch_sizes=(4,))}).write(path)
    with pytest.raises(ValueError, match="above max_batch_size 2"):
        plan_serving(repository, CpuBudget(2), tuning=path, cpu=AVX2)
