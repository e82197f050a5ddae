"""Small built repositories of the demo detector, one per cpu layout, for tests that run the stubs' code.

At 128x128 the demo network exports in about two seconds and still finds shapes.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.darknet_files import DEMO_CFG, DEMO_NAMES, DEMO_WEIGHTS

SMALL_SIZE = 128
SMALL_NAME = "small"
LAYOUTS = {"fused": True, "ensemble": False}  # the cpu default, and --no-fused (a preprocess model too)


def build_small_repository(output: Path, layout: str) -> Path:
    """Build ``layout`` into ``output`` as ``yolo-server build`` builds it (no INT8); returns ``output``."""
    from yolo_server.repository.build import BuildOptions, build_repository

    options = BuildOptions(
        DEMO_CFG,
        DEMO_WEIGHTS,
        DEMO_NAMES,
        (SMALL_SIZE, SMALL_SIZE),
        fused=LAYOUTS[layout],
        name=SMALL_NAME,
        output=output,
    )
    build_repository(options, log=lambda line: None)
    return output
