"""Oversized requests at a server's gRPC port, as an attacker's client sends them: what bench/bench_oversized.py
and tests/integration/test_oversized.py send.

A request is serialized once (a 1 GiB ``ModelInferRequest`` is built in a second) and sent as bytes on a raw
gRPC channel without size limits: tritonclient's own would copy it again.

Example:
    >>> with RawChannel("127.0.0.1:8001") as channel:
    ...     outcome = channel.send(oversized_request("yolov4_tiny_shapes", 1 << 30))
    >>> outcome.code, outcome.seconds
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import grpc

from yolo_client.contract import IMAGE

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MIB = 1 << 20


def image_request(model: str, image: bytes) -> bytes:
    """A serialized ``ModelInferRequest`` carrying ``image`` as the one element of :data:`IMAGE`."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name=IMAGE, datatype="BYTES")
    tensor.shape.extend([1, 1])
    request.raw_input_contents.append(struct.pack("<I", len(image)) + image)
    return request.SerializeToString()


def oversized_request(model: str, size: int) -> bytes:
    """A request whose one image is ``size`` zero bytes (no image format: a model that saw it would refuse it)."""
    return image_request(model, bytes(size))


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    message: str
    seconds: float


class RawChannel:
    """An unlimited gRPC channel that sends serialized inference requests."""

    def __init__(self, url: str) -> None:
        unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channel = grpc.insecure_channel(url, options=unlimited)
        self.infer = self.channel.unary_unary(MODEL_INFER, request_serializer=bytes, response_deserializer=bytes)

    def send(self, request: bytes, timeout_s: float = 120.0) -> Outcome:
        start = time.monotonic()
        try:
            self.infer(request, timeout=timeout_s)
        except grpc.RpcError as error:
            return Outcome(error.code(), error.details() or "", time.monotonic() - start)
        return Outcome(grpc.StatusCode.OK, "", time.monotonic() - start)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RawChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
