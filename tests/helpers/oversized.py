"""Oversized requests and the memory they cost: what tests/integration/test_oversized.py and
bench/bench_oversized.py send and measure.

A request is serialized once (a 1 GiB ``ModelInferRequest`` is built in a second) and sent as bytes on a raw
gRPC channel without size limits, as an attacker's client would: tritonclient's own would copy it again.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from yolo_server.launcher.supervise import stub_processes

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MIB = 1 << 20


def image_request(model: str, image: bytes) -> bytes:
    """A serialized ``ModelInferRequest`` carrying ``image`` as the one element of ``IMAGE``."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="IMAGE", datatype="BYTES")
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


@dataclass(frozen=True)
class Memory:
    """Resident memory of tritonserver and its stubs (MiB), and the server's Python-backend pools in /dev/shm."""

    triton_mib: int
    stubs_mib: int
    shm_pools_mib: int

    @property
    def total_mib(self) -> int:
        """What the server holds: tritonserver plus its stubs (shared pages counted in each process that maps them)."""
        return self.triton_mib + self.stubs_mib

    def __str__(self) -> str:
        return f"{self.total_mib} MiB (tritonserver {self.triton_mib} + stubs {self.stubs_mib}; shm pools {self.shm_pools_mib})"


def resident_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def server_memory(triton_pid: int, shm_prefix: str) -> Memory:
    """``shm_prefix``: how the server's shared-memory regions start (``yolo_server_<launcher pid>_``)."""
    stubs = sum(resident_mib(pid) for pid in stub_processes(triton_pid))
    pools = sum(path.stat().st_size for path in Path("/dev/shm").glob(f"{shm_prefix}*"))
    return Memory(resident_mib(triton_pid), stubs, pools // MIB)
