"""Small built repositories of the demo detector, one per cpu layout, for tests that run the stubs' code.

At 128x128 the demo network exports in about two seconds and still finds shapes. :func:`configs_only` writes a
repository's configs alone (yolov4-tiny, no export), for what reads only the configs (serve's sizing, tune's space).
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.darknet_files import COCO_NAMES, DEMO_CFG, DEMO_NAMES, DEMO_WEIGHTS, cfg_path

SMALL_SIZE = 128
SMALL_NAME = "small"
LAYOUTS = {"fused": True, "ensemble": False}  # the cpu default, and --no-fused (a preprocess model too)


def build_small_repository(output: Path, layout: str) -> Path:
    """Build ``layout`` into ``output`` as ``yolo-server build`` builds it (no INT8); returns ``output``."""
    from yolo_server.repository.build import build_repository
    from yolo_server.repository.plan import BuildOptions

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


def configs_only(output: Path, target: str = "cpu", **overrides: object) -> Path:
    """A repository of the generator's configs for yolov4-tiny, and nothing else (what plan_serving reads)."""
    from google.protobuf import text_format

    from yolo_server.repository.configs import model_configs
    from yolo_server.repository.plan import BuildOptions, plan_repository

    plan = plan_repository(
        BuildOptions(cfg=cfg_path("yolov4-tiny"), names=COCO_NAMES, size=(416, 416), target=target, **overrides)
    )
    for name, config in model_configs(plan.spec, plan.darknet).items():
        (output / name).mkdir(parents=True)
        (output / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    return output
