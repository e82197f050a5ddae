"""Free TCP ports for tests and benchmarks that start their own tritonservers.

Triton needs its ports fixed up front (port 0 is not allowed), so callers pick free ones first.

Example:
    >>> http_port, grpc_port, metrics_port = free_ports(3)
"""

from __future__ import annotations

import socket


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``host`` (held open together so they differ; tests, benchmarks)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
