"""Build and run the gRPC server: listening address, security, health, graceful stop."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from netcut_protos.agent.v1 import agent_pb2 as pb

from .scheduler import BenchmarkQueue
from .servicer import MAX_UPLOADS, UPLOAD_IDLE_S, AgentServicer, safe_deserializer
from .store import ModelStore
from .worker import Worker, WorkerLimits

log = logging.getLogger(__name__)

SERVICE_NAME = "netcut.agent.v1.Agent"
TOKEN_METADATA = "authorization"
# Models travel in 1 MiB chunks; results with raw samples stay well under 16 MiB.
MAX_RECEIVE_BYTES = 8 * 1024 * 1024
MAX_SEND_BYTES = 64 * 1024 * 1024


class ConfigError(ValueError):
    """The agent refuses to start with this configuration (the message says why and what to do)."""


@dataclass
class Security:
    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    client_ca: bytes | None = None
    insecure: bool = False

    @property
    def authenticated(self) -> bool:
        return bool(self.token) or (self.tls_cert is not None and self.client_ca is not None)


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"cannot read listening address {address!r}; write HOST:PORT, e.g. 127.0.0.1:50051")
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"port {port} is out of range (0-65535; 0 picks a free port)")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, security: Security) -> list[str]:
    """Refuse to expose an agent beyond loopback unless clients must authenticate (a token, or TLS with client
    certificates); --insecure overrides, with a warning. Returns warnings."""
    if is_loopback(host) or security.authenticated:
        return []
    if security.insecure:
        what = "with TLS but no client authentication" if security.tls_cert else "WITHOUT authentication"
        return [
            f"listening on {host} {what} (--insecure): anyone who reaches this port can upload and run models "
            "on this board"
        ]
    if security.tls_cert:
        raise ConfigError(
            f"refusing to listen on {host} with TLS but no client authentication: anyone who reaches "
            "the port could upload and run models. Add --client-ca (mutual TLS) or --token-file, or "
            "pass --insecure"
        )
    raise ConfigError(
        f"refusing to listen on {host} without authentication: the agent runs uploaded models. "
        "Use --token-file FILE or --tls-cert/--tls-key (with --client-ca for mutual TLS), "
        "keep the default 127.0.0.1 and reach it through an SSH tunnel, or pass --insecure"
    )


def agent_handler(servicer: AgentServicer) -> grpc.GenericRpcHandler:
    """The Agent service's handlers (as the generated add_AgentServicer_to_server makes them), with
    deserializers that turn an unparseable request into MALFORMED instead of grpc's INTERNAL."""

    def handler(kind, method: str, request_type, response_type):  # noqa: ANN001, ANN202
        return kind(
            getattr(servicer, method),
            request_deserializer=safe_deserializer(request_type),
            response_serializer=response_type.SerializeToString,
        )

    handlers = {
        "Info": handler(grpc.unary_unary_rpc_method_handler, "Info", pb.InfoRequest, pb.InfoResponse),
        "UploadModel": handler(grpc.stream_unary_rpc_method_handler, "UploadModel", pb.UploadChunk, pb.ModelInfo),
        "HasModel": handler(grpc.unary_unary_rpc_method_handler, "HasModel", pb.ModelRef, pb.HasModelResponse),
        "ListModels": handler(
            grpc.unary_unary_rpc_method_handler, "ListModels", pb.ListModelsRequest, pb.ListModelsResponse
        ),
        "DeleteModel": handler(grpc.unary_unary_rpc_method_handler, "DeleteModel", pb.ModelRef, pb.DeleteModelResponse),
        "Benchmark": handler(grpc.unary_stream_rpc_method_handler, "Benchmark", pb.BenchmarkRequest, pb.BenchmarkEvent),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


class TokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        sent = dict(handler_call_details.invocation_metadata).get(TOKEN_METADATA, "")
        handler = continuation(handler_call_details)
        if hmac.compare_digest(sent.encode(), self._expected) or handler is None:
            return handler

        def deny(request, context):
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token: pass the agent's token file with --token-file"
            )

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


def read_token(path: Path) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise ConfigError(
            f"the token in {path} is {len(token)} characters; use at least 16 random characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE)"
        )
    return token


@dataclass
class RunningAgent:
    server: grpc.Server
    address: str
    health: health.HealthServicer
    worker: Worker

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving: calls in flight get `grace` seconds, then the benchmark worker is killed."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.worker.kill()


def start(
    listen: str,
    store: ModelStore,
    security: Security | None = None,
    max_waiting: int = 16,
    default_time_limit: float = 900.0,
    cooldown_celsius: float = 0.0,
    limits: WorkerLimits | None = None,
    upload_idle_seconds: float = UPLOAD_IDLE_S,
    max_uploads: int = MAX_UPLOADS,
) -> tuple[RunningAgent, list[str]]:
    security = security or Security()
    host, port = split_address(listen)
    warnings = check_exposure(host, security)
    interceptors = [TokenInterceptor(security.token)] if security.token else []
    # Every long call is bounded (benchmarks by the queue, uploads by max_uploads), so the threads beyond them
    # are always there for health checks, Info and the other short calls; there is no limit of concurrent calls
    # (grpc would refuse health checks with it): short calls wait a moment for a thread instead.
    threads = max_waiting + 1 + max_uploads + 8
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.so_reuseport", 0),
            # Hosts ping every 10 s during long benchmarks to notice a dead link; allow it.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    worker = Worker(limits)
    worker.start()  # in the background: it imports the runtimes while the server already answers
    servicer = AgentServicer(
        store,
        BenchmarkQueue(max_waiting),
        default_time_limit,
        cooldown_celsius,
        worker,
        upload_idle_seconds,
        max_uploads,
    )
    server.add_generic_rpc_handlers((agent_handler(servicer),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if security.tls_cert:
            creds = grpc.ssl_server_credentials(
                [(security.tls_key, security.tls_cert)],
                root_certificates=security.client_ca,
                require_client_auth=security.client_ca is not None,
            )
            bound = server.add_secure_port(bind, creds)
        else:
            bound = server.add_insecure_port(bind)
    except RuntimeError as exc:
        worker.kill()
        raise ConfigError(f"cannot listen on {bind}: {exc}; is another agent already using the port?") from None
    if not bound:
        worker.kill()
        raise ConfigError(f"cannot listen on {bind}; is another agent already using the port?")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    shown = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
    return RunningAgent(server, shown, health_servicer, worker), warnings
