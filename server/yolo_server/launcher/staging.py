"""What ``serve`` runs: the repository's configs with each sized or tuned setting resolved for this machine.

A repository is built on one machine and served on another (the compose builder, the k8s init container), so
instance counts and threads are chosen here, when ``serve`` starts. Each setting comes from, highest first:
the tuning file (:mod:`.tuned`), the build (a count the user gave), the sizing rule (:mod:`.sizing`, for the knobs
the build left to it, listed in the model's ``sized`` parameter). Triton runs a staged copy: every model
directory with its rewritten ``config.pbtxt`` and links to the built files, so the repository itself is never
written. Each staged config carries what was resolved and where from (``contract.SERVING_PARAMETER``), which
``yolo-client models`` shows.

Example:
    >>> plan = plan_serving(Path("model_repository"))
    >>> print("\\n".join(plan.lines()))
    sized to 2 CPUs (affinity 2, cgroup quota none); tuning: none (model_repository/tuning.json: absent)
      yolov4_tiny_shapes  instances 3 (sized), lone_threads 2 (sized), batch_threads 1 (sized)
    >>> triton_repository = plan.stage(workdir / "models")   # plan.staged_configs: what Triton runs
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from yolo_client.contract import SERVING_PARAMETER, model_roles
from yolo_server.launcher.sizing import CpuBudget, cpu_budget, sized_settings
from yolo_server.launcher.tuned import TUNABLE, TUNING_FILE, ModelTuning, Tuning
from yolo_server.precision import CpuFeatures
from yolo_server.triton.settings import BATCH_THREADS, INSTANCES, LONE_THREADS, Sized

SIZED, BUILD, TUNED = "sized", "build", "tuned"
CONFIG = "config.pbtxt"
_THREADS = (LONE_THREADS, BATCH_THREADS)


@dataclass(frozen=True)
class Setting:
    """One resolved setting and where it came from (:data:`SIZED`, :data:`BUILD` or :data:`TUNED`)."""

    value: Any
    source: str

    def __str__(self) -> str:
        value = (",".join(map(str, self.value)) or "none") if isinstance(self.value, tuple) else self.value
        return f"{value} ({self.source})"


@dataclass(frozen=True)
class ModelPlan:
    """One model: its built config, the settings resolved for it (those it has, in a fixed order) and the config
    Triton runs, the built one with those settings written in (:func:`staged_config`)."""

    name: str
    config: pb.ModelConfig
    settings: Mapping[str, Setting]
    staged: pb.ModelConfig

    def line(self) -> str:
        return ", ".join(f"{knob} {setting}" for knob, setting in self.settings.items())


def staged_config(name: str, built: pb.ModelConfig, settings: Mapping[str, Setting]) -> pb.ModelConfig:
    """``built`` with every resolved setting written in, and :data:`SERVING_PARAMETER`; ValueError for what Triton
    or the model would refuse."""
    config = pb.ModelConfig()
    config.CopyFrom(built)
    values = {knob: setting.value for knob, setting in settings.items()}
    if INSTANCES in values:
        del config.instance_group[1:]
        config.instance_group[0].count = values[INSTANCES]
    for knob in (*_THREADS, "precision"):
        if knob in values:
            config.parameters[knob].string_value = str(values[knob])
    if values.get("precision") == "int8" and not config.parameters["int8_artifact"].string_value:
        raise ValueError(f"{name}: int8 asked, but the repository holds no INT8 IR for it")
    batching = config.dynamic_batching
    if "max_batch_size" in values:
        queued_images = batching.default_queue_policy.max_queue_size * config.max_batch_size
        config.max_batch_size = values["max_batch_size"]
        if queued_images:  # the queue's bound stays the same number of images
            batching.default_queue_policy.max_queue_size = max(1, queued_images // config.max_batch_size)
    if "preferred_batch_sizes" in values:
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(values["preferred_batch_sizes"])
    if "max_queue_delay_us" in values:
        batching.max_queue_delay_microseconds = values["max_queue_delay_us"]
    if any(size > config.max_batch_size for size in batching.preferred_batch_size):
        raise ValueError(f"{name}: preferred batch sizes above max_batch_size {config.max_batch_size}")
    config.parameters[SERVING_PARAMETER].string_value = json.dumps(
        {
            knob: {"value": list(s.value) if isinstance(s.value, tuple) else s.value, "source": s.source}
            for knob, s in settings.items()
        }
    )
    return config


@dataclass(frozen=True)
class ServingPlan:
    """Every model of ``repository`` as it will be served on this machine."""

    repository: Path
    budget: CpuBudget
    tuning_note: str
    models: tuple[ModelPlan, ...]

    def lines(self) -> list[str]:
        """What ``serve`` prints: the CPU budget, the tuning file's fate, each model's settings and their sources."""
        width = max((len(model.name) for model in self.models), default=0)
        return [
            f"sized to {self.budget.describe()}; tuning: {self.tuning_note}",
            *(f"  {model.name:<{width}}  {model.line()}" for model in self.models if model.settings),
        ]

    @property
    def staged_configs(self) -> dict[str, pb.ModelConfig]:
        """What Triton runs, by model name."""
        return {model.name: model.staged for model in self.models}

    def stage(self, directory: Path) -> Path:
        """Write the staged repository into ``directory`` (created): configs rewritten, the rest linked."""
        directory.mkdir(parents=True)
        for model in self.models:
            source, staged = self.repository.resolve() / model.name, directory / model.name
            staged.mkdir()
            for entry in source.iterdir():
                if entry.name != CONFIG:
                    (staged / entry.name).symlink_to(entry)
            text = text_format.MessageToString(model.staged)
            (staged / CONFIG).write_text(f"# Staged by yolo-server serve from {source / CONFIG}\n{text}")
        return directory


def read_config(path: Path) -> pb.ModelConfig:
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def read_configs(repository: Path) -> dict[str, pb.ModelConfig]:
    """Every model config of ``repository``, by model name, in name order."""
    return {path.parent.name: read_config(path) for path in sorted(Path(repository).glob(f"*/{CONFIG}"))}


def parameters_of(config: pb.ModelConfig) -> dict[str, str]:
    """A config's ``parameters`` as plain strings (what :class:`~yolo_client.contract.Parameters` reads)."""
    return {key: value.string_value for key, value in config.parameters.items()}


