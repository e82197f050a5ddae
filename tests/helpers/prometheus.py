"""A real Prometheus (Debian's binary) for tests, and prometheus-adapter's query as the adapter fills it in.

:func:`running_prometheus` runs the committed ``docker/prometheus/prometheus.yml`` changed only where a test must:
its scrape targets (static ones, with labels where a test plays Kubernetes' part), 1 s intervals and absolute
rule-file paths; :class:`PrometheusApi` reads it back over HTTP. :func:`adapter_query` is the ``metricsQuery`` of
``docker/k8s/prometheus-adapter/config.yaml`` filled in for some pods exactly as prometheus-adapter does
(``pkg/naming/metrics_query.go``: a Go template with ``<<`` ``>>`` delimiters; ``LabelMatchers`` is the namespace's
``=`` matcher then the pod label's, ``=`` for one pod and ``=~"a|b"`` for several, values Go-quoted; ``GroupBy`` the
pod label).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.paths import ROOT
from tests.helpers.serving import http_ok, stop_process, wait_until
from yolo_server.launcher.ports import free_ports

PROM_DIR = ROOT / "docker" / "prometheus"
ADAPTER_CONFIG = ROOT / "docker" / "k8s" / "prometheus-adapter" / "config.yaml"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Target:
    """A scrape target, ``host:port``, with the labels Prometheus adds to its series (static_configs' ``labels``)."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


def write_test_config(targets: Mapping[str, Sequence[Target]], workdir: Path) -> dict[str, Any]:
    """``workdir/prometheus.yml``: the committed config with ``targets`` per job (a job left out is dropped; each
    named must be the committed config's), 1 s intervals and absolute rule paths. Returns the config."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(PROM_DIR / pattern) for pattern in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(targets) <= set(jobs), f"{sorted(targets)} are not all jobs of prometheus.yml ({sorted(jobs)})"
    config["scrape_configs"] = [jobs[name] for name in targets]
    for name, job in zip(targets, config["scrape_configs"], strict=True):
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [
            {"targets": [target.address], **({"labels": dict(target.labels)} if target.labels else {})}
            for target in targets[name]
        ]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


class PrometheusApi:
    """Prometheus' HTTP API at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of ``expr``, now or at the Unix time ``at``."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        result: list[dict[str, Any]] = self.get("/api/v1/query", **params)["result"]
        return result

    def series(self, match: str) -> list[dict[str, str]]:
        """The label sets of the series ``match`` selects (what the adapter's ``seriesQuery`` discovers)."""
        found: list[dict[str, str]] = self.get("/api/v1/series", **{"match[]": match})
        return found

    def wait_value(self, expr: str, timeout_s: float = 45.0) -> float:
        """The first positive value of ``expr`` (a single series), polling until it has one."""
        values: list[float] = []

        def positive() -> bool:
            values[:] = [float(r["value"][1]) for r in self.query(expr)]
            return bool(values) and values[0] > 0

        wait_until(positive, timeout_s, f"{expr} to become positive", interval_s=1.0)
        return values[0]


@contextmanager
def running_prometheus(workdir: Path, targets: Mapping[str, Sequence[Target]]) -> Iterator[PrometheusApi]:
    """Prometheus on the committed config with ``targets`` (:func:`write_test_config`), on a free loopback port,
    its data and log in ``workdir``; stopped by pid when the block ends."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise AssertionError("prometheus not found: run `make system-deps` (Debian package prometheus)")
    write_test_config(targets, workdir)
    [port] = free_ports(1)
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    api = PrometheusApi(f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: http_ok(f"{api.url}/-/ready"), READY_TIMEOUT_S, "prometheus to be ready", process, log_path)
        yield api
    finally:
        stop_process(process, 20)


# -- prometheus-adapter -----------------------------------------------------------------------------------------
def adapter_rule(metric: str, config: Path = ADAPTER_CONFIG) -> dict[str, Any]:
    """The rule of the adapter's config that serves the custom metric ``metric`` (its ``name.as``)."""
    rules = [rule for rule in yaml.safe_load(config.read_text())["rules"] if rule["name"].get("as") == metric]
    assert len(rules) == 1, f"{len(rules)} rules of {config} serve {metric}"
    return rules[0]


def _resource_label(rule: dict[str, Any], resource: str) -> str:
    """The series label that names ``resource`` (``resources.overrides``: label -> {resource: ...})."""
    [label] = [name for name, over in rule["resources"]["overrides"].items() if over["resource"] == resource]
    return str(label)


def _go_quote(value: str) -> str:
    """Go's ``%q`` of a Kubernetes name (ASCII letters, digits, ``-`` and ``.``: JSON quotes it the same)."""
    assert re.fullmatch(r"[a-z0-9.|-]+", value), value
    return json.dumps(value)


def adapter_query(metric: str, namespace: str, pods: Sequence[str], config: Path = ADAPTER_CONFIG) -> str:
    """``metric``'s ``metricsQuery`` as prometheus-adapter sends it to Prometheus for ``pods`` of ``namespace``
    (``Build`` in ``pkg/naming/metrics_query.go``, for a pods metric without a metric selector)."""
    rule = adapter_rule(metric, config)
    namespace_label, pod_label = _resource_label(rule, "namespace"), _resource_label(rule, "pod")
    names = "|".join(pods)
    pod_matcher = f"{pod_label}={_go_quote(names)}" if len(pods) == 1 else f"{pod_label}=~{_go_quote(names)}"
    fields = {
        "LabelMatchers": f"{namespace_label}={_go_quote(namespace)},{pod_matcher}",
        "GroupBy": pod_label,
    }

    def fill(action: re.Match[str]) -> str:
        name = re.fullmatch(r"\s*\.(\w+)\s*", action.group(1))
        assert name and name.group(1) in fields, f"template action <<{action.group(1)}>> is not a plain field"
        return fields[name.group(1)]

    return re.sub(r"<<(.*?)>>", fill, rule["metricsQuery"])
