"""Repository spec -> one Triton ``ModelConfig`` protobuf per model (no export, no torch).

Example:
    >>> configs = model_configs(spec, load_spec("models/darknet/yolov4-tiny.cfg", 416))
    >>> sorted(configs)   # spec.fused (the cpu build's default): no preprocess, yolov4_tiny is the fused Python model
    ['yolov4_tiny', 'yolov4_tiny_detector', 'yolov4_tiny_postprocess', 'yolov4_tiny_tensor']
    >>> # not fused (--no-fused, tensorrt): yolov4_tiny is the bytes ensemble, and yolov4_tiny_preprocess is added
    >>> text_format.MessageToString(configs["yolov4_tiny_detector"])   # config.pbtxt
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from tritonclient.grpc import model_config_pb2 as pb

from yolo_client.contract import (
    BOXES,
    CLASSES,
    COUNT,
    DETECTOR_INPUT,
    DETECTOR_PIXELS,
    IMAGE,
    INPUT,
    PIXELS,
    RESIZE,
    RESIZE_LEN,
    SCORES,
    head_name,
)
from yolo_server.darknet.cfg import ConvSpec, DarknetSpec, MaxPoolSpec, RouteSpec, UpsampleSpec, YoloSpec
from yolo_server.darknet.weights import output_channels
from yolo_server.repository.spec import CFG_COPY, RepositorySpec
from yolo_server.triton.settings import (
    BATCH_THREADS,
    INSTANCES,
    LONE_THREADS,
    DetectorSettings,
    PostprocessSettings,
    PreprocessSettings,
    Sized,
    warmup_batches,
)

Dims = Sequence[int]
# an ensemble: its name, its inputs (name, data type, dims) and its steps
EnsembleEntry = tuple[str, list[tuple[str, int, Dims]], list[pb.ModelEnsembling.Step]]
# a ModelInput or ModelOutput (model_config_pb2 has no type information: mypy sees Any)
_Message = TypeVar("_Message")
RAGGED_OUTPUTS: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    (BOXES, pb.TYPE_FP32, (-1, 4)),
    (SCORES, pb.TYPE_FP32, (-1,)),
    (CLASSES, pb.TYPE_INT32, (-1,)),
    (COUNT, pb.TYPE_INT32, (1,)),
)


def head_shapes(darknet: DarknetSpec) -> list[tuple[int, int, int]]:
    """``(A*(5+C), h, w)`` of every [yolo] input in cfg order, from the layer list alone.

    Spatial sizes follow darknet: conv ``(s + 2p - k) // stride + 1``, maxpool
    ``(s + padding - size) // stride + 1``, upsample ``s * stride``, route the
    size of its first source, shortcut and yolo unchanged.
    """
    channels = output_channels(darknet)
    height, width = darknet.net.height, darknet.net.width
    sizes: list[tuple[int, int]] = []
    shapes: list[tuple[int, int, int]] = []
    for index, layer in enumerate(darknet.layers):
        if isinstance(layer, ConvSpec):
            height = (height + 2 * layer.padding - layer.size) // layer.stride + 1
            width = (width + 2 * layer.padding - layer.size) // layer.stride + 1
        elif isinstance(layer, MaxPoolSpec):
            height = (height + layer.padding - layer.size) // layer.stride + 1
            width = (width + layer.padding - layer.size) // layer.stride + 1
        elif isinstance(layer, UpsampleSpec):
            height, width = height * layer.stride, width * layer.stride
        elif isinstance(layer, RouteSpec):
            height, width = sizes[layer.layers[0]]
        elif isinstance(layer, YoloSpec):
            shapes.append((channels[index - 1], height, width))
        sizes.append((height, width))
    return shapes


def _tensor(message: Callable[..., _Message], name: str, data_type: int, dims: Dims, **fields: bool) -> _Message:
    return message(name=name, data_type=data_type, dims=list(dims), **fields)


def _pixels(spec: RepositorySpec) -> bool:
    """Whether the preprocess hands the detector uint8 ``PIXELS`` (cpu) rather than float32 ``INPUT`` (tensorrt).

    The cpu detector scales uint8 itself (a quarter of the bytes through shared memory); the tensorrt
    detector is a libtorch model with one float32 input.
    """
    return spec.info.target == "cpu"


def _parameters(config: pb.ModelConfig, values: Mapping[str, str]) -> None:
    for key in sorted(values):
        config.parameters[key].string_value = values[key]


def _batching(spec: RepositorySpec, preferred: Sequence[int] = ()) -> pb.ModelDynamicBatching:
    return pb.ModelDynamicBatching(
        preferred_batch_size=sorted(set(preferred)),
        max_queue_delay_microseconds=spec.batching.max_queue_delay_us,
        default_queue_policy=pb.ModelQueuePolicy(
            max_queue_size=spec.batching.max_queue_size,
            timeout_action=pb.ModelQueuePolicy.REJECT,
            default_timeout_microseconds=spec.batching.queue_timeout_us,
        ),
    )


# a thread count left to serve: the config's placeholder (0: the plugin's own choice, one per core)
PLACEHOLDER_THREADS = 0


def _python_model(
    spec: RepositorySpec, name: str, kind: str, on_gpu: bool = False, preferred: Sequence[int] = ()
) -> pb.ModelConfig:
    """A Python model of instance ``kind`` (an :class:`Instances` field)."""
    group_kind = pb.ModelInstanceGroup.KIND_GPU if on_gpu else pb.ModelInstanceGroup.KIND_CPU
    return pb.ModelConfig(
        name=name,
        backend="python",
        max_batch_size=spec.batching.max_batch_size,
        dynamic_batching=_batching(spec, preferred),
        instance_group=[pb.ModelInstanceGroup(count=spec.instances.count(kind), kind=group_kind)],
    )


def _sized(spec: RepositorySpec, kind: str, threads: Sequence[str] = ()) -> dict[str, str]:
    """The ``Sized`` parameter of a model: its instances unless given, and ``threads`` (those the user left)."""
    knobs = ((INSTANCES,) if getattr(spec.instances, kind) is None else ()) + tuple(threads)
    return Sized(knobs).to_parameters()


def _left_threads(spec: RepositorySpec) -> tuple[str, ...]:
    """A detector's thread knobs serve sizes: both, unless ``--detector-threads`` was given."""
    return (LONE_THREADS, BATCH_THREADS) if spec.detector_threads is None else ()


