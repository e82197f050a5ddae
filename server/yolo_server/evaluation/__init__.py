"""COCO-style accuracy of a detector: mAP@0.5 and mAP@[.5:.95] with pycocotools, in process or through the server.

Example:
    >>> dataset = CocoDataset.load("data/val/annotations.json")
    >>> found = detect_inprocess(Detector(cfg, weights, names, config=PostprocessConfig(score_threshold=0.005)), dataset)
    >>> print(format_table(coco_evaluate(dataset, found)))
"""

from yolo_server.evaluation.coco import CocoDataset, CocoResult, coco_evaluate, format_table
from yolo_server.evaluation.runners import detect_inprocess, detect_server

__all__ = ["CocoDataset", "CocoResult", "coco_evaluate", "detect_inprocess", "detect_server", "format_table"]
