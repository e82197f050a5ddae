"""The exported program Torch-TensorRT compiles: every official cfg and the demo model, dynamic batch, equal to eager.

This is everything of the GPU build before the TensorRT call, run on the CPU. The tiny models are exported at
their cfg's size up to the tensorrt target's default max batch; the large ones at 320x320 (``--size 320``: the
spatial size is static in the program, so every layer and the dynamic batch are still what is tested) up to 4
(``--max-batch-size 4``), which keeps the eager reference affordable on 2 cores while still crossing the traced
batch of 2 in both directions.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers.darknet_files import DEMO_CFG, DEMO_WEIGHTS, cfg_path
from yolo_server.darknet import load_darknet
from yolo_server.export.program import BatchRange, export_program
from yolo_server.repository.spec import TARGET_BATCHING

GPU_MAX = TARGET_BATCHING["tensorrt"].max_batch_size
LARGE_SIZE = 320
MODELS = {  # cfg, weights, max batch, input size (None: the cfg's)
    "demo": (DEMO_CFG, DEMO_WEIGHTS, GPU_MAX, None),
    "yolov4-tiny": (cfg_path("yolov4-tiny"), None, GPU_MAX, None),
    "yolov4": (cfg_path("yolov4"), None, 4, LARGE_SIZE),
    "yolov4-csp": (cfg_path("yolov4-csp"), None, 4, LARGE_SIZE),
    "yolov4x-mish": (cfg_path("yolov4x-mish"), None, 4, LARGE_SIZE),
}
FP32_NOISE = 1e-5  # relative to the head's largest magnitude


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(MODELS))
def test_exported_program_equals_eager_at_batch_1_3_and_max(name: str) -> None:
    cfg, weights, maximum, size = MODELS[name]
    model, spec = load_darknet(cfg, weights, size)
    batches = BatchRange(1, maximum // 2, maximum)
    program = export_program(model, spec, batches, device="cpu")

    batch_dim = _user_input_batch(program)
    assert not isinstance(batch_dim, int), "the batch dimension was specialized"
    batch_range = program.range_constraints[batch_dim.node.expr]
    assert (batch_range.lower, batch_range.upper) == (1, maximum)

    x = torch.rand(maximum, 3, spec.net.height, spec.net.width, generator=torch.Generator().manual_seed(1))
    compiled = program.module()
    with torch.no_grad():
        reference = model.eval()(x)
        for batch in (1, 3, maximum):
            heads = compiled(x[:batch])
            assert len(heads) == len(reference)
            for head, ref in zip(heads, reference, strict=True):
                assert head.shape == (batch, *ref.shape[1:]) and head.dtype == torch.float32
                scale = max(1.0, ref[:batch].abs().max().item())
                assert (head - ref[:batch]).abs().max().item() <= FP32_NOISE * scale, f"{name} batch {batch}"
        with pytest.raises(AssertionError, match=rf"size\(\)\[0\] <= {maximum}"):
            compiled(torch.zeros(maximum + 1, 3, spec.net.height, spec.net.width))


def _user_input_batch(program: torch.export.ExportedProgram) -> object:
    """Dim 0 of the image input as ``torch.export`` recorded it: a symbol when dynamic, an int when specialized."""
    [user_input] = [spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_input)
    return placeholder.meta["val"].shape[0]


def test_a_single_batch_size_exports_static() -> None:
    model, spec = load_darknet(*MODELS["demo"][:2])
    program = export_program(model, spec, BatchRange(4, 4, 4))
    assert _user_input_batch(program) == 4


def test_batch_range_is_checked() -> None:
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        BatchRange(4, 2, 8)
    assert [BatchRange(1, 1, 1).example, BatchRange(1, 1, 8).example, BatchRange(1, 8, 32).example] == [1, 2, 8]
