"""``python -m yolo_server.training`` = ``yolo-train``."""

from yolo_server.training.cli import main

raise SystemExit(main())
