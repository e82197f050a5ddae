"""The resident memory of each Python-backend stub of a served repository, and the libraries it has mapped.

Serves the repository (default: the committed one, built by ``make build``) on free loopback ports, sends images
through the image entry point and tensors through the tensor entry point, so that every stub has loaded and run,
then reads each stub's ``VmRSS`` from ``/proc`` and whether it maps libtorch and OpenVINO. No cpu stub should map
torch (decode + NMS run the array-API ops on numpy). The ratio printed is the fused instance against the detector
stub: what decoding images and the post-process add to the OpenVINO detector, side by side in one run; each stub is
also checked against :data:`TARGET_MIB`.

Usage::

    python bench/bench_stub_memory.py                         # model_repository/, the default model
    python bench/bench_stub_memory.py build/model_repository --model yolov4_tiny --requests 50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from isa import isa_line
from server_processes import resident_kib, stub_models

from yolo_client import YoloClient
from yolo_client.contract import DEFAULT_MODEL, ROLES, model_name
from yolo_client.scenes import draw_scene

LIBRARIES = {"torch": "libtorch", "openvino": "libopenvino"}
TARGET_MIB = 160  # issue 35: a fused instance and the postprocess each at most this resident


def stub_memory(pid: int) -> tuple[int, dict[str, bool]]:
    """A stub's resident KiB, and which of :data:`LIBRARIES` it maps."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return resident_kib(pid), {name: marker in maps for name, marker in LIBRARIES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path, nargs="?", default=ROOT / "model_repository")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the detector's base name")
    parser.add_argument("--requests", type=int, default=20, help="per entry point")
    args = parser.parse_args()

    from yolo_server.launcher.launch import loopback_server

    with loopback_server(args.repository, front=False, ready_timeout_s=300) as serving:
        image = draw_scene(np.random.default_rng(0), 400, 300).image
        for transport in ("bytes", "tensor"):
            with YoloClient(serving.endpoints.grpc, args.model, transport=transport) as client:
                for _ in range(args.requests):
                    client.detect(image, color="rgb")
        assert serving.server.pid is not None
        rows = sorted((model, pid, *stub_memory(pid)) for pid, model in stub_models(serving.server.pid).items())

    print(isa_line())
    print(f"{'model':40} {'pid':>8} {'RSS MiB':>8}  {'maps':16} target")
    for model, pid, rss_kib, mapped in rows:
        libraries = ", ".join(n for n, on in mapped.items() if on) or "-"
        verdict = "ok" if rss_kib / 1024 <= TARGET_MIB else f"over {TARGET_MIB} MiB"
        print(f"{model:40} {pid:>8} {rss_kib / 1024:8.1f}  {libraries:16} {verdict}")
    by_role = {role: [rss for m, _, rss, _ in rows if m == model_name(args.model, role)] for role in ROLES}
    if by_role["images"] and by_role["detector"]:
        ratio = max(by_role["images"]) / max(by_role["detector"])
        print(f"fused instance / detector stub RSS: {ratio:.2f}")


if __name__ == "__main__":
    main()