def preprocess_config(spec: RepositorySpec) -> pb.ModelConfig:
    """``NAME_preprocess``: IMAGE bytes [1] -> PIXELS uint8 (cpu) or INPUT fp32 (tensorrt) [3, H, W], RESIZE fp32 [6]."""
    info = spec.info
    config = _python_model(spec, spec.names.preprocess, "preprocess")
    config.input.append(_tensor(pb.ModelInput, IMAGE, pb.TYPE_STRING, (1,)))
    network = (PIXELS, pb.TYPE_UINT8) if _pixels(spec) else (INPUT, pb.TYPE_FP32)
    config.output.append(_tensor(pb.ModelOutput, *network, (3, info.input_height, info.input_width)))
    config.output.append(_tensor(pb.ModelOutput, RESIZE, pb.TYPE_FP32, (RESIZE_LEN,)))
    _parameters(config, {**preprocess_settings(spec, _pixels(spec)).to_parameters(), **_sized(spec, "preprocess")})
    return config


def preprocess_settings(spec: RepositorySpec, pixels: bool) -> PreprocessSettings:
    info, decoding = spec.info, spec.decoding
    return PreprocessSettings(
        info.input_width,
        info.input_height,
        info.letterbox,
        decoding.max_pixels,
        decoding.max_bytes,
        pixels,
        decoding.jpeg_decode,
    )


def _detector_settings(spec: RepositorySpec, batch_threads: int) -> DetectorSettings:
    info = spec.info
    lone_threads = PLACEHOLDER_THREADS if spec.detector_threads is None else spec.detector_threads
    return DetectorSettings(
        info.input_width,
        info.input_height,
        info.precision,
        spec.artifact,
        lone_threads,
        batch_threads,
        spec.int8_artifact,
        spec.int8_gate,
    )


def _merged(*parameters: Mapping[str, str]) -> dict[str, str]:
    """One model's parameters from several settings; a key they share must have one value."""
    merged: dict[str, str] = {}
    for values in parameters:
        for key, value in values.items():
            if merged.setdefault(key, value) != value:
                raise ValueError(f"parameter {key!r} is both {merged[key]!r} and {value!r}")
    return merged


# a fused instance batches only while the others are busy too: one thread each beats threads spinning against
# each other's (triton.runtime.LoadAwareRunner; docs/cpu-serving.md "One fused model"). Serve sizes it like
# the instances (launcher.sizing); this is what plain tritonserver runs
FUSED_BATCH_THREADS = 1


