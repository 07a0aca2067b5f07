"""The gRPC servicer: translates messages to plain calls and errors to status codes. Nothing more."""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading

import grpc
from google.protobuf import json_format

from netcut_protos.agent.v1 import agent_pb2 as pb
from netcut_protos.agent.v1 import agent_pb2_grpc as pb_grpc

from . import PROTOCOL_VERSION, __version__, board, gpu_state, providers, runtimes
from .requests import (
    BenchmarkRequest,
    BenchmarkResult,
    CoolingDown,
    InputRequest,
    Measuring,
    Profiling,
    Queued,
    WarmingUp,
    check_request,
)
from .errors import AgentError, DeadlineExceeded, InvalidArgument, NotFound, ResourceExhausted
from .measure import TimingConfig
from .providers import ProviderRequest
from .scheduler import BenchmarkQueue
from .store import ModelInfo, ModelStore
from .worker import Worker

log = logging.getLogger(__name__)

FORMAT_TO_PB = {"onnx": pb.MODEL_FORMAT_ONNX, "tflite": pb.MODEL_FORMAT_TFLITE}
FORMAT_FROM_PB = {v: k for k, v in FORMAT_TO_PB.items()}
DTYPE_FROM_PB = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_FLOAT16: "float16",
    pb.DTYPE_INT8: "int8",
    pb.DTYPE_UINT8: "uint8",
    pb.DTYPE_INT32: "int32",
    pb.DTYPE_INT64: "int64",
}
DTYPE_TO_PB = {v: k for k, v in DTYPE_FROM_PB.items()}
_DONE = object()
UPLOAD_IDLE_S = 30.0  # an upload that sends nothing for this long is aborted
MAX_UPLOADS = 4  # uploads at once; more are refused (they would hold the server's threads)


class Malformed:
    """What a request that does not parse becomes (see safe_deserializer): refused as INVALID_ARGUMENT."""


MALFORMED = Malformed()
_warned_peers: set[str] = set()
_warned_lock = threading.Lock()


def safe_deserializer(message_type):  # noqa: ANN001, ANN201 - a protobuf message class; its FromString
    """grpc answers a request it cannot deserialize with INTERNAL and a logged traceback per call; this one
    hands the servicer MALFORMED instead, which it refuses as INVALID_ARGUMENT and logs once per peer."""

    def parse(data: bytes):  # noqa: ANN202
        try:
            return message_type.FromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            return MALFORMED

    return parse


def refuse_malformed(context: grpc.ServicerContext) -> None:
    peer = context.peer()
    with _warned_lock:
        first = peer not in _warned_peers
        _warned_peers.add(peer)
    if first:
        log.warning(
            "malformed request from %s (not a valid protobuf message); refusing it and later ones "
            "without logging again",
            peer,
        )
    context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        "the request is not a valid message of the agent's protocol "
        "(netcut.agent.v1); is the client of the same protocol version?",
    )


def to_message(obj, message):
    """Fill a message from a dataclass whose field names follow the .proto."""
    json_format.ParseDict(dataclasses.asdict(obj), message, ignore_unknown_fields=True)
    return message


def model_info_pb(info: ModelInfo) -> pb.ModelInfo:
    return pb.ModelInfo(
        model_id=info.model_id,
        size_bytes=info.size_bytes,
        format=FORMAT_TO_PB[info.format],
        label=info.label,
        stored_unix=info.stored_unix,
        last_used_unix=info.last_used_unix,
    )


def timing_from_pb(msg: pb.TimingConfig) -> TimingConfig:
    cfg = TimingConfig()
    for f in dataclasses.fields(TimingConfig):
        if msg.HasField(f.name):
            setattr(cfg, f.name, getattr(msg, f.name))
    return cfg


