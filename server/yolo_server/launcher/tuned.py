"""The settings ``yolo-server tune`` chose on one machine, as a JSON file that ``serve`` applies.

``tune`` writes :data:`TUNING_FILE` into the repository it measured (or wherever ``--output`` says); ``serve``
applies the repository's own file where it was measured on a machine like the serving one (the same CPUs and
ISA), and a file given with ``--tuning`` always. Tuned settings win over the build's and the sizing rule's.

Example:
    >>> tuning = Tuning(cpus=2, isa="avx avx2 fma", models={"m": ModelTuning(instances=3, batch_threads=1)})
    >>> tuning.write(Path("model_repository") / TUNING_FILE)
    >>> Tuning.read(Path("model_repository") / TUNING_FILE) == tuning
    True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# beside the models of a repository: Triton reads only directories there, so it ignores the file
TUNING_FILE = "tuning.json"


@dataclass(frozen=True)
class ModelTuning:
    """One model's tuned settings; None leaves the setting to the build or the sizing rule."""

    instances: int | None = None
    lone_threads: int | None = None
    batch_threads: int | None = None
    max_batch_size: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_us: int | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        for name, least in (("instances", 1), ("max_batch_size", 1), ("lone_threads", 0), ("batch_threads", 0)):
            value = getattr(self, name)
            if value is not None and value < least:  # threads 0: the plugin's choice, one per core
                raise ValueError(f"tuned {name} must be at least {least}, got {value}")
        if self.max_queue_delay_us is not None and self.max_queue_delay_us < 0:
            raise ValueError(f"tuned max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")

    def items(self) -> dict[str, Any]:
        """The settings given, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


TUNABLE = tuple(f.name for f in dataclasses.fields(ModelTuning))


@dataclass(frozen=True)
class Tuning:
    """What ``tune`` chose, per model, and the machine it measured on (``cpus`` sized for, the CPU's ``isa``)."""

    cpus: int
    isa: str
    models: Mapping[str, ModelTuning] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "measured_on": {"cpus": self.cpus, "isa": self.isa},
            "models": {
                name: {key: list(v) if isinstance(v, tuple) else v for key, v in tuning.items().items()}
                for name, tuning in sorted(self.models.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tuning:
        """Raises ValueError naming what is malformed."""
        try:
            machine = data["measured_on"]
            models = {}
            for name, values in data["models"].items():
                unknown = set(values) - set(TUNABLE)
                if unknown:
                    raise ValueError(f"model {name}: unknown settings {sorted(unknown)} (known: {', '.join(TUNABLE)})")
                preferred = values.get("preferred_batch_sizes")
                models[name] = ModelTuning(
                    **{**values, "preferred_batch_sizes": None if preferred is None else tuple(preferred)}
                )
            return cls(int(machine["cpus"]), str(machine["isa"]), models)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a tuning file: {exc!r}") from exc

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Tuning:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def machine(self) -> str:
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''} ({self.isa})"
