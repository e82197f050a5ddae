"""The cpu detector's runtime: an OpenVINO IR compiled for this CPU, run on numpy batches inside a Triton stub.

No torch here (``tests/unit/test_import_rules.py``): the cpu ``NAME_detector`` stub imports this module and
numpy only. The IR is written at build time by :mod:`yolo_server.export.openvino`. Precision is a compile-time
choice of the plugin (``INFERENCE_PRECISION_HINT``), so one fp32 IR serves fp32 and bf16; an INT8 IR serves
int8 only. ``auto`` is resolved here, on the machine that serves, among the IRs built (:func:`served_ir`).
``openvino`` is imported only here and in the build's export.

Example:
    >>> path, precision = served_ir(Path("1/model.xml"), "auto", int8_artifact="model-int8.xml")
    >>> runner = OpenVINORunner(path, precision, num_threads=2)
    >>> heads = runner(batch)            # float32 [B, 3, H, W] -> list of float32 [B, A*(5+C), h, w]
    >>> shared = LoadAwareRunner("model.xml", "auto", lone_threads=0, batch_threads=1)   # one instance of several
    >>> detector = load_runner(settings, version_dir, max_batch_size=8)     # a model's, from its parameters, warm
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from yolo_server.extras import import_extra
from yolo_server.precision import AUTO, IR_PRECISIONS, CpuFeatures, resolve_cpu_precision
from yolo_server.triton.settings import DetectorSettings, warmup_batches

# the most images one inference of a batch runs: a larger batch runs in near-equal parts (8 -> 4 + 4, 7 -> 4 + 3).
# The plugin keeps the activation memory of the largest batch it has run (demo model at 416: about 3 MiB an image,
# so batch 8 held 24 MiB of a fused instance's 172), while a thread works through a batch's images one after the
# other anyway: per image, parts of 4 ran as fast as whole batches of 8 (demo INT8 IR, one thread, 60 interleaved
# rounds: 1.001x the time; parts of 2: 1.009x, of 1: 1.021x; two threads, parts of 4: 1.000x)
MAX_INFERENCE_BATCH = 4

# what the plugin calls our precisions (INFERENCE_PRECISION_HINT). An INT8 IR's layers left in float run in f32:
# measured faster than the bf16 hint on AVX512-BF16 too (demo, 2 threads: 421 against 352 images/s at batch 1)
PLUGIN_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def import_openvino() -> ModuleType:
    return import_extra("openvino", "openvino", "the cpu target runs the detector on OpenVINO")


def served_ir(
    artifact: Path, precision: str, int8_artifact: str = "", cpu: CpuFeatures | None = None
) -> tuple[Path, str]:
    """The IR to serve and its precision: ``precision`` (``auto`` on ``cpu``) among those built.

    ``int8_artifact`` names the INT8 IR beside ``artifact`` ("" where the build made none, or its gate refused it).
    """
    built = (*IR_PRECISIONS, "int8") if int8_artifact else IR_PRECISIONS
    chosen = resolve_cpu_precision(precision, built, cpu)
    return (artifact.with_name(int8_artifact) if chosen == "int8" else artifact), chosen


def is_quantized(model: Any) -> bool:
    """Whether an ``openvino.Model`` holds NNCF's quantization (FakeQuantize) nodes."""
    return any(node.get_type_name() == "FakeQuantize" for node in model.get_ops())


def compile_options(precision: str, num_threads: int) -> dict[str, Any]:
    """CPU plugin options: the resolved precision, latency mode (one stream: batches come from Triton), the threads.

    Threads are not pinned to cores: the plugin pins each compiled model's threads from core 0 up, so two
    model instances (two processes) with one thread each would share core 0 and leave core 1 idle
    (measured: 81 against 137 images/s through the fused model at concurrency 16 on 2 cores).
    """
    if precision not in PLUGIN_PRECISION:
        raise ValueError(f"CPU precision must be one of {', '.join(PLUGIN_PRECISION)}; got {precision!r}")
    options: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": PLUGIN_PRECISION[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }
    if num_threads:
        options["INFERENCE_NUM_THREADS"] = num_threads
    return options


@dataclass(frozen=True)
class IR:
    """An IR read (its ``openvino.Model``, weights mapped from the ``.bin``) and the precision it serves."""

    core: Any
    model: Any
    precision: str

    @classmethod
    def read(cls, path: str | Path, precision: str = AUTO) -> IR:
        """Read ``path``; ``precision`` as :class:`OpenVINORunner` takes it."""
        core = import_openvino().Core()
        model = core.read_model(str(path))
        if is_quantized(model):
            if precision not in (AUTO, "int8"):
                raise ValueError(f"{path} is an INT8 IR: it serves int8, not {precision}")
            return cls(core, model, "int8")
        # resolved already (the load's served_ir) or, for auto or a precision not built, resolved or refused
        return cls(core, model, precision if precision in IR_PRECISIONS else resolve_cpu_precision(precision))


