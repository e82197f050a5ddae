"""What ``tune`` searches, per layout and CPU count, and its report from trials made up here (no server)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.small_repository import configs_only
from yolo_server.launcher.sizing import CpuBudget
from yolo_server.launcher.staging import plan_serving
from yolo_server.precision import CpuFeatures
from yolo_server.tuning.perf_analyzer import Measurement
from yolo_server.tuning.report import write_report
from yolo_server.tuning.space import PREFER_MAX, search_space
from yolo_server.tuning.tune import DEFAULTS, SEARCH, TUNED, Trial, TuneOptions, TuneResult, beats, image_model

pytestmark = pytest.mark.timeout(60)

AVX2 = CpuFeatures(frozenset({"avx", "avx2", "fma"}))
BF16 = CpuFeatures(frozenset({"avx", "avx2", "avx512f", "avx512_bf16"}))
COMMITTED = ROOT / "model_repository"
MODEL = "yolov4_tiny_shapes"


def test_the_fused_model_is_searched_around_the_sized_defaults() -> None:
    space = search_space(plan_serving(COMMITTED, CpuBudget(2), cpu=AVX2), AVX2)
    knobs = {knob.key: knob for knob in space}
    assert sorted(knobs) == sorted(
        f"{MODEL}/{name}"
        for name in ("instances", "lone_threads", "batch_threads", "precision", "max_batch_size",
                     "preferred_batch_sizes", "max_queue_delay_us")
    )  # fmt: skip
    assert knobs[f"{MODEL}/instances"].choices == (1, 2, 3, 4)  # up to twice the CPUs
    assert knobs[f"{MODEL}/lone_threads"].choices == (1, 2)
    assert knobs[f"{MODEL}/precision"].choices == ("int8", "fp32")  # the IRs built, as AVX2 serves them
    assert space.defaults[f"{MODEL}/instances"] == 3 and space.defaults[f"{MODEL}/batch_threads"] == 1
    assert space.defaults[f"{MODEL}/precision"] == "int8"  # auto on AVX2 with an INT8 IR built
    tuned = space.tuning(space.defaults).models[MODEL]
    assert (tuned.instances, tuned.lone_threads, tuned.batch_threads, tuned.max_batch_size) == (3, 2, 1, 8)
    assert tuned.preferred_batch_sizes == ()  # "none"
    assert space.tuning({**space.defaults, f"{MODEL}/preferred_batch_sizes": PREFER_MAX}).models[
        MODEL
    ].preferred_batch_sizes == (8,)
    on_bf16 = {knob.key: knob for knob in search_space(plan_serving(COMMITTED, CpuBudget(2), cpu=BF16), BF16)}
    assert on_bf16[f"{MODEL}/precision"].choices == ("int8", "bf16", "fp32")


def test_the_ensemble_layout_searches_its_steps(tmp_path: Path) -> None:
    repository = configs_only(tmp_path / "ensemble", fused=False)
    space = search_space(plan_serving(repository, CpuBudget(4), cpu=AVX2), AVX2)
    keys = {knob.key for knob in space}
    assert {"yolov4_tiny_preprocess/instances", "yolov4_tiny_postprocess/instances"} <= keys
    assert {"yolov4_tiny_detector/instances", "yolov4_tiny_detector/lone_threads"} <= keys
    assert "yolov4_tiny_detector/max_batch_size" not in keys  # the ensembles' batch must agree with it
    assert space.defaults["yolov4_tiny_preprocess/instances"] == 4
    fused_tensor_path = configs_only(tmp_path / "fused")  # its detector serves tensors only: not searched
    assert not any(
        k.model.endswith("_detector")
        for k in search_space(plan_serving(fused_tensor_path, CpuBudget(4), cpu=AVX2), AVX2)
    )


def test_one_image_model_per_repository() -> None:
    assert image_model([MODEL, f"{MODEL}_detector", f"{MODEL}_tensor"]) == MODEL
    with pytest.raises(ValueError, match="one detector"):
        image_model(["a", "a_tensor", "b", "b_tensor"])


def measurement(concurrency: int, images_per_s: float, p99_ms: float) -> Measurement:
    return Measurement(concurrency, 1, images_per_s, p99_ms / 2, p99_ms * 0.8, p99_ms * 0.9, p99_ms, p99_ms / 2,
                       0.1, 0.2, 1.0, 0.1, p99_ms / 4, 0.1, 0.1)  # fmt: skip


def test_the_report_has_every_trial_and_the_side_by_side_plots(tmp_path: Path) -> None:
    space = search_space(plan_serving(COMMITTED, CpuBudget(2), cpu=AVX2), AVX2)
    other = {**space.defaults, f"{MODEL}/instances": 3}
    trials = (
        Trial(0, SEARCH, space.defaults, (measurement(1, 50, 30), measurement(16, 100, 200)), seconds=20),
        Trial(1, SEARCH, other, (measurement(1, 50, 25), measurement(16, 121, 150)), seconds=21),
        Trial(2, SEARCH, other, error="tritonserver exited with code 1"),
        Trial(3, DEFAULTS, space.defaults, (measurement(1, 48, 31), measurement(16, 98, 210))),
        Trial(4, TUNED, other, (measurement(1, 50, 26), measurement(16, 120, 160))),
    )
    options = TuneOptions(COMMITTED, concurrencies=(1, 16), p99_ms=180, report=tmp_path)
    result = TuneResult(options, space, trials, trials[3], trials[4], space.tuning(other), interrupted=False)
    assert not trials[0].feasible(180) and trials[1].feasible(180) and not trials[2].feasible(None)
    assert trials[2].images_per_s == 0.0
    assert result.ratio == pytest.approx((50 * 120) ** 0.5 / (48 * 98) ** 0.5)
    assert result.summary()[-1].endswith(f"{result.ratio:.2f}x")

    files = write_report(result, tmp_path)
    rows = list(csv.DictReader(io.StringIO(files.csv.read_text())))
    assert [row["phase"] for row in rows] == ["search", "search", "search", "defaults", "tuned"]
    assert rows[2]["error"] and rows[1][f"{MODEL}/instances"] == "3" and rows[1]["c16_p99_ms"] == "150.00"
    assert [row["feasible"] for row in rows] == ["False", "True", "False", "False", "True"]
    page = files.page.read_text()
    for plot in files.plots:
        assert plot.read_bytes().startswith(b"\x89PNG") and f'src="{plot.name}"' in page


def test_a_pick_must_not_lose_at_any_concurrency() -> None:
    defaults = Trial(0, DEFAULTS, {}, (measurement(1, 50, 30), measurement(16, 100, 200)))
    faster_overall_slower_at_16 = Trial(1, TUNED, {}, (measurement(1, 80, 20), measurement(16, 97, 200)))
    within_noise_at_16 = Trial(2, TUNED, {}, (measurement(1, 60, 20), measurement(16, 98.5, 200)))
    assert not beats(faster_overall_slower_at_16, defaults)
    assert beats(within_noise_at_16, defaults)
    assert beats(within_noise_at_16, Trial(3, DEFAULTS, {}, error="tritonserver exited with code 1"))


def fake_tune(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, measure_fn) -> TuneResult:
    """``tune`` on the committed repository's configs with ``measure_fn`` (values -> measurements) standing in for
    serving and perf_analyzer: the search, the side-by-side run and what is written, without a server."""
    from yolo_server.launcher.tuned import Tuning
    from yolo_server.tuning import tune as tune_module

    def measure_settings(options, model, tuning: Tuning, data, workdir, number, tool):
        return measure_fn(tuning.models[MODEL])

    monkeypatch.setattr(tune_module, "measure_settings", measure_settings)
    monkeypatch.setattr(tune_module, "find_perf_analyzer", lambda: None)
    monkeypatch.setattr(tune_module.CpuFeatures, "of_this_machine", classmethod(lambda cls: AVX2))
    monkeypatch.setattr(
        tune_module, "plan_serving", lambda repository: plan_serving(repository, CpuBudget(2), cpu=AVX2)
    )
    options = TuneOptions(COMMITTED, concurrencies=(1, 16), budget_s=0.5, output=tmp_path / "tuning.json",
                          images=(b"jpeg",))  # fmt: skip
    return tune_module.tune(options, log=lambda line: None)


def test_the_search_keeps_a_pick_that_wins_side_by_side(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from yolo_server.launcher.tuned import Tuning

    def by_instances(settings):
        rate = 10.0 * settings.instances  # more instances, more images/s: the search must find it
        return (measurement(1, rate, 30), measurement(16, rate, 200)), ""

    result = fake_tune(monkeypatch, tmp_path, by_instances)
    assert result.trials[0].values == result.space.defaults  # trial 0: the defaults
    assert [t.phase for t in result.trials][-2:] in (["defaults", "tuned"], ["search", "defaults"])
    assert result.tuned.values[f"{MODEL}/instances"] >= result.defaults.values[f"{MODEL}/instances"]
    written = Tuning.read(tmp_path / "tuning.json").models[MODEL]
    assert written.instances == result.tuned.values[f"{MODEL}/instances"]


def test_nothing_measured_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no trial could be served and measured; the first: boom"):
        fake_tune(monkeypatch, tmp_path, lambda settings: ((), "boom"))
    assert not (tmp_path / "tuning.json").exists()
