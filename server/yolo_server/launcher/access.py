"""Who may use what: the admin APIs behind a key header (tritonserver flags), and gRPC TLS (server or mutual).

Inference, health, metadata, model config, statistics and metrics stay open; the repository, shared-memory,
trace and logging APIs answer only requests that carry the key: in the HTTP header
:data:`yolo_client.contract.ADMIN_KEY_HEADER`, or the gRPC metadata
:data:`~yolo_client.contract.GRPC_ADMIN_KEY_HEADER` (Triton prefixes restricted gRPC keys). Without a key file a
random key is made for the run and never shown, so those APIs are off: locked by default.

With TLS asked for, gRPC is the only endpoint off the host: HTTP has no TLS here, so it binds 127.0.0.1, where
the supervisor's canary and the container's health probe reach it. TLS ends at the front (:mod:`.front`), or at
Triton itself when it runs without one.

The key travels in tritonserver's argv, which other users of the same host can read (``/proc/PID/cmdline``);
Triton takes it no other way. In a container nobody else shares the process table.

Example:
    >>> access = Access(admin_key=read_admin_key(Path("/run/secrets/admin-key")), tls=TlsFiles(cert, key))
    >>> access.restricted_args()[0]
    '--grpc-restricted-protocol=model-repository,shared-memory,trace,logging:admin-key=...'
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from yolo_client.contract import ADMIN_KEY_HEADER, GRPC_ADMIN_KEY_HEADER
from yolo_server.flags import flag, nested

RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
LOOPBACK = "127.0.0.1"
_KEY = re.compile(r"[A-Za-z0-9._~+/\-]{16,256}")


def read_admin_key(path: Path | None) -> str:
    """The key in ``path`` (surrounding whitespace dropped), or a random one nobody is told when ``path`` is None."""
    if path is None:
        return secrets.token_urlsafe(32)
    key = Path(path).read_text(encoding="ascii", errors="replace").strip()
    if not _KEY.fullmatch(key):
        raise ValueError(
            f"admin key in {path}: use 16 to 256 characters from letters, digits and ._~+/- (e.g. openssl rand -hex 32)"
        )
    return key


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for gRPC TLS; ``client_ca`` set means mutual TLS (clients must present a certificate it signed)."""

    cert: Path = flag(
        "--tls-cert", "gRPC TLS: PEM server certificate (chain); HTTP then binds 127.0.0.1 (default: no TLS)",
        parse=Path,
    )  # fmt: skip
    key: Path = flag("--tls-key", "gRPC TLS: PEM private key of --tls-cert", parse=Path)
    client_ca: Path | None = flag(
        "--tls-client-ca", "mutual TLS: PEM CA that client certificates must chain to (default: no client "
        "certificates)", default=None, parse=Path,
    )  # fmt: skip

    def __post_init__(self) -> None:
        for what, path in (("certificate", self.cert), ("key", self.key), ("client CA", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS {what} {path} is not a file")

    @classmethod
    def from_options(cls, cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsFiles | None:
        """None without TLS options; a certificate without its key (or the reverse) is an error."""
        if cert is None and key is None:
            if client_ca is not None:
                raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if cert is None or key is None:
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        return cls(cert, key, client_ca)


@dataclass(frozen=True)
class Access:
    """The access settings of one server run."""

    admin_key: str = flag(
        "--admin-key-file", f"file holding the key that the {ADMIN_KEY_HEADER!r} HTTP header (gRPC: "
        f"{GRPC_ADMIN_KEY_HEADER!r}) must carry for the repository, shared-memory, trace and logging APIs (default: "
        "a random key nobody knows: those APIs are off)", parse=Path, convert=read_admin_key,
    )  # fmt: skip
    tls: TlsFiles | None = nested(None, make=lambda values, _: TlsFiles.from_options(**values))

    def restricted_args(self) -> list[str]:
        """tritonserver flags that put the admin APIs behind the key."""
        restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_KEY_HEADER}={self.admin_key}"
        return [f"--grpc-restricted-protocol={restricted}", f"--http-restricted-api={restricted}"]

    def tls_args(self) -> list[str]:
        """tritonserver's gRPC TLS flags, for a server without a front (the front ends TLS itself)."""
        args: list[str] = []
        if self.tls is not None:
            args += [
                f"--grpc-server-cert={Path(self.tls.cert).resolve()}",
                f"--grpc-server-key={Path(self.tls.key).resolve()}",
            ]
            if self.tls.client_ca is None:
                args.append("--grpc-use-ssl=true")
            else:
                args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={Path(self.tls.client_ca).resolve()}"]
        return args

    def http_host(self, host: str) -> str:
        """Where the plaintext HTTP endpoint binds: ``host``, or loopback only when gRPC is TLS."""
        return LOOPBACK if self.tls is not None else host
