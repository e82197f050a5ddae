"""One small image through an image model over HTTP, with a deadline: the check that readiness is not.

Triton 2.51 keeps reporting ready after a Python-backend stub died or hung, so health here means that a real
inference came back in time. Each answer falls in one of three kinds:

- ``ok``: detections came back;
- ``busy``: the server shed the request (HTTP 503: queue full, queue timeout, stopping), which says it is
  alive and loaded, not broken;
- ``failed``: an error answer (a dead stub gives 500 "Stub process ... is not healthy"), no answer before the
  deadline (a hung or stopped stub), or no connection.

The request uses the KServe binary-data extension, so only the standard library is needed.

Example:
    >>> check_canary("127.0.0.1:8000", "yolov4_tiny", timeout_s=10).kind
    'ok'
"""

from __future__ import annotations

import functools
import json
import struct
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from yolo_client.contract import COUNT, IMAGE, IMAGES, model_roles

CANARY_SIZE = (64, 48)  # width, height: small enough to cost nothing, any model letterboxes it
CanaryKind = Literal["ok", "busy", "failed"]


@dataclass(frozen=True)
class CanaryResult:
    kind: CanaryKind
    detail: str
    seconds: float


@functools.lru_cache(maxsize=1)
def canary_png() -> bytes:
    """A PNG of a bright disc on a gradient (made once)."""
    import cv2
    import numpy as np

    width, height = CANARY_SIZE
    image = np.tile(np.linspace(0, 255, width, dtype=np.uint8)[None, :, None], (height, 1, 3))
    cv2.circle(image, (width // 2, height // 2), min(width, height) // 3, (255, 200, 40), -1)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def image_models(repository: Path) -> list[str]:
    """Names of a model repository's image entry points (the canary's targets): the fused cpu model or the bytes
    ensemble, which take encoded images and answer detections, not a step or the tensor entry point."""
    names = [path.parent.name for path in Path(repository).glob("*/config.pbtxt")]
    return sorted(name for name, (_, role) in model_roles(names).items() if role == IMAGES)


def _request_body(image: bytes) -> tuple[bytes, int]:
    element = struct.pack("<I", len(image)) + image  # one BYTES element: 4-byte little-endian length, then bytes
    header = {
        "inputs": [
            {"name": IMAGE, "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(element)}}
        ],
        "outputs": [{"name": COUNT, "parameters": {"binary_data": False}}],
    }
    encoded = json.dumps(header).encode()
    return encoded + element, len(encoded)


def check_canary(url: str, model: str, timeout_s: float) -> CanaryResult:
    """POST one canary inference to ``http://URL/v2/models/MODEL/infer`` and classify the outcome."""
    body, header_length = _request_body(canary_png())
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/infer",
        data=body,
        method="POST",
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)},
    )
    start = time.monotonic()

    def result(kind: CanaryKind, detail: str) -> CanaryResult:
        return CanaryResult(kind, f"{model}: {detail}", time.monotonic() - start)

    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        message = _error_message(err)
        return result("busy" if err.code == 503 else "failed", f"HTTP {err.code}: {message}")
    except TimeoutError:
        return result("failed", f"no answer within {timeout_s:g} s")
    except (urllib.error.URLError, OSError, ValueError) as err:
        return result("failed", f"{type(err).__name__}: {getattr(err, 'reason', err)}")
    outputs = {output.get("name"): output for output in answer.get("outputs", [])}
    if COUNT not in outputs:
        return result("failed", f"the answer has no {COUNT} output")
    return result("ok", f"{outputs[COUNT].get('data')} detections")


def _error_message(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read()).get("error", err.reason))
    except (ValueError, OSError, AttributeError):
        return str(err.reason)


def server_ready(url: str, timeout_s: float) -> bool:
    """``GET /v2/health/ready`` answered 200 (Triton runs with strict readiness: every model ready)."""
    try:
        with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
