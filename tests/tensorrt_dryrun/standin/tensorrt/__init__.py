"""A stand-in for TensorRT's Python bindings (``import tensorrt``), for Torch-TensorRT's dry run without a GPU.

No registry here serves TensorRT's libraries, so the bindings cannot load. In a dry run Torch-TensorRT lowers,
checks converters and partitions, and builds no network: it only needs ``tensorrt`` to import and to name its
types (``ITensor``, ``DataType.HALF``, ``ActivationType.RELU``, ...) in annotations, dispatch tables and
decorators. So every capitalized name is a distinct placeholder class, its members distinct placeholders too.
Nothing here builds, runs or accepts a network: a call that would need the real library (``Builder``,
``Runtime``) gets a placeholder object whose methods return placeholders, and the dry run never makes one
(``dryrun=True`` stops before ``convert_module``).

The layout mirrors the real package, whose ``__init__`` re-exports its ``tensorrt.tensorrt`` bindings module:
Torch-TensorRT spells the same type both ways (``tensorrt.ITensor``, ``tensorrt.tensorrt.ITensor``).
"""

from __future__ import annotations

import sys
from typing import Any

# the release NGC 25.10 ships beside Torch-TensorRT 2.9.0 (docker/Dockerfile.builder)
__version__ = "10.13.3.9"


class _Placeholder(type):
    """A TensorRT type: any member is another placeholder, made once and kept."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        member = _placeholder(f"{cls.__name__}.{name}")
        setattr(cls, name, member)
        return member


class _Object(metaclass=_Placeholder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(name)


def _placeholder(name: str) -> type:
    return _Placeholder(name, (_Object,), {})


DataType = _placeholder("DataType")
# the bindings' dtype aliases (tensorrt.float16 is DataType.HALF)
_DTYPE_ALIASES = {
    "float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16", "int8": "INT8", "int32": "INT32", "int64": "INT64",
    "bool": "BOOL", "uint8": "UINT8", "fp8": "FP8", "int4": "INT4", "fp4": "FP4",
}  # fmt: skip
for _alias, _member in _DTYPE_ALIASES.items():
    globals()[_alias] = getattr(DataType, _member)


def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
    """Torch-TensorRT's fx frontend registers TensorRT's plugins at import."""
    return True


def __getattr__(name: str) -> Any:
    # lower-case names are functions or submodules (tensorrt_rtx, plugin): absent, as in a build without them
    if not name[:1].isupper():
        raise AttributeError(f"module 'tensorrt' (stand-in) has no attribute {name!r}")
    value = _placeholder(name)
    globals()[name] = value
    return value


tensorrt = sys.modules[__name__]
