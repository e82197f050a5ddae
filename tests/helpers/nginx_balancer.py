"""docker/nginx/nginx.conf, the compose balancer's config, rendered for tests: the very file, with only its upstream
``server`` lines and listen ports put on loopback ports (tests/integration/test_loadbalancer.py runs it with
Debian's nginx, tests/docker with the cpu server image's)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.paths import ROOT

NGINX_CONF = ROOT / "docker" / "nginx" / "nginx.conf"


def render_nginx_conf(
    text: str, grpc: list[str], http: list[str], grpc_listen: int, http_listen: int, workdir: Path | None = None
) -> str:
    """The compose config with test upstreams and ports; each substitution must match exactly once. ``workdir``:
    where its pid and temporary files go instead of /tmp (an nginx outside a container)."""

    def upstream(match: re.Match[str], targets: list[str]) -> str:
        indent, rest = match.group(1), match.group(2)
        return "\n".join(f"{indent}server {target} {rest}" for target in targets)

    subs = [
        (r"^(\s*)server server:8001 (.*)$", lambda m: upstream(m, grpc)),
        (r"^(\s*)server server:8000 (.*)$", lambda m: upstream(m, http)),
        (r"^(\s*)listen 8001 http2;$", lambda m: f"{m.group(1)}listen 127.0.0.1:{grpc_listen} http2;"),
        (r"^(\s*)listen 8000;$", lambda m: f"{m.group(1)}listen 127.0.0.1:{http_listen};"),
    ]
    for pattern, replacement in subs:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"{pattern} matched {count} times in {NGINX_CONF}"
    return text if workdir is None else re.sub(r"(pid|_temp_path) /tmp/", rf"\1 {workdir}/", text)
