"""The custom metric handles: one declaration per family, matching docs/metrics.md and the Prometheus rules."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.helpers import python_backend as pb_utils
from tests.helpers.paths import ROOT
from yolo_server.triton import metrics as m

RULES = ROOT / "docker" / "prometheus" / "rules"


def documented_families() -> dict[str, tuple[str, tuple[str, ...]]]:
    """docs/metrics.md's table: name -> (kind, extra labels)."""
    rows = re.findall(r"^\| `(yolo_[a-z_]+)` \| (\w+) \|([^|]*)\|", (ROOT / "docs" / "metrics.md").read_text(), re.M)
    return {name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def rule_metrics() -> set[str]:
    """The yolo_ families the recording and alerting rules read (without _bucket/_sum/_count)."""
    used: set[str] = set()
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expr = re.sub(r'"[^"]*"', '""', rule["expr"])
                used |= set(re.findall(r"\b(yolo_[a-z_]+)(?=[{\[\s)]|$)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}


def test_every_handle_is_declared_once_in_families() -> None:
    handles = [value for value in vars(m).values() if isinstance(value, m.Family)]
    assert sorted(f.name for f in handles) == sorted(f.name for f in m.FAMILIES)
    assert len({f.name for f in m.FAMILIES}) == len(m.FAMILIES)
    for family in m.FAMILIES:
        assert family.kind in ("counter", "histogram")
        assert (family.kind == "histogram") == bool(family.buckets), family.name
        assert family.name.endswith("_total") == (family.kind == "counter"), family.name


def test_handles_match_docs_metrics_md() -> None:
    assert documented_families() == {f.name: (f.kind, f.labels) for f in m.FAMILIES}


def test_prometheus_rules_read_only_declared_families() -> None:
    used = rule_metrics()
    assert used, "no yolo_ metric found in the rules: the parser is broken"
    assert used <= {f.name for f in m.FAMILIES}


def test_call_sites_use_handles_not_name_strings() -> None:
    sources = [
        *(ROOT / "server/yolo_server/triton/python_models").glob("*.py"),
        *(ROOT / "server/yolo_server/triton").glob("*.py"),
    ]
    for path in sources:
        if path.name != "metrics.py":
            assert not re.search(r"[\"']yolo_[a-z_]+[\"']", path.read_text()), path


def test_series_are_labelled_and_created_once() -> None:
    pb_utils.MetricFamily.created = []
    metrics = m.ModelMetrics(pb_utils, "net_pre", (m.PREPROCESS_DURATION, m.IMAGES_DECODED))
    assert [(f.name, f.kind) for f in pb_utils.MetricFamily.created] == [
        ("yolo_preprocess_duration_seconds", "HISTOGRAM"),
        ("yolo_images_decoded_total", "COUNTER"),
        ("yolo_rejected_inputs_total", "COUNTER"),  # always there: every model rejects inputs
    ]
    preprocess, decoded, rejected = pb_utils.MetricFamily.created
    metrics.observe(m.PREPROCESS_DURATION, 0.5)
    with metrics.timer(m.PREPROCESS_DURATION):
        pass
    metrics.increment(m.IMAGES_DECODED, format="jpeg")
    metrics.increment(m.IMAGES_DECODED, format="jpeg")
    metrics.increment(m.IMAGES_DECODED, format="png")
    metrics.rejected("empty")
    assert len(preprocess.series) == 1 and preprocess.series[0].buckets == list(m.DURATION_BUCKETS)
    assert preprocess.series[0].labels == {"model": "net_pre"} and len(preprocess.series[0].values) == 2
    assert [(s.labels["format"], s.values) for s in decoded.series] == [("jpeg", [1.0, 1.0]), ("png", [1.0])]
    assert rejected.series[0].labels == {"model": "net_pre", "reason": "empty"}


def test_misuse_of_a_handle_fails_loudly() -> None:
    metrics = m.ModelMetrics(pb_utils, "net_post", (m.DETECTIONS_PER_IMAGE,))
    with pytest.raises(TypeError, match="histogram, not a counter"):
        metrics.increment(m.DETECTIONS_PER_IMAGE)
    with pytest.raises(ValueError, match="not among this model's families"):
        metrics.observe(m.PREPROCESS_DURATION, 1.0)
    with pytest.raises(ValueError, match=r"takes labels \['reason'\]"):
        metrics.increment(m.REJECTED_INPUTS, format="jpeg")
    with pytest.raises(AttributeError):
        m.REJECTED_INPUT  # noqa: B018  the typo a name string would have hidden until run time
