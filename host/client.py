"""A client for one netcut-agent: per-call deadlines, bounded retries, chunked uploads."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from netcut_protos.agent.v1 import agent_pb2 as pb
from netcut_protos.agent.v1 import agent_pb2_grpc as pb_grpc

from .errors import EXIT_TARGET_FAILED, EXIT_USAGE, HostError, TargetError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
CONNECT_TIMEOUT_S = 3.0
CALL_TIMEOUT_S = 10.0
RETRIES = 2
KEEPALIVE_S = 10


class AgentUnavailable(TargetError):
    """The agent cannot be reached (nothing listening, wrong address, network down)."""


# Statuses that say the request was wrong (the model, the options, the credentials), not the board.
REQUEST_ERRORS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)


class AgentCallError(HostError):
    """The agent answered with an error status; `code` is the grpc.StatusCode."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code

    @property
    def exit_code(self) -> int:
        return EXIT_USAGE if self.code in REQUEST_ERRORS else EXIT_TARGET_FAILED

    def __str__(self) -> str:
        return f"the agent refused: {super().__str__()} ({self.code.name})"


@dataclass
class Credentials:
    token: str | None = None
    ca_cert: bytes | None = None  # TLS: trust this CA (None: plaintext)
    client_cert: bytes | None = None  # mutual TLS
    client_key: bytes | None = None


def model_format(path: Path) -> int:
    return pb.MODEL_FORMAT_TFLITE if path.suffix.lower() == ".tflite" else pb.MODEL_FORMAT_ONNX


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


class AgentClient:
    def __init__(
        self, address: str, credentials: Credentials | None = None, connect_timeout: float = CONNECT_TIMEOUT_S
    ):
        self.address = address
        self.credentials = credentials or Credentials()
        options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 8 * 1024 * 1024),
            # A board that vanishes without closing the connection (power, network, a frozen tunnel)
            # fails the call within about 20 s instead of waiting for the benchmark's deadline.
            ("grpc.keepalive_time_ms", KEEPALIVE_S * 1000),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_S * 1000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if self.credentials.ca_cert is not None:
            creds = grpc.ssl_channel_credentials(
                self.credentials.ca_cert, self.credentials.client_key, self.credentials.client_cert
            )
            self.channel = grpc.secure_channel(address, creds, options)
        else:
            self.channel = grpc.insecure_channel(address, options)
        self.stub = pb_grpc.AgentStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.connect_timeout = connect_timeout
        self._connected = False

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def _metadata(self):
        return (("authorization", f"Bearer {self.credentials.token}"),) if self.credentials.token else ()

    def connect(self) -> None:
        if self._connected:
            return
        try:
            grpc.channel_ready_future(self.channel).result(timeout=self.connect_timeout)
        except grpc.FutureTimeoutError:
            raise AgentUnavailable(
                f"cannot reach the agent at {self.address} within {self.connect_timeout:g} s: "
                "is `netcut-agent serve` running there, and is the address right?"
            ) from None
        self._connected = True

    def _call(self, method: Callable, request: object, timeout: float = CALL_TIMEOUT_S, idempotent: bool = True):  # noqa: ANN202 - the method's own reply type
        self.connect()
        for attempt in range(RETRIES + 1):
            try:
                return method(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and idempotent and attempt < RETRIES:
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise self._translate(exc) from None

    def _translate(self, exc: grpc.RpcError) -> Exception:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return AgentUnavailable(f"the agent at {self.address} is unavailable: {exc.details()}")
        return AgentCallError(exc.code(), exc.details() or exc.code().name)

    # ------------------------------------------------------------ calls

    def info(self) -> pb.InfoResponse:
        return self._call(self.stub.Info, pb.InfoRequest())

    def health(self, service: str = "") -> str:
        reply = self._call(self.health_stub.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def has_model(self, model_id: str) -> bool:
        return self._call(self.stub.HasModel, pb.ModelRef(model_id=model_id)).present

    def list_models(self) -> pb.ListModelsResponse:
        return self._call(self.stub.ListModels, pb.ListModelsRequest())

    def delete_model(self, model_id: str) -> bool:
        return self._call(self.stub.DeleteModel, pb.ModelRef(model_id=model_id)).deleted

    def upload(self, path: Path, label: str = "", model_id: str | None = None) -> str:
        """Upload a model file unless the agent already holds it; returns the model id."""
        path = Path(path)
        model_id = model_id or sha256_file(path)
        if self.has_model(model_id):
            return model_id
        size = path.stat().st_size

        def chunks() -> Iterator[pb.UploadChunk]:
            yield pb.UploadChunk(
                header=pb.UploadHeader(
                    sha256=model_id, size_bytes=size, format=model_format(path), label=label or path.name
                )
            )
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(CHUNK_BYTES), b""):
                    yield pb.UploadChunk(data=block)

        # A generous deadline: 60 s plus 10 s per 10 MB, for slow boards and links.
        self._call(self.stub.UploadModel, chunks(), timeout=60 + size / 1e6, idempotent=False)
        return model_id

    def benchmark(
        self,
        request: pb.BenchmarkRequest,
        on_event: Callable[[pb.BenchmarkEvent], None] | None = None,
        timeout: float | None = None,
    ) -> pb.BenchmarkResult:
        """Run a benchmark, passing progress events to on_event; returns the final result."""
        self.connect()
        limit = timeout or (request.time_limit_seconds or 900.0) + 3600.0  # queueing included
        stream = self.stub.Benchmark(request, timeout=limit, metadata=self._metadata)
        try:
            for event in stream:
                if event.WhichOneof("event") == "result":
                    return event.result
                if on_event:
                    on_event(event)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None
        finally:
            stream.cancel()
        raise AgentCallError(grpc.StatusCode.INTERNAL, "the agent ended the benchmark without a result")