def request_from_pb(msg: pb.BenchmarkRequest) -> BenchmarkRequest:
    inputs = [InputRequest(i.name, list(i.shape), DTYPE_FROM_PB.get(i.dtype, "")) for i in msg.inputs]
    return BenchmarkRequest(
        msg.model_id,
        msg.runtime or runtimes.ONNXRUNTIME,
        msg.threads,
        inputs,
        timing_from_pb(msg.timing),
        msg.profile_layers,
        msg.seed,
        msg.execution_provider,
        msg.time_limit_seconds,
        msg.cooldown_celsius,
        [ProviderRequest(p.name, dict(p.options)) for p in msg.execution_providers],
    )


def result_pb(result: BenchmarkResult) -> pb.BenchmarkResult:
    inputs = result.inputs
    result = dataclasses.replace(result, inputs=[])
    msg = to_message(result, pb.BenchmarkResult())
    for i in inputs:
        msg.inputs.add(name=i.name, shape=i.shape, dtype=DTYPE_TO_PB.get(i.dtype, pb.DTYPE_UNSPECIFIED))
    return msg


def event_pb(event) -> pb.BenchmarkEvent:
    if isinstance(event, Queued):
        return pb.BenchmarkEvent(queued=pb.BenchmarkEvent.Queued(position=event.position))
    if isinstance(event, CoolingDown):
        return pb.BenchmarkEvent(
            cooling_down=pb.BenchmarkEvent.CoolingDown(celsius=event.celsius, target_celsius=event.target_celsius)
        )
    if isinstance(event, WarmingUp):
        return pb.BenchmarkEvent(warming_up=pb.BenchmarkEvent.WarmingUp(runs=event.runs))
    if isinstance(event, Measuring):
        return pb.BenchmarkEvent(
            measuring=pb.BenchmarkEvent.Measuring(runs=event.runs, elapsed_seconds=event.elapsed_seconds)
        )
    if isinstance(event, Profiling):
        return pb.BenchmarkEvent(profiling=pb.BenchmarkEvent.Profiling())
    return pb.BenchmarkEvent(result=result_pb(event))


def _abort(context: grpc.ServicerContext, exc: Exception):
    if isinstance(exc, AgentError):
        context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
    log.exception("internal error", exc_info=exc)
    context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error in the agent: {type(exc).__name__}: {str(exc)[:300]}; see the agent's log",
    )


def _guard(method):
    """Map plain exceptions to statuses; never let a traceback cross the wire."""

    def wrapper(self, request, context):
        if request is MALFORMED:
            refuse_malformed(context)
        try:
            return method(self, request, context)
        except Exception as exc:  # the servicer's one catch-all: turn it into a status
            _abort(context, exc)

    wrapper.__name__ = method.__name__
    return wrapper


