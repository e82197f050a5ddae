"""Where tritonserver comes from, and the environment its child process needs.

The binary comes from ``$TRITONSERVER_BIN``, else ``tritonserver`` on ``PATH``
(the NGC container), else the one bundled in the ``nvidia-pytriton`` wheel.
The wheel keeps one Python-backend stub per Python version; it is linked
beside ``libtriton_python.so`` in a private backend directory for each run.

Example:
    >>> installation = find_tritonserver()
    >>> env = child_environment(installation)
    >>> backends = backend_directory(installation, Path(tempfile.mkdtemp()))  # None outside the wheel
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import site
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from yolo_server.launcher.supervise import STUB_NAME

WHEEL_PACKAGE = "pytriton"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class TritonError(RuntimeError):
    """tritonserver could not start or exited; the message carries Triton's own error lines."""


@dataclass(frozen=True)
class TritonInstallation:
    """A tritonserver binary; ``python_backend`` and ``stub`` are set for the pytriton wheel."""

    binary: Path
    python_backend: Path | None = None
    stub: Path | None = None
    library_dirs: tuple[Path, ...] = ()


def find_tritonserver() -> TritonInstallation:
    """``$TRITONSERVER_BIN``, then ``tritonserver`` on PATH, then the pytriton wheel's."""
    explicit = os.environ.get("TRITONSERVER_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise TritonError(f"TRITONSERVER_BIN={explicit} is not an executable file")
        # an explicit path may still point into a wheel, which then needs its stub linked in
        return _wheel_installation(Path(explicit)) or TritonInstallation(Path(explicit))
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstallation(Path(on_path))
    import importlib.util  # only the wheel fallback needs it

    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TritonError(
            "no tritonserver: set TRITONSERVER_BIN, use the NGC container, or pip install nvidia-pytriton"
        )
    binary = Path(list(spec.submodule_search_locations)[0]) / "tritonserver" / "bin" / "tritonserver"
    installation = _wheel_installation(binary)
    if installation is None:
        raise TritonError(f"the pytriton package has no tritonserver binary at {binary}")
    return installation


def _wheel_installation(binary: Path) -> TritonInstallation | None:
    """The wheel layout around ``binary`` (…/pytriton/tritonserver/bin/tritonserver), if it is one."""
    root = binary.resolve().parent.parent
    backend = root / "backends" / "python"
    if not (binary.is_file() and (backend / "libtriton_python.so").is_file()):
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / STUB_NAME
    if not stub.is_file():
        raise TritonError(f"the pytriton wheel has no Python-backend stub for Python {version} ({stub})")
    return TritonInstallation(binary, backend, stub, (root.parent.parent / "nvidia_pytriton.libs",))


def python_paths() -> list[str]:
    """What the Python models must import: this interpreter's site-packages and the yolo packages' roots.

    Editable installs are found through ``.pth`` hooks that ``PYTHONPATH`` entries
    do not run, so the package roots are listed explicitly.
    """
    import yolo_client
    import yolo_server

    roots = [_package_root(module) for module in (yolo_server, yolo_client)]
    return list(dict.fromkeys([*roots, *site.getsitepackages()]))


def _package_root(package: ModuleType) -> str:
    """The directory that holds ``package`` (what ``PYTHONPATH`` needs to import it)."""
    if package.__file__ is None:
        raise TritonError(f"{package.__name__} has no __init__.py to locate it by (a namespace package?)")
    return str(Path(package.__file__).resolve().parent.parent)


def child_environment(installation: TritonInstallation) -> dict[str, str]:
    """tritonserver's environment: libpython and wheel libraries on LD_LIBRARY_PATH, our packages on PYTHONPATH."""
    env = dict(os.environ)
    libdirs = [str(d) for d in installation.library_dirs]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:  # the stub embeds this interpreter's libpython
        libdirs.append(libdir)
    env["LD_LIBRARY_PATH"] = _join([*libdirs, env.get("LD_LIBRARY_PATH", "")])
    env["PYTHONPATH"] = _join([*python_paths(), env.get("PYTHONPATH", "")])
    env["PATH"] = _join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def backend_directory(installation: TritonInstallation, workdir: Path) -> Path | None:
    """For the wheel: ``workdir/backends`` with the stub linked beside libtriton_python.so; else None.

    The wheel ships one stub per Python version, and Triton looks for it beside the backend library.
    """
    if installation.python_backend is None or installation.stub is None:
        return None
    python_dir = workdir / "backends" / "python"
    python_dir.mkdir(parents=True)
    for name in PYTHON_BACKEND_FILES:
        (python_dir / name).symlink_to(installation.python_backend / name)
    (python_dir / STUB_NAME).symlink_to(installation.stub)
    return workdir / "backends"


def _join(parts: Sequence[str]) -> str:
    """A path list without empty entries (an empty one would mean the current directory)."""
    return os.pathsep.join(part for part in parts if part)


def die_with_parent() -> None:
    """In a child before exec (tritonserver, nginx): SIGTERM it when the launching process dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