class OpenVINORunner:
    """Runs an IR on numpy batches; one instance per Triton model instance.

    Args:
        path: the ``.xml`` written by :func:`yolo_server.export.openvino.export_openvino` (or its INT8 sibling).
        precision: ``fp32`` or ``bf16`` for an fp32 IR, ``int8`` for an INT8 one, which serves nothing else: as
            :func:`served_ir` resolved it (a load resolves ``auto`` there, once); ``auto`` from a caller that
            did not go through it is resolved here, for this IR alone.
        num_threads: the plugin's threads; 0 for all cores.
    """

    def __init__(self, path: str | Path, precision: str = AUTO, num_threads: int = 0) -> None:
        self._compile(IR.read(path, precision), num_threads)

    @classmethod
    def from_ir(cls, ir: IR, num_threads: int = 0) -> OpenVINORunner:
        """A runner of an IR read already (:class:`LoadAwareRunner` compiles one read twice)."""
        runner = cls.__new__(cls)
        runner._compile(ir, num_threads)
        return runner

    def _compile(self, ir: IR, num_threads: int) -> None:
        self.precision = ir.precision
        compiled = ir.core.compile_model(ir.model, "CPU", compile_options(ir.precision, num_threads))
        self.outputs = list(compiled.outputs)
        self.request = compiled.create_infer_request()

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """float32 [B, 3, H, W] -> list of float32 [B, A*(5+C), h, w], one per [yolo] head (copies, not views)."""
        results = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        return [results[output] for output in self.outputs]


class LoadAwareRunner:
    """An IR compiled for the load it meets: ``lone_threads`` for a lone image, ``batch_threads`` for a batch.

    The fused cpu model, of which several instances share the cores, gives a batch one thread: a batch means
    requests queued while this instance ran, so the other instances are busy too, and their threads would spin
    against each other's; a lone image means a light load, and its latency is that of all the cores.
    Measured on 2 cores (docs/cpu-serving.md "One fused model"): concurrency 1 at the latency of two threads,
    concurrency 16 at the throughput of one thread per instance. Where both counts are equal (``NAME_detector``)
    the IR is compiled once; otherwise it is read once and compiled twice. A batch of more than
    :data:`MAX_INFERENCE_BATCH` images runs in parts, so that the plugin never holds a larger batch's activations.

    Args:
        path, precision: as :class:`OpenVINORunner`.
        lone_threads, batch_threads: the plugin's threads for a batch of one image and of several; 0 for all cores.
    """

    def __init__(self, path: str | Path, precision: str = AUTO, lone_threads: int = 0, batch_threads: int = 0) -> None:
        ir = IR.read(path, precision)  # read once: both compiled models map the one .bin (1.4 MiB less, demo INT8)
        self.precision = ir.precision  # auto, where given, resolved once for both
        self.lone = OpenVINORunner.from_ir(ir, lone_threads)
        self.batched = self.lone if batch_threads == lone_threads else OpenVINORunner.from_ir(ir, batch_threads)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """As :meth:`OpenVINORunner.__call__`; a batch over :data:`MAX_INFERENCE_BATCH` runs in near-equal parts."""
        if len(batch) == 1:
            return self.lone(batch)
        if len(batch) <= MAX_INFERENCE_BATCH:
            return self.batched(batch)
        parts = [self.batched(part) for part in np.array_split(batch, -(-len(batch) // MAX_INFERENCE_BATCH))]
        return [np.concatenate(heads) for heads in zip(*parts, strict=True)]

    def warm_up(self, batches: Iterable[int], height: int, width: int) -> None:
        """Run each batch size once: the plugin plans a batch size at its first call, slowly."""
        for batch in batches:
            self(np.zeros((batch, 3, height, width), dtype=np.float32))


def load_runner(settings: DetectorSettings, version_dir: Path, max_batch_size: int) -> LoadAwareRunner:
    """The runner of a cpu detector model (``NAME_detector`` or the fused ``NAME``), warmed up.

    Args:
        settings: the model's parameters.
        version_dir: its version directory, which holds the IRs.
        max_batch_size: its config's; the warm-up runs :func:`~yolo_server.triton.settings.warmup_batches`.
    """
    artifact, precision = served_ir(version_dir / settings.artifact, settings.precision, settings.int8_artifact)
    runner = LoadAwareRunner(artifact, precision, settings.lone_threads, settings.batch_threads)
    runner.warm_up(warmup_batches(max_batch_size), settings.input_height, settings.input_width)
    return runner