class AgentServicer(pb_grpc.AgentServicer):
    def __init__(
        self,
        store: ModelStore,
        bench_queue: BenchmarkQueue,
        default_time_limit: float = 900.0,
        cooldown_celsius: float = 0.0,
        worker: Worker | None = None,
        upload_idle_seconds: float = UPLOAD_IDLE_S,
        max_uploads: int = MAX_UPLOADS,
    ):
        self.store = store
        self.queue = bench_queue
        self.worker = worker or Worker()
        self.upload_idle_seconds = upload_idle_seconds
        self._uploads = threading.BoundedSemaphore(max_uploads)
        self.max_uploads = max_uploads
        self.default_time_limit = default_time_limit
        self.cooldown_celsius = cooldown_celsius
        self._board = board.describe()

    def _store_pb(self) -> pb.StoreInfo:
        return pb.StoreInfo(
            models=len(self.store.list()),
            bytes_used=self.store.bytes_used,
            bytes_cap=self.store.cap_bytes,
            max_model_bytes=self.store.max_model_bytes,
        )

    @_guard
    def Info(self, request, context):
        reply = pb.InfoResponse(
            agent_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            busy=self.queue.busy,
            queue_length=self.queue.waiting,
            store=self._store_pb(),
        )
        for rt in self.worker.runtimes():
            to_message(rt, reply.runtimes.add())
        to_message(self._board, reply.board)
        to_message(board.sample_state(), reply.state)
        return reply

    @_guard
    def UploadModel(self, request_iterator, context):
        if not self._uploads.acquire(blocking=False):
            raise ResourceExhausted(
                f"{self.max_uploads} uploads are already in flight on this agent; try again when one ends"
            )
        try:
            return self._upload(self._with_idle_limit(request_iterator, context), context)
        finally:
            self._uploads.release()

    def _with_idle_limit(self, request_iterator, context):  # noqa: ANN001, ANN202
        """The stream's messages, read by a helper thread so that a client that stops sending is noticed:
        after upload_idle_seconds without a message the upload is aborted (and its temporary file removed)."""
        messages: queue.Queue = queue.Queue(maxsize=4)

        def pump() -> None:
            try:
                for msg in request_iterator:
                    messages.put(msg)
            except Exception:  # noqa: BLE001 - the call ended (cancelled, aborted): the reader stops
                pass
            finally:
                messages.put(_DONE)

        threading.Thread(target=pump, name="upload-reader", daemon=True).start()
        while True:
            try:
                msg = messages.get(timeout=self.upload_idle_seconds)
            except queue.Empty:
                raise DeadlineExceeded(
                    f"the upload sent nothing for {self.upload_idle_seconds:g} s and was aborted; nothing was stored"
                ) from None
            if msg is _DONE:
                return
            if msg is MALFORMED:
                refuse_malformed(context)
            yield msg

    def _upload(self, messages, context):  # noqa: ANN001, ANN202
        first = next(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with a header message (sha256, size_bytes, format)")
        header = first.header
        fmt = FORMAT_FROM_PB.get(header.format)
        if fmt is None:
            raise InvalidArgument("the upload header must name the model format (ONNX or TFLITE)")

        def chunks():
            for msg in messages:
                if msg.WhichOneof("part") != "data":
                    raise InvalidArgument("only data chunks may follow the upload header")
                yield msg.data

        try:
            return model_info_pb(self.store.upload(header.sha256, header.size_bytes, fmt, header.label, chunks()))
        except grpc.RpcError:
            raise InvalidArgument("the upload was cut off midway; nothing was stored") from None

    @_guard
    def HasModel(self, request, context):
        info = self.store.get(request.model_id)
        return pb.HasModelResponse(present=info is not None, model=model_info_pb(info) if info else None)

    @_guard
    def ListModels(self, request, context):
        return pb.ListModelsResponse(models=[model_info_pb(i) for i in self.store.list()], store=self._store_pb())

    @_guard
    def DeleteModel(self, request, context):
        return pb.DeleteModelResponse(deleted=self.store.delete(request.model_id))

    def Benchmark(self, request, context):
        if request is MALFORMED:
            refuse_malformed(context)
        try:
            req = request_from_pb(request)
            if not req.cooldown_celsius:
                req.cooldown_celsius = self.cooldown_celsius
            info = self.store.get(req.model_id)
            if info is None:
                raise NotFound(f"model {req.model_id[:12]}… is not in this agent's store; upload it first")
            check_request(req, info.format, self.worker.runtimes())
        except Exception as exc:
            _abort(context, exc)
        cancelled = threading.Event()
        context.add_callback(cancelled.set)  # the client left, cancelled, or the call ended
        events: queue.Queue = queue.Queue()

        def work():
            try:
                with self.queue.slot(cancelled, lambda p: events.put(Queued(p))):
                    with self.store.use(req.model_id) as (path, stored):
                        limit = req.time_limit_seconds or self.default_time_limit + providers.build_allowance(
                            req.execution_providers,  # resolved by check_request
                            self.store.root / "tensorrt",
                            req.model_id,
                            gpu_state.gpu_name(),
                        )
                        events.put(self.worker.run(req, path, stored.format, events.put, cancelled, limit))
            except Exception as exc:
                events.put(exc)
            finally:
                events.put(_DONE)

        threading.Thread(target=work, name="benchmark", daemon=True).start()
        while True:
            item = events.get()
            if item is _DONE:
                return
            if isinstance(item, Exception):
                if cancelled.is_set() and not context.is_active():
                    return
                _abort(context, item)
            yield event_pb(item)
