"""Errors with a contract: each maps to one gRPC status code, and says what to do."""

from __future__ import annotations


class AgentError(Exception):
    """Base class; `code` names the grpc.StatusCode member it maps to."""

    code = "INTERNAL"


class InvalidArgument(AgentError):
    code = "INVALID_ARGUMENT"


class NotFound(AgentError):
    code = "NOT_FOUND"


class FailedPrecondition(AgentError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(AgentError):
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(AgentError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(AgentError):
    code = "CANCELLED"


class Aborted(AgentError):
    """The runtime failed on this request (a native crash, an error inside a kernel): the model's fault or the
    runtime's, not the request's form; the agent serves on."""

    code = "ABORTED"


class Internal(AgentError):
    """A fault of the agent itself; the message says where to look."""

    code = "INTERNAL"
