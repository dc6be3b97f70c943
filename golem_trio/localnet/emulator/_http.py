"""HTTP plumbing shared by the emulated APIs: auth, bodies, queries and the daemon's error
shapes (docs/daemon-notes.md §1)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ._core import Daemon, DaemonError, NodeIdentity

__all__ = [
    "Handler",
    "RequestCounter",
    "authenticate",
    "control_key_refusal",
    "error_response",
    "json_body",
    "json_response",
    "query_float",
    "query_int",
    "query_time",
]

Handler = Callable[[Request], Awaitable[Response]]


class RequestCounter:
    """ASGI middleware that counts the HTTP requests served, by endpoint (the handler's name,
    known once the router has matched; ``unrouted`` for a request no route took)."""

    def __init__(self, app: ASGIApp, counts: Counter[str]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            # The router adds the matched endpoint to this same scope.
            endpoint = scope.get("endpoint")
            self.counts[getattr(endpoint, "__name__", "unrouted")] += 1


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON reply (``null`` included: several daemon calls answer a literal ``null``)."""
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def empty_response(status: int) -> Response:
    return Response(b"", status_code=status)


def error_response(error: DaemonError) -> Response:
    if error.plain:
        return Response(error.message or "", status_code=error.status, media_type="text/plain")
    return Response(
        json.dumps(error.body, separators=(",", ":")),
        status_code=error.status,
        media_type=error.content_type,
    )


def authenticate(daemon: Daemon, request: Request) -> NodeIdentity:
    """The caller's identity from ``Authorization: Bearer`` or ``?authToken=``."""
    header = request.headers.get("authorization", "")
    key = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else None
    if not key:
        key = request.query_params.get("authToken")
    return daemon.authenticate(key)


def control_key_refusal(daemon: Daemon, request: Request) -> Response | None:
    """For LocalNet's own control routes (``/localnet/...``): the daemon's plain-text 401 when
    the request carries no app key of the network (as ``Authorization: Bearer`` or
    ``?authToken=``), else ``None``."""
    try:
        authenticate(daemon, request)
    except DaemonError as error:
        return error_response(error)
    return None


async def json_body(request: Request) -> Any:
    """The request's JSON body (``None`` for an empty one); 400 if it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise DaemonError(400, "Json deserialize error: invalid JSON body") from None


def query_float(request: Request, name: str, default: float) -> float:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise DaemonError(400, f"Query deserialize error: invalid {name}") from None
    if value != value or value < 0:
        raise DaemonError(400, f"Query deserialize error: invalid {name}")
    return value


def query_int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise DaemonError(400, f"Query deserialize error: invalid {name}") from None


def query_time(request: Request, name: str) -> dt.datetime | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(_trim_fraction(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise DaemonError(400, f"Query deserialize error: invalid {name}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _trim_fraction(text: str) -> str:
    """Cut a fraction of seconds to microseconds (Python's limit); the emulator stamps events
    to the microsecond, so nothing is lost."""
    if "." not in text:
        return text
    head, _, rest = text.partition(".")
    digits = ""
    while rest and rest[0].isdigit():
        digits, rest = digits + rest[0], rest[1:]
    return f"{head}.{digits[:6].ljust(6, '0')}{rest}"
