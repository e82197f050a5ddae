"""What ``yolo-server tune`` searches: the serving knobs of each model images go through, and their ranges.

The knobs are those ``serve`` applies from a tuning file (:class:`~yolo_server.launcher.tuned.ModelTuning`):
instances, OpenVINO threads for a lone image and for a batch, the batch shape (max batch size, preferred
batches, queue delay) and the precision among the IRs built that this CPU runs well. Ranges follow the CPUs
``serve`` may use, so a trial never asks for a hundred instances on two cores.

Example:
    >>> space = search_space(plan_serving(Path("model_repository")), CpuFeatures.of_this_machine())
    >>> [knob.key for knob in space]
    ['yolov4_tiny_shapes/instances', 'yolov4_tiny_shapes/lone_threads', ...]
    >>> tuning_of(space.defaults, plan)      # the sized defaults, as a Tuning: trial 0 of every search
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yolo_client.contract import model_roles
from yolo_server.launcher.sizing import CpuBudget
from yolo_server.launcher.staging import ModelPlan, ServingPlan
from yolo_server.launcher.tuned import ModelTuning, Tuning
from yolo_server.precision import IR_PRECISIONS, CpuFeatures
from yolo_server.triton.settings import BATCH_THREADS, INSTANCES, LONE_THREADS

BATCH_SIZES = (1, 2, 4, 8, 16)
QUEUE_DELAYS_US = (0, 500, 2000)
NO_PREFERRED, PREFER_MAX = "none", "max"  # preferred batch sizes: none, or the max batch size


@dataclass(frozen=True)
class Knob:
    """One searched setting of one model: ``choices`` in order (ints as ranges, the rest categorical)."""

    model: str
    name: str
    choices: tuple[Any, ...]
    default: Any

    @property
    def key(self) -> str:
        return f"{self.model}/{self.name}"


@dataclass(frozen=True)
class SearchSpace:
    """The knobs of one repository on one machine; ``defaults`` is what ``serve`` runs untuned, by key."""

    knobs: tuple[Knob, ...]
    budget: CpuBudget
    isa: str

    def __iter__(self) -> Iterator[Knob]:
        return iter(self.knobs)

    @property
    def defaults(self) -> dict[str, Any]:
        return {knob.key: knob.default for knob in self.knobs}

    def tuning(self, values: Mapping[str, Any]) -> Tuning:
        """The tuning file of one point of the space (``values`` by :attr:`Knob.key`)."""
        per_model: dict[str, dict[str, Any]] = {}
        for knob in self.knobs:
            per_model.setdefault(knob.model, {})[knob.name] = values[knob.key]
        models = {}
        for model, settings in per_model.items():
            preferred = settings.pop("preferred_batch_sizes", None)
            if preferred is not None:  # "none" or "max": the choice names the sizes of this max batch size
                settings["preferred_batch_sizes"] = (settings["max_batch_size"],) if preferred == PREFER_MAX else ()
            models[model] = ModelTuning(**settings)
        return Tuning(self.budget.cpus, self.isa, models)


def _served_precisions(model: ModelPlan, cpu: CpuFeatures) -> tuple[str, ...]:
    """The precisions a cpu detector can serve here, fastest first: among the IRs built, those this CPU runs well."""
    built = {*IR_PRECISIONS, *(("int8",) if model.config.parameters["int8_artifact"].string_value else ())}
    return tuple(precision for precision in cpu.fastest_first() if precision in built)


def _value(model: ModelPlan, knob: str, fallback: Any) -> Any:
    setting = model.settings.get(knob)
    return fallback if setting is None else setting.value


def _detector_knobs(model: ModelPlan, cpus: int, cpu: CpuFeatures, batch: bool) -> list[Knob]:
    """Threads, batch shape and precision of a Python model that runs the network (the fused model, the detector)."""
    config, threads = model.config, tuple(range(1, cpus + 1))
    max_batch = config.max_batch_size
    preferred = PREFER_MAX if tuple(config.dynamic_batching.preferred_batch_size) == (max_batch,) else NO_PREFERRED
    precisions = _served_precisions(model, cpu)
    precision = _value(model, "precision", "auto")
    knobs = [
        Knob(model.name, LONE_THREADS, threads, min(max(_value(model, LONE_THREADS, cpus), 1), cpus)),
        Knob(model.name, BATCH_THREADS, threads, min(max(_value(model, BATCH_THREADS, 1), 1), cpus)),
        Knob(model.name, "precision", precisions, precision if precision in precisions else precisions[0]),
    ]
    if batch:  # a stand-alone model: its batch shape is its own (an ensemble's steps must agree with it)
        knobs += [
            Knob(model.name, "max_batch_size", tuple(sorted({*BATCH_SIZES, max_batch})), max_batch),
            Knob(model.name, "preferred_batch_sizes", (NO_PREFERRED, PREFER_MAX), preferred),
            Knob(
                model.name,
                "max_queue_delay_us",
                tuple(sorted({*QUEUE_DELAYS_US, config.dynamic_batching.max_queue_delay_microseconds})),
                config.dynamic_batching.max_queue_delay_microseconds,
            ),
        ]
    return knobs


def search_space(plan: ServingPlan, cpu: CpuFeatures, roles_searched: Sequence[str] = ()) -> SearchSpace:
    """The knobs of the models an image goes through, on ``plan``'s CPUs.

    The fused cpu model: instances up to twice the CPUs, its threads, batch shape and precision. The ensemble
    layout (``--no-fused``): the preprocess' and postprocess' instances and the cpu detector's instances, threads
    and precision. The tensorrt detector's instances are per GPU, which this machine's CPUs do not bound: tune
    leaves it as built.
    """
    cpus = plan.budget.cpus
    roles = model_roles(model.name for model in plan.models)
    python = {model.name: model for model in plan.models if model.config.backend == "python"}
    knobs: list[Knob] = []
    for name, model in python.items():
        role = roles[name][1]
        if roles_searched and role not in roles_searched:
            continue
        instances = _value(model, INSTANCES, 1)
        if role == "images":  # the fused model
            knobs.append(Knob(name, INSTANCES, tuple(range(1, 2 * cpus + 1)), min(instances, 2 * cpus)))
            knobs += _detector_knobs(model, cpus, cpu, batch=True)
        elif role == "detector" and _image_path_has(roles, python, "preprocess"):
            knobs.append(Knob(name, INSTANCES, tuple(range(1, cpus + 1)), min(instances, cpus)))
            knobs += _detector_knobs(model, cpus, cpu, batch=False)
        elif role in ("preprocess", "postprocess") and _image_path_has(roles, python, "preprocess"):
            knobs.append(Knob(name, INSTANCES, tuple(range(1, 2 * cpus + 1)), min(instances, 2 * cpus)))
    if not knobs:
        raise ValueError(f"{plan.repository}: no model that images go through has settings to tune")
    return SearchSpace(tuple(knobs), plan.budget, cpu.isa())


def _image_path_has(roles: Mapping[str, tuple[str, str]], python: Mapping[str, ModelPlan], role: str) -> bool:
    """Whether images go through the ensemble's steps (a preprocess model exists), not a fused model."""
    return any(r == role and name in python for name, (_, r) in roles.items())
