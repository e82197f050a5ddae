"""``python -m yolo_server.evaluation`` = ``yolo-eval``."""

from yolo_server.evaluation.cli import main

raise SystemExit(main())
