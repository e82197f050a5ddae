"""The Prometheus config, the generated rules and their promtool unit tests (docker/prometheus/).

promtool comes from Debian's prometheus package (`make system-deps`); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.monitoring import gen_monitoring, thresholds
from tests.helpers.paths import ROOT

DOCKER = ROOT / "docker"
PROM = DOCKER / "prometheus"
ALERTS = PROM / "rules" / "yolo_alerts.rules.yml"
RECORDING = PROM / "rules" / "yolo_recording.rules.yml"
RULE_TESTS = PROM / "tests" / "yolo_rules_test.yml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make system-deps` (Debian package prometheus)")
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_committed_files_equal_the_generator_output() -> None:
    for rel, text in gen_monitoring.render(thresholds.Thresholds()).items():
        assert (DOCKER / rel).read_text() == text, f"{rel} is stale: run python docker/gen_monitoring.py"


def test_generator_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert gen_monitoring.main(["--out", str(tmp_path)]) == 0
    assert gen_monitoring.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "prometheus/rules/yolo_alerts.rules.yml").write_text("groups: []\n")
    assert gen_monitoring.main(["--out", str(tmp_path), "--check"]) == 1


def test_prometheus_config_and_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "config", "prometheus.yml", cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS.relative_to(PROM)), cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert alerts == firing == silent
    assert {
        "YoloServedFpsBelowTarget",
        "YoloLatencyP99OverBudget",
        "YoloQueueTimeAboveComputeTime",
        "YoloRequestFailureRatioHigh",
    } <= alerts


def test_unit_tests_catch_an_alert_threshold_that_drifted(tmp_path: Path) -> None:
    """The promtool tests are not vacuous: an alert file with another FPS threshold fails them."""
    shutil.copytree(PROM / "rules", tmp_path / "rules")
    shutil.copytree(PROM / "tests", tmp_path / "tests")
    alerts = tmp_path / "rules" / "yolo_alerts.rules.yml"
    text = alerts.read_text()
    drifted = re.sub(r"(model:yolo_served_images:rate1m < )65\b", r"\g<1>20", text)
    assert drifted != text
    alerts.write_text(drifted)
    result = run_promtool("test", "rules", "tests/yolo_rules_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "YoloServedFpsBelowTarget" in result.stdout + result.stderr


def test_unit_tests_catch_a_selector_that_misses_the_fused_model(tmp_path: Path) -> None:
    """The network-model cases are not vacuous: the HPA's ratio over NAME_detector alone (the adapter rule of old,
    NaN on the fused layout) fails them."""
    shutil.copytree(PROM / "rules", tmp_path / "rules")
    shutil.copytree(PROM / "tests", tmp_path / "tests")
    recording = tmp_path / "rules" / "yolo_recording.rules.yml"
    doc = yaml.safe_load(recording.read_text())
    [rule] = [r for r in doc["groups"][0]["rules"] if r.get("record") == "instance:yolo_queue_compute_ratio:avg1m"]
    rule["expr"] = " / ".join(
        f'sum by (instance) (rate({counter}{{model=~".+(_detector)"}}[1m]))'
        for counter in ("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us")
    )
    recording.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_promtool("test", "rules", "tests/yolo_rules_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert 'instance="yolo-1:8002"} NaN' in result.stdout + result.stderr  # the fused pod without tensor traffic


def test_adapter_rule_is_the_recording_rules_ratio_per_pod() -> None:
    """The generated prometheus-adapter query is the dashboard's per-instance ratio with the adapter's fields in
    place of the grouping and the matchers: the HPA scales on what the dashboard draws."""
    assert "k8s/prometheus-adapter/config.yaml" in gen_monitoring.render(thresholds.Thresholds())
    [rule] = yaml.safe_load((DOCKER / "k8s/prometheus-adapter/config.yaml").read_text())["rules"]
    recording = {r["record"]: r["expr"] for g in yaml.safe_load(RECORDING.read_text())["groups"] for r in g["rules"]}
    query = rule["metricsQuery"]
    without_pods = query.replace("{<<.LabelMatchers>>,", "{").replace("{<<.LabelMatchers>>}", "")
    assert without_pods.replace("<<.GroupBy>>", "instance") == recording["instance:yolo_queue_compute_ratio:avg1m"]
    assert "<<" not in without_pods.replace("<<.GroupBy>>", "")


def test_thresholds_are_parameters(tmp_path: Path) -> None:
    """Other thresholds give consistent rules, constants and unit tests that promtool passes."""
    assert (
        gen_monitoring.main(
            [
                "--out",
                str(tmp_path),
                "--target-fps",
                "30",
                "--latency-budget-ms",
                "33.3",
                "--failure-ratio-max",
                "0.05",
                "--queue-compute-ratio-max",
                "0.5",
            ]
        )
        == 0
    )
    alerts = (tmp_path / "prometheus/rules/yolo_alerts.rules.yml").read_text()
    assert "< 30 and" in alerts and "> 33300" in alerts and "> 0.05" in alerts and "> 0.5" in alerts
    assert "65" not in alerts and "15400" not in alerts
    recording = (tmp_path / "prometheus/rules/yolo_recording.rules.yml").read_text()
    assert "vector(30)" in recording and "vector(33300)" in recording
    result = run_promtool("test", "rules", "tests/yolo_rules_test.yml", cwd=tmp_path / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_thresholds_are_the_project_slo() -> None:
    t = thresholds.Thresholds()
    assert t.target_fps == 65
    assert t.latency_budget_ms == pytest.approx(1000 / t.target_fps)  # one frame at the target rate
    recording = {r["record"]: r["expr"] for g in yaml.safe_load(RECORDING.read_text())["groups"] for r in g["rules"]}
    assert recording["yolo:slo_target_fps"] == "vector(65)"
    assert recording["yolo:slo_latency_budget_us"] == "vector(15385)"  # 15.385 ms, in whole microseconds
    assert "over the 15.4 ms frame budget" in ALERTS.read_text()


def test_latency_budget_follows_the_target_fps(tmp_path: Path) -> None:
    """Without --latency-budget-ms the budget is one frame at --target-fps, not the default rate's."""
    assert gen_monitoring.main(["--out", str(tmp_path), "--target-fps", "30"]) == 0
    recording = (tmp_path / "prometheus/rules/yolo_recording.rules.yml").read_text()
    alerts = (tmp_path / "prometheus/rules/yolo_alerts.rules.yml").read_text()
    assert "vector(33333)" in recording
    assert "> 33333" in alerts and "over the 33.3 ms frame budget" in alerts


def test_rules_use_triton_2_51_metric_names() -> None:
    """Every raw metric the rules read is one Triton 2.51 or the Python models export (docs/metrics.md)."""
    triton = {
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
        "nv_inference_request_summary_us",
        "nv_inference_queue_summary_us",
        "up",
    }
    documented = set(re.findall(r"`(yolo_[a-z_]+)`", (ROOT / "docs/metrics.md").read_text()))
    known = triton | documented
    used: set[str] = set()
    for path in (ALERTS, RECORDING):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expr = re.sub(r'"[^"]*"', '""', rule["expr"])
                used |= {
                    m
                    for m in re.findall(r"\b([a-z_]+)(?=[{\[\s)]|$)", expr)
                    if m.startswith(("nv_", "yolo_")) or m == "up"
                }
    base = {re.sub(r"_(bucket|sum|count)$", "", m) if m.startswith("yolo_") else m for m in used}
    assert base - known == set()
    assert {
        "nv_inference_count",
        "nv_inference_request_failure",
        "yolo_rejected_inputs_total",
        "yolo_postprocess_duration_seconds",
    } <= base