def fused_config(spec: RepositorySpec) -> pb.ModelConfig:
    """``NAME`` (cpu, fused): IMAGE bytes [1] -> BOXES, SCORES, CLASSES, COUNT, in one Python model.

    Its parameters are the image entry point's :class:`ModelInfo` plus the settings of the three steps it
    runs; the IR and the cfg copy sit in its own version directory.
    """
    config = _python_model(spec, spec.names.images, "fused")
    config.input.append(_tensor(pb.ModelInput, IMAGE, pb.TYPE_STRING, (1,)))
    config.output.extend(_tensor(pb.ModelOutput, *entry) for entry in RAGGED_OUTPUTS)
    lone = (LONE_THREADS,) if spec.detector_threads is None else ()
    parameters = _merged(
        spec.info.to_parameters(),
        preprocess_settings(spec, pixels=True).to_parameters(),
        _detector_settings(spec, FUSED_BATCH_THREADS).to_parameters(),
        _postprocess_settings(spec).to_parameters(),
        _sized(spec, "fused", (*lone, BATCH_THREADS)),
    )
    _parameters(config, parameters)
    return config


def detector_config(spec: RepositorySpec, heads: Sequence[tuple[int, int, int]]) -> pb.ModelConfig:
    """``NAME_detector``: INPUT__0 fp32 [3, H, W] -> YOLO__i fp32 [A*(5+C), h, w].

    cpu: the Python backend running the OpenVINO artifact; it also takes uint8
    ``PIXELS__0`` with ``RESIZE`` (each optional, one of the two sent). tensorrt:
    Triton's libtorch backend on the GPU. Both prefer ``spec.batching.preferred_batch_sizes``.
    """
    info, batching = spec.info, spec.batching
    if info.target == "cpu":
        config = _python_model(spec, spec.names.detector, "detector", preferred=batching.preferred_batch_sizes)
        settings = _detector_settings(
            spec, PLACEHOLDER_THREADS if spec.detector_threads is None else spec.detector_threads
        )
        _parameters(config, {**settings.to_parameters(), **_sized(spec, "detector", _left_threads(spec))})
    else:
        config = pb.ModelConfig(
            name=spec.names.detector,
            platform="pytorch_libtorch",
            max_batch_size=batching.max_batch_size,
            default_model_filename=spec.artifact,
            dynamic_batching=_batching(spec, batching.preferred_batch_sizes),
            instance_group=[
                pb.ModelInstanceGroup(count=spec.instances.count("detector"), kind=pb.ModelInstanceGroup.KIND_GPU)
            ],
        )
        _parameters(config, {"INFERENCE_MODE": "true", "precision": info.precision})
    input_dims = (3, info.input_height, info.input_width)
    optional = {"optional": True} if _pixels(spec) else {}
    config.input.append(_tensor(pb.ModelInput, DETECTOR_INPUT, pb.TYPE_FP32, input_dims, **optional))
    if _pixels(spec):
        config.input.append(_tensor(pb.ModelInput, DETECTOR_PIXELS, pb.TYPE_UINT8, input_dims, **optional))
        config.input.append(_tensor(pb.ModelInput, RESIZE, pb.TYPE_FP32, (RESIZE_LEN,), **optional))
    for index, dims in enumerate(heads):
        config.output.append(_tensor(pb.ModelOutput, head_name(index), pb.TYPE_FP32, dims))
    if info.target == "tensorrt":  # the cpu detector's runner warms up in Python (triton.runtime.load_runner)
        for batch in warmup_batches(batching.max_batch_size):
            warmup = config.model_warmup.add(name=f"zeros_batch_{batch}", batch_size=batch, count=2)
            warmup.inputs[DETECTOR_INPUT].CopyFrom(
                pb.ModelWarmup.Input(data_type=pb.TYPE_FP32, dims=list(input_dims), zero_data=True)
            )
    return config


