"""A stand-in ``torch_tensorrt`` with the real package's front door, recording what it is handed.

It keeps the behaviour that decides whether a build can work, as Torch-TensorRT 2.x does it:
- ``compile(module, ir="torchscript")`` scripts a module that is not already a ``ScriptModule``;
- ``dynamo.compile`` takes a ``torch.export.ExportedProgram`` (anything else is an error) and returns a
  ``GraphModule`` (here the program's own module: no engines, same numbers);
- ``save(..., output_format="torchscript", inputs=[...])`` traces that module with the example inputs and saves
  TorchScript, the file Triton's libtorch backend loads.

Example:
    >>> standin = StandInTorchTensorRT()
    >>> monkeypatch.setitem(sys.modules, "torch_tensorrt", standin)
    >>> export_tensorrt(...); standin.calls["dynamo.compile"]
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SAVE_FORMATS = ("exported_program", "torchscript")


@dataclass(frozen=True)
class Input:
    """``torch_tensorrt.Input``: a dynamic-shape input spec (the keywords the real one takes)."""

    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32


class StandInTorchTensorRT(types.ModuleType):
    """The module object to put in ``sys.modules["torch_tensorrt"]``; ``calls`` maps entry point -> kwargs."""

    def __init__(self) -> None:
        super().__init__("torch_tensorrt")
        self.calls: dict[str, dict[str, Any]] = {}
        self.Input = Input
        self.dynamo = types.SimpleNamespace(compile=self._dynamo_compile)

    def compile(self, module: torch.nn.Module, ir: str = "default", **kwargs: Any) -> torch.nn.Module:
        self.calls["compile"] = {"module": module, "ir": ir, **kwargs}
        if ir in ("torchscript", "ts"):
            if not isinstance(module, torch.jit.ScriptModule):
                module = torch.jit.script(module)  # what the TorchScript frontend does first
            return module
        if not isinstance(module, torch.export.ExportedProgram):
            raise NotImplementedError("the stand-in's dynamo front door takes an ExportedProgram")
        return self._dynamo_compile(module, **kwargs)

    def _dynamo_compile(self, exported_program: Any, inputs: Any = None, **kwargs: Any) -> torch.nn.Module:
        if not isinstance(exported_program, torch.export.ExportedProgram):
            raise AssertionError(f"Input graph should be an ExportedProgram, got {type(exported_program).__name__}")
        self.calls["dynamo.compile"] = {"exported_program": exported_program, "inputs": inputs, **kwargs}
        return exported_program.module()

    def save(
        self, module: torch.nn.Module, file_path: str = "", *, output_format: str = "exported_program",
        inputs: list[torch.Tensor] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        self.calls["save"] = {"module": module, "file_path": file_path, "output_format": output_format,
                              "inputs": inputs, **kwargs}  # fmt: skip
        if output_format not in SAVE_FORMATS:
            raise ValueError(f"output_format {output_format!r} is not one of {SAVE_FORMATS}")
        if output_format == "torchscript":
            if not inputs:
                raise ValueError("the torchscript format traces the module: pass example inputs")
            torch.jit.save(torch.jit.trace(module, tuple(inputs), check_trace=False), file_path)
        elif isinstance(module, torch.export.ExportedProgram):
            torch.export.save(module, Path(file_path))
        else:  # as torch.export.save itself refuses it
            raise TypeError(f"the exported_program format saves an ExportedProgram, got {type(module).__name__}")
