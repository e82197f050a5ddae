"""docker/compose.yaml run for real by Debian's docker-compose 1.29, with the tests' override for host networking.

This engine runs without a bridge (``dockerd --bridge=none``), so every container uses the host's network and the
traffic stays on loopback. The override changes only what that needs, and nothing else of a service:

* each service: ``network_mode: host``, without ``ports`` and ``networks`` (which host networking refuses);
* servers: HOST=127.0.0.1 and free ports (``HTTP_PORT`` ... of docker/entrypoint.sh), one set per server;
* the balancer: docker/nginx/nginx.conf with its upstreams and listen ports on those loopback ports, as
  tests/integration/test_loadbalancer.py renders it, and its health check on its port;
* services given commands (locust's headless run) take them instead of compose's.

Compose 1.29 merges override files but cannot remove keys, so the override is applied to the loaded file and the
result written beside the test's files; relative paths still resolve against docker/ (``--project-directory``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.docker_engine import COMPOSE_FILE
from tests.helpers.nginx_balancer import render_nginx_conf
from yolo_server.launcher.ports import free_ports

NGINX_CONF = COMPOSE_FILE.parent / "nginx" / "nginx.conf"


@dataclass(frozen=True)
class ServerPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> ServerPorts:
        return cls(*free_ports(3))

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def environment(self) -> dict[str, str]:
        return {
            "HOST": "127.0.0.1",
            "HTTP_PORT": str(self.http),
            "GRPC_PORT": str(self.grpc),
            "METRICS_PORT": str(self.metrics),
        }


@dataclass(frozen=True)
class HostNetworkOverride:
    """What the tests change of docker/compose.yaml (module docstring)."""

    servers: Mapping[str, ServerPorts]
    environment: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    commands: Mapping[str, Sequence[str]] = field(default_factory=dict)
    volumes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    balancer: tuple[str, ServerPorts] | None = None  # (service, its listen ports: http, grpc)

    def apply(self, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
        for name, service in spec["services"].items():
            service.pop("ports", None)
            service.pop("networks", None)
            service["network_mode"] = "host"
            environment = dict(service.get("environment") or {})
            if name in self.servers:
                environment.update(self.servers[name].environment())
            environment.update(self.environment.get(name, {}))
            if environment:
                service["environment"] = environment
            if name in self.commands:
                service["command"] = list(self.commands[name])
            if name in self.volumes:
                service["volumes"] = [*service.get("volumes", []), *self.volumes[name]]
        if self.balancer is not None:
            self._balance(spec["services"][self.balancer[0]], self.balancer[1], workdir)
        return spec

    def _balance(self, service: dict[str, Any], listen: ServerPorts, workdir: Path) -> None:
        conf = workdir / "nginx.conf"
        upstreams = list(self.servers.values())
        conf.write_text(
            render_nginx_conf(
                NGINX_CONF.read_text(),
                [f"127.0.0.1:{p.grpc}" for p in upstreams],
                [f"127.0.0.1:{p.http}" for p in upstreams],
                listen.grpc,
                listen.http,
            )
        )
        service["volumes"] = [f"{conf}:/etc/nginx/nginx.conf:ro"]
        service["healthcheck"]["test"] = [
            part.replace("127.0.0.1:8000", f"127.0.0.1:{listen.http}") for part in service["healthcheck"]["test"]
        ]


@dataclass(frozen=True)
class ComposeProject:
    """One compose project (its own volumes and containers) over the overridden file."""

    name: str
    file: Path

    @classmethod
    def write(cls, name: str, override: HostNetworkOverride, workdir: Path) -> ComposeProject:
        spec = override.apply(yaml.safe_load(COMPOSE_FILE.read_text()), workdir)
        path = workdir / "compose.host-network.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return cls(name, path)

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [
            "docker-compose", "--project-name", self.name, "--project-directory", str(COMPOSE_FILE.parent),
            "-f", str(self.file), *args,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
            )
        return done
