"""The Grafana provisioning and the generated dashboard (docker/grafana/)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import ROOT

GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "yolo-triton.json"
RECORDING = ROOT / "docker" / "prometheus" / "rules" / "yolo_recording.rules.yml"
# Grafana's own variables, replaced by what Grafana would put there before PromQL sees them
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "30m"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def exprs() -> list[tuple[str, str]]:
    out = []
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def provisioned_datasource() -> dict:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = doc["datasources"]
    return ds


def test_every_panel_and_target_names_the_provisioned_datasource() -> None:
    ds = provisioned_datasource()
    expected = {"type": ds["type"], "uid": ds["uid"]}
    board = dashboard()
    assert board["panels"], "no panels"
    for panel in board["panels"]:
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
            assert target["expr"].strip(), panel["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_expr_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run `make system-deps` (Debian package prometheus)")
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": expr} for i, (_, expr) in enumerate(exprs())]
    assert not any("$" in r["expr"] for r in rules), "an unknown Grafana variable is left in an expr"
    path = tmp_path / "dashboard_exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_expr(tmp_path: Path) -> None:
    """The check above would catch a bad panel query."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run `make system-deps` (Debian package prometheus)")
    path = tmp_path / "bad.rules.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "d",
                        "rules": [{"record": "dashboard:bad", "expr": "sum by (model (rate(nv_inference_count[1m]))"}],
                    }
                ]
            }
        )
    )
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_recorded_series_the_dashboard_reads_exist() -> None:
    recorded = {r["record"] for g in yaml.safe_load(RECORDING.read_text())["groups"] for r in g["rules"]}
    for title, expr in exprs():
        for name in re.findall(r"\b([a-z_]+:[a-z0-9_:]+)", re.sub(r'"[^"]*"', '""', expr)):
            assert name in recorded, f"{title}: {name} is not a recording rule"


def test_required_panels_and_target_lines() -> None:
    titles = {p["title"]: p for p in dashboard()["panels"]}

    def panel(word: str) -> dict:
        (found,) = [p for t, p in titles.items() if word.lower() in t.lower()]
        return found

    def exprs_of(p: dict) -> str:
        return " ".join(t["expr"] for t in p["targets"])

    assert "yolo:slo_target_fps" in exprs_of(panel("FPS"))
    assert "yolo:slo_latency_budget_us" in exprs_of(panel("latency quantiles"))
    assert "queue" in exprs_of(panel("Queue vs compute")) and "compute_infer" in exprs_of(panel("Queue vs compute"))
    assert "batch_size" in exprs_of(panel("batch size"))
    breakdown = exprs_of(panel("breakdown"))
    assert all(f"yolo_{s}_duration_seconds" in breakdown for s in ("preprocess", "detector", "postprocess"))
    failures = exprs_of(panel("Failures by reason"))
    assert "nv_inference_request_failure" in failures and "yolo_rejected_inputs" in failures
    assert "triton_instances" in exprs_of(panel("instances"))
    fps = panel("FPS")
    assert {s["value"] for s in fps["fieldConfig"]["defaults"]["thresholds"]["steps"]} == {None, 65.0}


def test_dashboard_provider_points_at_the_mounted_folder() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "yolo.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert any(
        v.startswith("./grafana/dashboards:") and v.split(":")[1] == provider["options"]["path"] for v in volumes
    ), volumes
