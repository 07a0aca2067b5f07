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
