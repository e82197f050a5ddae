"""What runs inside Triton's Python-backend stubs: the ``model.py`` adapters (:mod:`.python_models`) and the steps
they call (decode and letterbox, the network batch, the OpenVINO runtime, decode + NMS), their settings and metrics.

A stub imports neither the launcher (:mod:`yolo_server.launcher`) nor build-time code (``export``,
``repository``), and no cpu stub imports torch: decode + NMS run the array-API ops on numpy there, and only a GPU
instance's postprocess imports torch, lazily (``tests/unit/test_import_rules.py``).
"""
