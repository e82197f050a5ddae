"""The generators behind ``docker/gen_monitoring.py``, one module per kind of file they make.

``thresholds`` holds what every file shares (the SLOs, the model selectors, number formatting), so that the
``rules`` (recording and alerting), the ``rule_tests`` (promtool unit tests) and the Grafana ``dashboard`` cannot
disagree on a number or on which Triton models play which role. Each generator returns a plain document (dicts and
lists); ``docker/gen_monitoring.py`` serialises them, writes them and checks the committed copies.
"""
