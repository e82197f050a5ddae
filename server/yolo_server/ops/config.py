"""The post-process's thresholds and caps as a pure config (no torch): the build plans with it, the ops run it.

Example:
    >>> config = postprocess_config_for(spec, score_threshold=0.3)     # darknet defaults, the cfg's beta_nms
    >>> PostprocessConfig.from_model_info(info).max_detections          # what a served model publishes
    300
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from yolo_client.contract import (
    DEFAULT_BETA_NMS,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_NMS_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    ModelInfo,
    check_score_threshold,
)

if TYPE_CHECKING:
    from yolo_server.darknet.cfg import DarknetSpec

DEFAULT_PRE_NMS_TOP_K = 5000


@dataclass(frozen=True)
class PostprocessConfig:
    """Thresholds and caps of :func:`yolo_server.ops.postprocess.postprocess` (darknet ``detector test`` defaults).

    ``beta_nms`` should be taken from the cfg's ``[yolo]`` heads (0.6 in all
    shipped cfgs). ``pre_nms_top_k`` caps, per image and by score, the
    (box, class) candidates entering NMS; ``max_detections`` caps the output.
    """

    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    nms_threshold: float = DEFAULT_NMS_THRESHOLD
    beta_nms: float = DEFAULT_BETA_NMS
    class_agnostic: bool = False
    max_detections: int = DEFAULT_MAX_DETECTIONS
    pre_nms_top_k: int = DEFAULT_PRE_NMS_TOP_K

    def __post_init__(self) -> None:
        check_score_threshold(self.score_threshold)
        if not 0.0 <= self.nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold={self.nms_threshold} must be in [0, 1]")
        if not self.beta_nms > 0.0:
            raise ValueError(f"beta_nms={self.beta_nms} must be positive")
        if self.max_detections < 0 or self.pre_nms_top_k < 0:
            raise ValueError(f"max_detections={self.max_detections}, pre_nms_top_k={self.pre_nms_top_k} must be >= 0")

    @classmethod
    def from_model_info(cls, info: ModelInfo, pre_nms_top_k: int = DEFAULT_PRE_NMS_TOP_K) -> PostprocessConfig:
        """The config a served model's parameters describe."""
        published = {f.name: getattr(info, f.name) for f in fields(cls) if hasattr(info, f.name)}
        return cls(**{**published, "pre_nms_top_k": pre_nms_top_k})


def postprocess_config_for(spec: DarknetSpec, **overrides: Any) -> PostprocessConfig:
    """Darknet's defaults with the cfg's ``beta_nms``; keyword arguments override."""
    betas = {head.beta_nms for head in spec.yolo_layers}
    if len(betas) != 1:
        raise ValueError(f"[yolo] heads disagree on beta_nms: {sorted(betas)}")
    return replace(PostprocessConfig(beta_nms=betas.pop()), **overrides)
