"""The supervisor's decisions on a fake /proc and a fake canary; the access flags handed to tritonserver."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.darknet_files import DEMO_CFG
from tests.helpers.paths import ROOT
from yolo_server.cli import build_parser, serve_options
from yolo_server.launcher.access import ADMIN_KEY_HEADER, RESTRICTED_APIS, Access, TlsFiles, read_admin_key
from yolo_server.launcher.canary import CanaryKind, CanaryResult, image_models
from yolo_server.launcher.front_process import front_config
from yolo_server.launcher.installation import TritonInstallation
from yolo_server.launcher.options import ServeOptions
from yolo_server.launcher.process import TritonServer
from yolo_server.launcher.supervise import STUB_NAME, Supervision, Supervisor, stub_fault, stub_processes

TRITON = 4242


def fake_proc(root: Path, processes: dict[int, tuple[str, int, str]]) -> Path:
    """``{pid: (argv0, ppid, state)}`` as /proc/PID/stat and cmdline files."""
    for pid, (argv0, ppid, state) in processes.items():
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "stat").write_text(f"{pid} (weird) name) {state} {ppid} 1 1 0\n")
        (root / str(pid) / "cmdline").write_bytes(argv0.encode() + b"\0/models/x/1/model.py\0")
    (root / "self").mkdir(exist_ok=True)
    return root


def stub(state: str = "S", ppid: int = TRITON) -> tuple[str, int, str]:
    return (f"/tmp/b/backends/python/{STUB_NAME}", ppid, state)


def test_stub_processes_are_the_children_of_tritonserver_with_the_stub_binary(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {10: stub(), 11: stub("T"), 12: stub(ppid=1), 13: ("/usr/bin/python3", TRITON, "S"),
                                14: ("", TRITON, "Z")})  # fmt: skip
    assert stub_processes(TRITON, proc) == {10: "S", 11: "T", 14: "Z"}  # a zombie has no cmdline left


def test_stub_fault_names_the_stub_and_what_happened() -> None:
    assert stub_fault([1, 2], {1: "S", 2: "R"}) is None
    assert stub_fault([1, 2], {1: "S"}) == "Python-backend stub 2 is gone"
    assert stub_fault([1, 2], {1: "Z", 2: "S"}) == "Python-backend stub 1 is a zombie (it died)"
    assert stub_fault([1], {1: "T"}) == "Python-backend stub 1 is stopped (SIGSTOP)"
    assert stub_fault([1], {1: "D"}) is None  # uninterruptible I/O wait is transient


class FakeCanary:
    def __init__(self, kinds: list[CanaryKind]) -> None:
        self.kinds = kinds
        self.calls: list[tuple[str, str, float]] = []

    def __call__(self, url: str, model: str, timeout: float) -> CanaryResult:
        self.calls.append((url, model, timeout))
        return CanaryResult(self.kinds.pop(0), f"{model}: fake", 0.01)


def test_the_canary_targets_the_image_entry_points_of_either_layout(tmp_path: Path) -> None:
    """The fused cpu model (a Python model) and the bytes ensemble take images; a preprocess step is no target."""
    from yolo_server.repository.plan import BuildOptions, plan_repository
    from yolo_server.repository.writer import write_repository

    assert image_models(ROOT / "model_repository") == ["yolov4_tiny_shapes"]  # the committed, fused repository
    for fused, name in ((True, "fused"), (False, "ensemble")):
        plan = plan_repository(BuildOptions(cfg=DEMO_CFG, fused=fused, name=name))
        write_repository(plan.spec, plan.darknet, plan.cfg_bytes, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ensemble", "ensemble_detector", "ensemble_postprocess", "ensemble_preprocess", "ensemble_tensor",
        "fused", "fused_detector", "fused_postprocess", "fused_tensor",
    ]  # fmt: skip
    assert image_models(tmp_path) == ["ensemble", "fused"]


def test_canary_failures_in_a_row_are_a_fault_busy_is_not(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {10: stub()})
    now = [0.0]
    canary = FakeCanary(["failed", "ok", "busy", "failed", "busy", "failed"])
    supervisor = Supervisor(TRITON, "127.0.0.1:8000", ["m"], Supervision(1.0, 5.0, 3.0, canary_failures=2),
                            canary=canary, clock=lambda: now[0], proc=proc)  # fmt: skip
    assert supervisor.stubs == (10,)
    verdicts = []
    for step in range(1, 7):
        now[0] = step * 5.0 - 1.0  # between canaries only the stubs are looked at
        assert supervisor.check() is None and len(canary.calls) == step - 1
        now[0] = step * 5.0
        verdicts.append(supervisor.check())
    assert verdicts[:5] == [None] * 5  # failed, ok (resets), busy, failed, busy (does not reset)
    assert verdicts[5] == "canary failed 2 times in a row, last: m: fake"
    assert canary.calls[0] == ("127.0.0.1:8000", "m", 3.0)


def test_a_dead_stub_is_a_fault_before_any_canary(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {10: stub(), 11: stub()})
    canary = FakeCanary([])
    supervisor = Supervisor(TRITON, "h:1", ["m"], Supervision(), canary=canary, clock=lambda: 0.0, proc=proc)
    (proc / "11" / "stat").write_text(f"11 (triton_python_b) Z {TRITON} 1 1\n")
    assert supervisor.check() == "Python-backend stub 11 is a zombie (it died)" and not canary.calls


def test_admin_apis_take_a_key_and_tls_binds_http_to_loopback(tmp_path: Path) -> None:
    """Without a front, tritonserver's own flags carry TLS, and its plaintext HTTP binds loopback."""
    key_file = tmp_path / "key"
    key_file.write_text("  k3y-0123456789abcdef\n")
    assert read_admin_key(key_file) == "k3y-0123456789abcdef"
    key_file.write_text("short")
    with pytest.raises(ValueError, match="16 to 256 characters"):
        read_admin_key(key_file)
    assert read_admin_key(None) != read_admin_key(None)  # random per run: nobody knows it

    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("PEM")
    install = TritonInstallation(Path("/bin/tritonserver"))
    restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_KEY_HEADER}=k3y-0123456789abcdef"
    assert RESTRICTED_APIS == ("model-repository", "shared-memory", "trace", "logging")

    plain = Access("k3y-0123456789abcdef")
    argv = TritonServer(ServeOptions(tmp_path, host="0.0.0.0", access=plain, front=False), install).command()
    assert f"--grpc-restricted-protocol={restricted}" in argv and f"--http-restricted-api={restricted}" in argv
    assert "--http-address=0.0.0.0" in argv and not any("ssl" in arg for arg in argv)

    mutual = Access("k3y-0123456789abcdef", TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"))
    server = TritonServer(ServeOptions(tmp_path, host="0.0.0.0", access=mutual, front=False), install)
    argv = server.command()
    assert "--http-address=127.0.0.1" in argv and "--grpc-address=0.0.0.0" in argv
    assert "--grpc-use-ssl-mutual=true" in argv and f"--grpc-root-cert={tmp_path / 'ca.pem'}" in argv
    assert (
        server.endpoints.http == f"127.0.0.1:{server.options.http_port}" and server.local_http == server.endpoints.http
    )
    one_way = TritonServer(
        ServeOptions(
            tmp_path, access=Access("k" * 16, TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem")), front=False
        ),
        install,
    )
    assert "--grpc-use-ssl=true" in one_way.command() and not any("mutual" in a for a in one_way.command())


def test_with_a_front_tritonserver_listens_on_loopback_and_tls_ends_at_the_front(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("PEM")
    install = TritonInstallation(Path("/bin/tritonserver"))
    tls = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    options = ServeOptions(tmp_path, host="0.0.0.0", access=Access("k" * 16, tls), max_request_bytes=8 << 20)
    server = TritonServer(options, install)
    argv = server.command()
    triton = server.triton_ports
    assert triton.host == "127.0.0.1" and options.grpc_port not in (triton.http, triton.grpc, triton.metrics)
    for flag in (f"--http-address={triton.host}", f"--grpc-address={triton.host}", f"--grpc-port={triton.grpc}",
                 f"--metrics-address={triton.host}", f"--metrics-port={triton.metrics}"):  # fmt: skip
        assert flag in argv
    assert not any("ssl" in arg for arg in argv)
    front = front_config(server)
    assert front.public.host == "0.0.0.0" and front.public.grpc == options.grpc_port and front.triton == triton
    assert front.tls == tls and front.http_host == "127.0.0.1" and front.max_request_bytes == 8 << 20
    assert (
        server.endpoints.grpc == f"0.0.0.0:{options.grpc_port}"
        and server.local_http == f"127.0.0.1:{options.http_port}"
    )


def test_serve_options_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("PEM")
    args = build_parser().parse_args(["serve", str(tmp_path), "--tls-cert", str(tmp_path / "cert.pem")])
    with pytest.raises(ValueError, match="both --tls-cert and --tls-key"):
        serve_options(args)
    args = build_parser().parse_args(["serve", str(tmp_path), "--tls-client-ca", str(tmp_path / "cert.pem")])
    with pytest.raises(ValueError, match="--tls-client-ca needs"):
        serve_options(args)
    args = build_parser().parse_args(["serve", str(tmp_path), "--tls-cert", "x.pem", "--tls-key", "y.pem"])
    with pytest.raises(ValueError, match="TLS certificate x.pem is not a file"):
        serve_options(args)
    options = serve_options(build_parser().parse_args(["serve", str(tmp_path), "--check-interval", "0"]))
    assert options.access is not None and options.access.tls is None and not options.supervision.enabled
    assert Supervision().enabled
