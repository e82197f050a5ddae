"""Free TCP ports: for a front's tritonserver, and for tests and benchmarks that start their own servers.

Triton needs its ports fixed up front (port 0 is not allowed), so callers pick free ones first.

Example:
    >>> http_port, grpc_port, metrics_port = free_ports(3)
"""

from __future__ import annotations

import socket
from collections.abc import Collection


def free_ports(
    count: int, host: str = "127.0.0.1", exclude: Collection[int] = (), kind: int = socket.SOCK_STREAM
) -> list[int]:
    """``count`` distinct free ports on ``host``, TCP (``kind``: ``socket.SOCK_DGRAM`` for UDP), none of
    ``exclude`` (held open together so they differ).

    ``exclude``: ports promised elsewhere but not bound yet, which the kernel may hand out again (the public ports
    of a server whose front has not started: its tritonserver's own ports must differ from them).
    """
    while True:
        sockets: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, kind)
                sock.bind((host, 0))
                sockets.append(sock)
            ports = [sock.getsockname()[1] for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
        if not set(ports) & set(exclude):
            return ports
