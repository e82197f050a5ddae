"""docker/compose.yaml: valid Compose (Debian's docker-compose 1.29 `config`, the Compose-spec JSON schema it
ships), and every command, port, path and name in it is one the project has.

``docker-compose`` is installed by ``make system-deps``; a missing one fails these tests (CI installs it).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.deploy import (
    ACCESS_VARIABLES,
    BUILD_VARIABLES,
    DOCKER,
    DOCKERFILES,
    PROBE_TIMEOUT_S,
    SERVE_VARIABLES,
    default_model_name,
    entrypoint_argv,
    health_probe,
    ignored,
    parse_yolo_server,
)
from tests.helpers.paths import ROOT

COMPOSE = DOCKER / "compose.yaml"
PROFILES = ("cpu", "lb", "prometheus", "grafana", "loadtest")
SERVERS = ("server", "server-replica", "server-cpu")


def docker_compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package) is missing: run `make system-deps`"
    profiles = [arg for name in PROFILES for arg in ("--profile", name)]
    return subprocess.run(
        [binary, "-f", str(COMPOSE), *profiles, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as docker-compose resolves it (all profiles, interpolation, merge keys, paths made absolute)."""
    result = docker_compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def volumes(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes in long syntax (docker-compose 1.29 prints the short ``SOURCE:TARGET[:MODE]``)."""
    result = []
    for volume in spec.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {
                "type": "bind" if source.startswith("/") else "volume",
                "source": source,
                "target": target,
                "read_only": mode == ["ro"],
            }
        result.append(volume)
    return result


def ports(spec: dict[str, Any]) -> list[tuple[str, int, int]]:
    """A service's published ports as (host address, published, target); docker-compose 1.29 prints
    ``ADDRESS:PUBLISHED:TARGET/PROTOCOL`` when an address is given, the long syntax otherwise."""
    result = []
    for port in spec.get("ports", []):
        if isinstance(port, str):
            match = re.fullmatch(r"(?:(.+):)?(\d+):(\d+)(?:/\w+)?", port)
            assert match, f"unsupported port {port!r}"
            result.append((match.group(1) or "", int(match.group(2)), int(match.group(3))))
        else:
            result.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
    return result


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, f"unsupported duration {duration!r}"
    return int(match.group(1) or 0) * 3600 + int(match.group(2) or 0) * 60 + int(match.group(3) or 0)


def test_compose_file_is_valid() -> None:
    result = docker_compose("config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_validator_rejects_what_the_spec_does_not_allow(tmp_path: Path) -> None:
    """The validator is not a YAML loader: an unknown condition and a misspelt key are refused."""
    bad = COMPOSE.read_text().replace("service_completed_successfully", "service_finished", 1)
    (tmp_path / "compose.yaml").write_text(bad.replace("shm_size: 2gb", "shm_sise: 2gb"))
    result = subprocess.run(
        ["docker-compose", "-f", str(tmp_path / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "service_finished" in result.stderr + result.stdout


def test_server_waits_for_one_build_and_reserves_a_gpu(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for server, builder, gpu in (
        ("server", "builder", True),
        ("server-replica", "builder", True),
        ("server-cpu", "builder-cpu", False),
    ):
        spec = services[server]
        assert spec["depends_on"] == {builder: {"condition": "service_completed_successfully"}}
        built = [v for v in volumes(services[builder]) if v["target"] == "/repository"]
        served = [v for v in volumes(spec) if v["target"] == "/repository"]
        assert built[0]["source"] == served[0]["source"] and served[0]["read_only"]
        devices = spec.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        assert bool(devices) == gpu and bool(services[builder].get("deploy")) == gpu
        if gpu:
            assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    assert services["builder"]["environment"]["TARGET"] == "tensorrt"
    assert services["builder-cpu"]["environment"]["TARGET"] == "cpu"
    assert services["server-cpu"]["profiles"] == ["cpu"] and "profiles" not in services["server"]


@pytest.mark.parametrize("service", ["builder", "builder-cpu"])
def test_builders_run_accepted_build_commands(resolved: dict[str, Any], service: str) -> None:
    spec = resolved["services"][service]
    env = {k: v or "" for k, v in spec["environment"].items()}
    args = parse_yolo_server(entrypoint_argv(spec["command"][0], env))
    assert args.command == "build" and args.target == env["TARGET"]
    assert set(BUILD_VARIABLES) <= set(env), "compose passes every build setting of docker/entrypoint.sh"
    user = {**env, "CFG": "darknet/yolov4.cfg", "WEIGHTS": "yolov4.weights"}
    args = parse_yolo_server(entrypoint_argv("build", user))
    mounted = [v for v in volumes(spec) if v["target"] == "/models"][0]
    assert Path(mounted["source"]) == ROOT / "models" and (ROOT / "models" / "darknet" / "yolov4.cfg").is_file()
    assert str(args.cfg) == "/models/darknet/yolov4.cfg"


@pytest.mark.parametrize("service", ["server", "server-replica", "server-cpu"])
def test_servers_publish_the_served_ports_and_stop_after_the_drain(resolved: dict[str, Any], service: str) -> None:
    spec = resolved["services"][service]
    env = {k: v or "" for k, v in spec.get("environment", {}).items()}
    args = parse_yolo_server(entrypoint_argv(spec["command"][0], env))
    assert args.command == "serve"
    assert set(SERVE_VARIABLES) <= set(env), "compose passes every serve setting of docker/entrypoint.sh"
    if service != "server-replica":  # replicas are reached through nginx and the `server` alias only
        assert sorted((published, target) for _, published, target in ports(spec)) == [
            (port, port) for port in (args.http_port, args.grpc_port, args.metrics_port)
        ]
    assert seconds(spec["stop_grace_period"]) > args.exit_timeout
    shm = re.fullmatch(r"(\d+)([kmg]?)b?", str(spec["shm_size"]).lower())
    unit = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    assert shm and int(shm.group(1)) * unit[shm.group(2)] >= 8 * args.shm_bytes  # room for 8 Python instances


def test_files_mounted_from_the_repository_exist(resolved: dict[str, Any]) -> None:
    for name, spec in resolved["services"].items():
        for volume in volumes(spec):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts {volume['source']}, which does not exist"
        build = spec.get("build")
        if build:
            assert (Path(build["context"]) / build["dockerfile"]).is_file()


def test_hostnames_in_the_mounted_configs_are_compose_services(resolved: dict[str, Any]) -> None:
    """nginx and Prometheus find replicas by the name `server`, Grafana finds `prometheus`, at the served ports."""
    services = resolved["services"]
    names = {
        n: {n, *(a for net in (s.get("networks") or {}).values() for a in ((net or {}).get("aliases") or []))}
        for n, s in services.items()
    }
    serving = {n for n, aliases in names.items() if "server" in aliases}
    assert serving == {"server", "server-replica", "server-cpu", "server-cpu-replica"}
    serve = parse_yolo_server(entrypoint_argv("serve"))
    nginx = (DOCKER / "nginx" / "nginx.conf").read_text()
    upstreams = re.findall(r"server (\S+):(\d+) ", nginx)
    assert upstreams == [("server", str(serve.grpc_port)), ("server", str(serve.http_port))]
    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            assert all(any(n in aliases for aliases in names.values()) for n in sd["names"]), sd
    triton = [sd for job in prometheus["scrape_configs"] if job["job_name"] == "triton" for sd in job["dns_sd_configs"]]
    assert triton[0]["names"] == ["server"] and triton[0]["port"] == serve.metrics_port
    worker_port = [
        sd["port"]
        for job in prometheus["scrape_configs"]
        if job["job_name"] == "yolo-client"
        for sd in job["dns_sd_configs"]
    ]
    command = services["locust-worker"]["command"]
    assert command[command.index("--client-metrics-port") + 1] == str(worker_port[0])
    datasource = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090" and "prometheus" in services


def test_locust_commands_use_options_that_exist(resolved: dict[str, Any]) -> None:
    # locust's own --help, in a process of its own: importing locust here would gevent-patch the test process
    usage = subprocess.run([sys.executable, "-m", "locust", "--help"], capture_output=True, text=True, check=True)
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", usage.stdout))
    tree = ast.parse((ROOT / "loadtest" / "locustfile.py").read_text())
    known |= {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "") == "add_argument"
        and isinstance(node.args[0], ast.Constant)
    }
    services = resolved["services"]
    for name in ("locust-master", "locust-worker"):
        options = [word for word in services[name]["command"] if word.startswith("--")]
        assert options and set(options) <= known, f"{name}: {set(options) - known}"
    master = services["locust-master"]["command"]
    serve = parse_yolo_server(entrypoint_argv("serve"))
    assert master[master.index("--host") + 1] == f"grpc://server:{serve.grpc_port}"
    assert master[master.index("--model") + 1] == default_model_name()
    assert (
        services["locust-worker"]["command"][services["locust-worker"]["command"].index("--master-host") + 1]
        == "locust-master"
    )


def test_lb_publishes_the_nginx_listen_ports(resolved: dict[str, Any]) -> None:
    nginx = (DOCKER / "nginx" / "nginx.conf").read_text()
    listens = sorted(int(port) for port in re.findall(r"listen (\d+)", nginx))
    assert sorted(target for _, _, target in ports(resolved["services"]["nginx"])) == listens
    bind = [v for v in volumes(resolved["services"]["nginx"]) if v["target"] == "/etc/nginx/nginx.conf"]
    assert Path(bind[0]["source"]) == DOCKER / "nginx" / "nginx.conf"


def test_every_port_is_published_on_loopback_unless_publish_address_says_otherwise(resolved: dict[str, Any]) -> None:
    published = {name: ports(spec) for name, spec in resolved["services"].items() if spec.get("ports")}
    assert {"server", "server-cpu", "nginx", "prometheus", "grafana", "locust-master"} <= set(published)
    assert {address for found in published.values() for address, _, _ in found} == {"127.0.0.1"}, published
    result = docker_compose("config", env={"PUBLISH_ADDRESS": "0.0.0.0"})
    assert result.returncode == 0, result.stderr
    everywhere = yaml.safe_load(result.stdout)["services"]
    for name, found in published.items():
        assert ports(everywhere[name]) == [("0.0.0.0", p, t) for _, p, t in found], name


@pytest.mark.parametrize("service", SERVERS)
def test_servers_are_healthy_when_the_probe_passes(resolved: dict[str, Any], service: str) -> None:
    spec = resolved["services"][service]
    check = spec["healthcheck"]
    assert check["test"][0] == "CMD" and check["test"][1:] == ["/opt/yolo/entrypoint.sh", "health"]
    env = {k: v or "" for k, v in spec.get("environment", {}).items()}
    probe = health_probe(env)
    serve = parse_yolo_server(entrypoint_argv(spec["command"][0], env))
    assert probe.repository == serve.repository and probe.url.endswith(f":{serve.http_port}")
    assert seconds(check["timeout"]) > probe.timeout == PROBE_TIMEOUT_S  # the probe answers before it is killed
    assert seconds(check["interval"]) == 10 and check["retries"] == 3 and seconds(check["start_period"]) == 300
    assert spec["restart"] == "unless-stopped"  # also after the launcher's exit 3 (a dead or hung backend stub)
    nginx = resolved["services"]["nginx"]["depends_on"]
    assert nginx["server"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("service", SERVERS)
def test_access_settings_reach_the_servers_from_the_mounted_secrets(service: str) -> None:
    """Unset: no access option (the admin APIs off, no TLS). Set: the CLI gets the files, from a read-only mount of
    docker/secrets/, which git ignores and no image's build context includes."""
    default = docker_compose("config")
    assert default.returncode == 0, default.stderr
    spec = yaml.safe_load(default.stdout)["services"][service]
    assert {k: spec["environment"][k] for k in ACCESS_VARIABLES} == dict.fromkeys(ACCESS_VARIABLES, "")
    env = {k: v or "" for k, v in spec["environment"].items()}
    args = parse_yolo_server(entrypoint_argv(spec["command"][0], env))
    assert (args.admin_key_file, args.tls_cert, args.tls_key, args.tls_client_ca) == (None, None, None, None)

    names = {"ADMIN_KEY_FILE": "admin-key", "TLS_CERT": "tls.crt", "TLS_KEY": "tls.key", "TLS_CLIENT_CA": "ca.crt"}
    [mount] = [v for v in volumes(spec) if v["target"] == "/run/secrets/yolo"]
    assert mount["read_only"] and Path(mount["source"]) == DOCKER / "secrets"
    configured = docker_compose("config", env={k: f"{mount['target']}/{name}" for k, name in names.items()})
    assert configured.returncode == 0, configured.stderr
    spec = yaml.safe_load(configured.stdout)["services"][service]
    args = parse_yolo_server(entrypoint_argv(spec["command"][0], {k: v or "" for k, v in spec["environment"].items()}))
    assert (args.admin_key_file, args.tls_cert, args.tls_key, args.tls_client_ca) == tuple(
        Path(mount["target"]) / names[k] for k in ACCESS_VARIABLES
    )
    gitignore = [
        line.strip()
        for line in (DOCKER / "secrets" / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not ignored(gitignore, ".gitignore")  # the folder itself is committed (compose mounts it)
    for name in names.values():
        assert ignored(gitignore, name), f"git would commit docker/secrets/{name}"
        secret = f"docker/secrets/{name}"
        for dockerfile in DOCKERFILES:
            patterns = [
                line.strip()
                for line in Path(f"{dockerfile}.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")
            ]
            assert ignored(patterns, secret), f"{dockerfile.name}'s build context would include {secret}"