def postprocess_config(spec: RepositorySpec, heads: Sequence[tuple[int, int, int]]) -> pb.ModelConfig:
    """``NAME_postprocess``: YOLO__i + RESIZE -> BOXES, SCORES, CLASSES, COUNT (ragged with a count).

    On the tensorrt target its instances are KIND_GPU: decode and NMS run in torch on that GPU.
    """
    on_gpu = spec.info.target == "tensorrt"
    config = _python_model(spec, spec.names.postprocess, "postprocess", on_gpu)
    for index, head_dims in enumerate(heads):
        config.input.append(_tensor(pb.ModelInput, head_name(index), pb.TYPE_FP32, head_dims))
    config.input.append(_tensor(pb.ModelInput, RESIZE, pb.TYPE_FP32, (RESIZE_LEN,)))
    for name, data_type, dims in RAGGED_OUTPUTS:
        config.output.append(_tensor(pb.ModelOutput, name, data_type, dims))
    _parameters(
        config,
        {**spec.info.to_parameters(), **_postprocess_settings(spec).to_parameters(), **_sized(spec, "postprocess")},
    )
    return config


def _postprocess_settings(spec: RepositorySpec) -> PostprocessSettings:
    return PostprocessSettings(CFG_COPY, spec.pre_nms_top_k, spec.postprocess_threads)


def _step(model: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> pb.ModelEnsembling.Step:
    return pb.ModelEnsembling.Step(model_name=model, model_version=-1, input_map=inputs, output_map=outputs)


def ensemble_configs(spec: RepositorySpec, heads: Sequence[tuple[int, int, int]]) -> list[pb.ModelConfig]:
    """``NAME`` (IMAGE bytes; not when ``spec.fused``) and ``NAME_tensor`` (INPUT + RESIZE): the entry points.

    The tensor entry sends ``INPUT`` to the detector and ``RESIZE`` straight to the postprocess.
    """
    info, names = spec.info, spec.names
    yolo = {head_name(index): f"yolo_{index}" for index in range(len(heads))}
    results = {name: name for name, _, _ in RAGGED_OUTPUTS}

    def detect_and_post(detector_inputs: Mapping[str, str], resize: str) -> list[pb.ModelEnsembling.Step]:
        return [
            _step(names.detector, detector_inputs, yolo),
            _step(names.postprocess, {**yolo, RESIZE: resize}, results),
        ]

    network_input = (INPUT, pb.TYPE_FP32, (3, info.input_height, info.input_width))
    if _pixels(spec):
        decoded = {PIXELS: "pixels", RESIZE: "resize"}
        from_decoded = {DETECTOR_PIXELS: "pixels", RESIZE: "resize"}
    else:
        decoded, from_decoded = {INPUT: "input", RESIZE: "resize"}, {DETECTOR_INPUT: "input"}
    images: EnsembleEntry = (
        names.images,
        [(IMAGE, pb.TYPE_STRING, (1,))],
        [_step(names.preprocess, {IMAGE: IMAGE}, decoded)] + detect_and_post(from_decoded, "resize"),
    )
    tensors: EnsembleEntry = (
        names.tensor_ensemble,
        [network_input, (RESIZE, pb.TYPE_FP32, (RESIZE_LEN,))],
        detect_and_post({DETECTOR_INPUT: INPUT}, RESIZE),
    )
    entries = [tensors] if spec.fused else [images, tensors]
    configs = []
    for name, inputs, steps in entries:
        config = pb.ModelConfig(
            name=name,
            platform="ensemble",
            max_batch_size=spec.batching.max_batch_size,
            ensemble_scheduling=pb.ModelEnsembling(step=steps),
        )
        config.input.extend(_tensor(pb.ModelInput, *entry) for entry in inputs)
        config.output.extend(_tensor(pb.ModelOutput, *entry) for entry in RAGGED_OUTPUTS)
        _parameters(config, info.to_parameters())
        configs.append(config)
    return configs


def model_configs(spec: RepositorySpec, darknet: DarknetSpec) -> dict[str, pb.ModelConfig]:
    """Every config of a repository for ``spec.info.target``, keyed by model name (nothing exported).

    Five models, or four when ``spec.fused``: the fused image model replaces the preprocess and the bytes ensemble.
    """
    if (darknet.net.width, darknet.net.height) != (spec.info.input_width, spec.info.input_height):
        raise ValueError(
            f"cfg spec is {darknet.net.width}x{darknet.net.height}, "
            f"repository spec {spec.info.input_width}x{spec.info.input_height}"
        )
    heads = head_shapes(darknet)
    configs = [fused_config(spec) if spec.fused else preprocess_config(spec)]
    configs += [detector_config(spec, heads), postprocess_config(spec, heads), *ensemble_configs(spec, heads)]
    return {config.name: config for config in configs}
