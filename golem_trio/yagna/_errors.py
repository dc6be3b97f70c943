"""Typed errors of the yagna REST client.

Every failure of a call to the daemon surfaces as one of these, with the operation that failed
and what the daemon said. None of them ever carries the app key: messages name the operation and
the URL *path* only, never headers or query strings added for authentication.
"""

from __future__ import annotations

from typing import ClassVar

from .._errors import GolemError

__all__ = [
    "ApiError",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "DaemonTimeout",
    "DaemonUnreachable",
    "DecodeError",
    "Forbidden",
    "Gone",
    "NotFound",
    "RequestTimeout",
    "ServerError",
    "Unauthorized",
    "YagnaError",
    "error_for_status",
]


class YagnaError(GolemError):
    """Base class of every error raised by :mod:`golem_trio.yagna`."""


class ConfigError(YagnaError):
    """The client configuration is unusable (for example no app key was given)."""


class _OperationError(YagnaError):
    """An error raised while performing one REST operation."""

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: {detail}")
        #: The operation (the OpenAPI ``operationId``) that failed.
        self.operation = operation
        self.detail = detail


class DaemonUnreachable(_OperationError):
    """The daemon could not be reached or closed the connection without answering.

    Raised after the retry policy gave up (for operations that are safe to repeat).
    """


class DaemonTimeout(_OperationError):
    """The daemon did not answer within the configured timeout."""


class DecodeError(_OperationError):
    """The daemon's reply could not be decoded into the documented model.

    ``path`` names the offending field (``$.proposal.proposalId``) where one can be named.
    """

    def __init__(self, operation: str, detail: str, *, path: str | None = None) -> None:
        super().__init__(operation, detail if path is None else f"{detail} at {path}")
        self.path = path


class ApiError(_OperationError):
    """The daemon answered with a non-2xx status.

    ``status`` is the HTTP status, ``message`` what the daemon said (the ``message`` of its
    JSON error body, the RFC 7807 ``detail``, or its plain-text body), ``method`` and ``path``
    the request that got this answer.
    """

    status_code: ClassVar[int | None] = None

    def __init__(
        self,
        operation: str,
        *,
        status: int,
        message: str | None,
        method: str,
        path: str,
    ) -> None:
        shown = message if message else "(no message)"
        super().__init__(operation, f"{method} {path} -> {status}: {shown}")
        self.status = status
        self.message = message
        self.method = method
        self.path = path


class BadRequest(ApiError):
    """400: the daemon refused the request as invalid in its current state."""

    status_code = 400


class Unauthorized(ApiError):
    """401: the app key is missing or unknown to the daemon."""

    status_code = 401


class Forbidden(ApiError):
    """403: the object belongs to someone else."""

    status_code = 403


class NotFound(ApiError):
    """404: unknown object (subscription, proposal, agreement, document, network...)."""

    status_code = 404


class RequestTimeout(ApiError):
    """408: the daemon's own wait ran out (long polls, approval waits, activity creation)."""

    status_code = 408


class Conflict(ApiError):
    """409: the object is in a state that does not allow the operation."""

    status_code = 409


class Gone(ApiError):
    """410: the object existed but is finished (expired, released, terminated, rejected)."""

    status_code = 410


class ServerError(ApiError):
    """5xx: the daemon failed (including 504 when a peer did not acknowledge in time)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, RequestTimeout, Conflict, Gone)
    if cls.status_code is not None
}


def error_for_status(status: int) -> type[ApiError]:
    """The :class:`ApiError` subclass raised for an HTTP status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)
