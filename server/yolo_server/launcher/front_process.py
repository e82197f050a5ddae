"""The front's process: nginx before one tritonserver, from its config to its exit.

:mod:`.front` says what the front is (its ports, its request cap, its nginx.conf); :class:`Front` runs it: it
writes the config into a work directory of its own, starts nginx, tells when requests pass through it to a ready
Triton, and why it is gone if it dies. :class:`~yolo_server.launcher.process.TritonServer` knows nothing of it;
``serve`` (:class:`~yolo_server.launcher.launch.Serving`) starts the front first and asks it to quit first.

Example:
    >>> server = TritonServer(ServeOptions(Path("model_repository"), grpc_port=8001))
    >>> front = Front.before(server)  # None with --no-front
    >>> front.start()
    >>> server.start()
    >>> server.wait_ready(fault=front.fault)  # tritonserver ready on its loopback ports
    >>> front.wait_ready(FRONT_READY_TIMEOUT_S, behind=server.fault)  # and through the front
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from yolo_server.launcher.canary import server_ready
from yolo_server.launcher.front import FrontConfig, find_nginx, largest_request, nginx_conf, reachable
from yolo_server.launcher.installation import TritonError, die_with_parent
from yolo_server.launcher.process import TritonServer, workdir_prefix

# once tritonserver answers ready on loopback, nginx passes that on at its first request: this only bounds a front
# that listens but cannot reach Triton
FRONT_READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0  # a graceful quit waits for the answers in flight, which Triton's drain has given by then


def front_config(server: TritonServer) -> FrontConfig:
    """What the front of ``server`` listens on and caps: the options' ports (tritonserver's own are free loopback
    ones), and the largest request the staged models accept unless the options give a cap."""
    options = server.options
    configs = server.plan.staged_configs.values()
    cap = options.max_request_bytes or largest_request(configs, str(options.repository))
    return FrontConfig(server.public, server.triton_ports, cap, server.access.tls, server.http_host)


class Front:
    """Owns the nginx process of one front: its config and work directory, start, readiness, faults, quit, kill.

    ``binary`` is found when the front is made (:func:`~yolo_server.launcher.front.find_nginx`), so that a missing
    nginx is said before anything starts.
    """

    def __init__(self, config: FrontConfig, binary: Path | None = None) -> None:
        self.config = config
        self.binary = binary or find_nginx()
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def before(cls, server: TritonServer) -> Front | None:
        """The front ``server``'s options ask for; None with ``front=False`` (``--no-front``)."""
        return cls(front_config(server)) if server.options.front else None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def local_http(self) -> str:
        """``host:port`` where this machine reaches the front's HTTP port (readiness and the canary go that way)."""
        return reachable(self.config.http_host or self.config.public.host, self.config.public.http)

    def argv(self, workdir: Path) -> list[str]:
        conf = workdir / "nginx.conf"
        # -e: the log nginx opens before it reads the config (the compiled-in /var/log/nginx may not be writable)
        return [str(self.binary), "-e", "stderr", "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]

    def start(self) -> None:
        """Write the config and start nginx in the foreground (its errors go to this process' stderr)."""
        if self._process is not None:
            raise TritonError(f"the nginx front already started (pid {self._process.pid})")
        # stop() removes it; the launcher's pid in the name tells whose it is after a crash
        self._workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix(os.getpid())))
        (self._workdir / "nginx.conf").write_text(nginx_conf(self.config, self._workdir))
        self._process = subprocess.Popen(
            self.argv(self._workdir), stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_parent
        )

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def fault(self) -> str | None:
        """Why the front is gone, or None while it runs (or before it starts)."""
        code = self.poll()
        return None if code is None else f"the nginx front (pid {self.pid}) exited with code {code}"

    def wait_ready(self, timeout_s: float, behind: Callable[[], str | None] = lambda: None) -> None:
        """Block until a readiness check through the front answers ready (what a client sees).

        Raises:
            TritonError: nginx exited, ``behind`` (what stands behind the front) gave a fault, or the timeout passed.
        """
        deadline = time.monotonic() + timeout_s
        while not server_ready(self.local_http, timeout_s=2.0):
            fault = self.fault()
            if fault is not None:
                raise TritonError(f"{fault} (its errors are above)")
            fault = behind()
            if fault is not None:
                raise TritonError(fault)
            if time.monotonic() > deadline:
                raise TritonError(f"the nginx front (pid {self.pid}) not ready at {self.local_http} after {timeout_s}s")
            time.sleep(0.5)

    def quit(self) -> None:
        """SIGQUIT: stop accepting, finish what is in flight, exit."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Quit gracefully within ``timeout_s``, else kill; remove the work directory."""
        code = None
        if self._process is not None:
            self.quit()
            try:
                code = self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                code = self.kill()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def kill(self) -> int | None:
        """SIGKILL the master and its workers (their process group)."""
        if self._process is None:
            return None
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self._process.wait(30)
