"""``docker/gen_monitoring.py`` and the ``monitoring/`` package it writes from, imported as the script imports them.

Run from a checkout (``python docker/gen_monitoring.py``), the script has docker/ first on ``sys.path`` and imports
``monitoring.rules``, ``monitoring.thresholds``, ... by those names. This module puts docker/ on ``sys.path`` the
same way, once, so that the tests use the very modules the script uses: the script's own ``render`` and ``main`` from
:data:`gen_monitoring`, and each generator's names from its module.

Example:
    >>> gen_monitoring.render(thresholds.Thresholds())     # path under docker/ -> text
    >>> adapter.metrics_query(thresholds.Thresholds())      # the HPA's query
"""

from __future__ import annotations

import importlib
import sys

from tests.helpers.deploy import DOCKER

if str(DOCKER) not in sys.path:
    sys.path.insert(0, str(DOCKER))

gen_monitoring = importlib.import_module("gen_monitoring")
adapter = importlib.import_module("monitoring.adapter")
thresholds = importlib.import_module("monitoring.thresholds")
