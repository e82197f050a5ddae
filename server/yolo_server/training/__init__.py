"""Training the demo detector: synthetic scenes, YOLOv4's loss and augmentations, darknet ``.weights`` out.

Modules, one concept each: :mod:`.scenes` (seeded scene generator, COCO json),
:mod:`.anchors` (k-means on IoU), :mod:`.augment` (pool, mosaic, random shapes),
:mod:`.targets` (anchor assignment), :mod:`.loss` (CIoU from :mod:`yolo_server.ops.boxes`),
:mod:`.schedule` (cosine with warm-up), :mod:`.network` (BN kept, export),
:mod:`.train` (the loop), :mod:`.cli` (``yolo-train``).
"""
