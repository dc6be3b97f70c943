"""Typed errors of the yagna REST client.

Every failure of a call to the daemon surfaces as one of these, with the operation that failed
and what the daemon said. None of them ever carries the app key: messages name the operation and
the URL *path* only, never headers or query strings added for authentication, and the reply
text they quote has every app key a client of this process uses (:func:`remember_secret`) and
every ``Bearer`` token blanked out (:func:`redact`).
"""

from __future__ import annotations

import re
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
    "ReplyTooLarge",
    "RequestTimeout",
    "ServerError",
    "Unauthorized",
    "YagnaError",
    "error_for_status",
    "redact",
    "remember_secret",
]


#: ``Bearer <token>``, as an ``Authorization`` header (or anything echoing one) carries it.
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[^\s'\",;&)}\]]+")
#: App keys in use by clients of this process (the latest ones; see :func:`remember_secret`).
_SECRETS: dict[str, None] = {}
_MAX_SECRETS = 64
#: How many leading characters of an app key identify it (also in a snippet that cuts it off).
_KEY_HEAD = 8


def remember_secret(secret: str) -> None:
    """Have every error message of this module blank out ``secret`` (an app key); the client
    remembers its key when it is made. Keys shorter than 8 characters are not remembered
    (they would blank out ordinary words; the client still blanks out its own)."""
    if len(secret) < _KEY_HEAD:
        return
    _SECRETS.pop(secret, None)
    _SECRETS[secret] = None
    while len(_SECRETS) > _MAX_SECRETS:
        del _SECRETS[next(iter(_SECRETS))]


def redact(text: str) -> str:
    """``text`` with every remembered app key and every ``Bearer`` token blanked out (a daemon,
    or a proxy in front of it, may echo what it was sent)."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret[:_KEY_HEAD] in text:
            # The key, or the start of one cut off by a snippet's length.
            text = re.sub(re.escape(secret[:_KEY_HEAD]) + r"[\w.~+/=-]*", "***", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class YagnaError(GolemError):
    """Base class of every error raised by :mod:`golem_trio.yagna`."""


class ConfigError(YagnaError):
    """The client configuration is unusable (for example no app key was given)."""


class _OperationError(YagnaError):
    """An error raised while performing one REST operation."""

    def __init__(self, operation: str, detail: str) -> None:
        # Details quote replies: never let them carry a key.
        detail = redact(detail)
        super().__init__(f"{operation}: {detail}")
        #: The operation (the OpenAPI ``operationId``) that failed.
        self.operation = operation
        self.detail = detail


class DaemonUnreachable(_OperationError):
    """The daemon could not be reached or closed the connection without answering.

    Raised after the retry policy gave up (for operations that are safe to repeat).
    """


class DaemonTimeout(_OperationError):
    """The daemon did not answer within the configured timeout, or its reply (headers and
    body) did not arrive in full before the call's overall deadline."""


class ReplyTooLarge(_OperationError):
    """The daemon's reply body is larger than the client accepts (``ApiConfig.max_reply_size``).

    ``limit`` is the cap in bytes; ``size`` what the reply announced or had sent when it was
    cut off (at least ``limit + 1``).
    """

    def __init__(self, operation: str, detail: str, *, limit: int, size: int) -> None:
        super().__init__(operation, detail)
        self.limit = limit
        self.size = size


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
        message = redact(message) if message else message
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
