"""Tuning a served model: measuring it under load with Triton's own tools, outside the server.

:mod:`.perf_analyzer` runs ``perf_analyzer`` (installed by ``make perf-tools``) against a running server and
returns per-concurrency throughput, latency percentiles and Triton's server-side split. Nothing here imports torch
or the launcher: it is a client of a server, like ``bench/`` and ``loadtest/``.
"""