def plan_serving(
    repository: Path,
    budget: CpuBudget | None = None,
    tuning: Path | None = None,
    cpu: CpuFeatures | None = None,
) -> ServingPlan:
    """Resolve every model's settings for this machine (``budget``, ``cpu``: this process' by default).

    ``tuning``: a tuning file applied whatever machine it was measured on; without it the repository's own
    :data:`TUNING_FILE` is applied where it was measured on the same CPUs and ISA.
    """
    budget = budget or cpu_budget()
    applied, note = _tuning(repository, tuning, budget, (cpu or CpuFeatures.of_this_machine()).isa())
    configs = read_configs(repository)
    roles = model_roles(configs)
    unknown = set(applied.models if applied else ()) - set(configs)
    if unknown:
        raise ValueError(f"the tuning file names models the repository lacks: {sorted(unknown)}")
    models = []
    for name, config in configs.items():
        settings = _resolve(config, roles[name][1], budget.cpus, applied.models.get(name) if applied else None)
        # staged here, so that what Triton would refuse is said before anything starts
        models.append(ModelPlan(name, config, settings, staged_config(name, config, settings)))
    return ServingPlan(Path(repository), budget, note, tuple(models))


def _tuning(repository: Path, given: Path | None, budget: CpuBudget, isa: str) -> tuple[Tuning | None, str]:
    """The tuning file to apply, if any, and a note on it for the printed plan."""
    if given is not None:
        tuning = Tuning.read(given)
        return tuning, f"{given} (measured on {tuning.machine()})"
    default = Path(repository) / TUNING_FILE
    if not default.is_file():
        return None, f"none ({default}: absent)"
    tuning = Tuning.read(default)
    if (tuning.cpus, tuning.isa) != (budget.cpus, isa):
        return None, f"{default} not applied: measured on {tuning.machine()}, this machine has {budget.cpus} ({isa})"
    return tuning, f"{default} (measured on {tuning.machine()})"


def _built(config: pb.ModelConfig, parameters: Mapping[str, str], knob: str) -> Any:
    """What the built config (its ``parameters`` read) holds for ``knob``, or None where the model has none."""
    if knob == INSTANCES:
        return sum(group.count for group in config.instance_group) if config.instance_group else None
    if knob in (*_THREADS, "precision") and "artifact" in parameters:  # a cpu detector (or the fused model)
        return parameters[knob] if knob == "precision" else int(parameters[knob])
    if not config.HasField("dynamic_batching"):
        return None
    return {
        "max_batch_size": config.max_batch_size,
        "preferred_batch_sizes": tuple(config.dynamic_batching.preferred_batch_size),
        "max_queue_delay_us": config.dynamic_batching.max_queue_delay_microseconds,
    }.get(knob)


def _resolve(config: pb.ModelConfig, role: str, cpus: int, tuning: ModelTuning | None) -> dict[str, Setting]:
    """Each setting of one model: tuned, else built where the build was given it, else sized."""
    parameters = parameters_of(config)
    sized_knobs = Sized.left_to_serve(parameters)
    sized = sized_settings(role, config.backend == "python", cpus)
    tuned = tuning.items() if tuning else {}
    settings = {}
    for knob in TUNABLE:
        built = _built(config, parameters, knob)
        if knob in tuned:
            if built is None:
                raise ValueError(f"{config.name} has no {knob} to tune")
            settings[knob] = Setting(tuned[knob], TUNED)
        elif knob in sized_knobs and knob in sized:
            settings[knob] = Setting(sized[knob], SIZED)
        elif knob in (INSTANCES, *_THREADS) and built is not None:
            settings[knob] = Setting(built, BUILD)
    return settings
