"""A transport that checks every exchange against the daemon's specs (as patched for the real
daemon's deviations), shared by the contract tests of LocalNet's two backends."""

from __future__ import annotations

from typing import Any

import httpx2

from .openapi_support import Operation, validate_request, validate_response

#: Marks a request that is deliberately invalid (an error path): only the reply is validated.
INVALID_REQUEST = {"contract": "invalid-request"}
#: Marks an exchange whose reply is a known emulator deviation: the
#: request is validated, the reply only recorded; a strict xfail test checks the reply itself.
KNOWN_DEVIATION = {"contract": "known-deviation"}


def operation_key(op: Operation) -> str:
    """``METHOD /path/{template}``: how the contract tests name an operation."""
    return f"{op.method} {op.path}"


class ValidatingTransport(httpx2.AsyncBaseTransport):
    """Delegates to ``inner`` and checks every request and reply against the patched specs,
    recording each ``(operation, status)``. A request sent with the ``INVALID_REQUEST``
    extension (a deliberate error path) is not validated, its reply is; one sent with
    ``KNOWN_DEVIATION`` is validated and its reply only recorded (a known emulator deviation).
    Event-stream replies are passed through unread (they never end): the caller validates the
    frames it read."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: set[tuple[str, int]] = set()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        mark = request.extensions.get("contract")
        op = validate_request(request) if mark != "invalid-request" else None
        response = await self.inner.handle_async_request(request)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response
        await response.aread()
        if mark == "known-deviation" and op is not None:
            self.seen.add((operation_key(op), response.status_code))
            return response
        op = validate_response(request, response)
        self.seen.add((operation_key(op), response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def call(
    client: httpx2.AsyncClient,
    method: str,
    path: str,
    expect: int,
    *,
    invalid: bool = False,
    deviation: bool = False,
    **kwargs: Any,
) -> httpx2.Response:
    """One request; its reply must have status ``expect`` (and match the specs)."""
    if invalid:
        kwargs["extensions"] = INVALID_REQUEST
    elif deviation:
        kwargs["extensions"] = KNOWN_DEVIATION
    response = await client.request(method, path, **kwargs)
    assert response.status_code == expect, (
        f"{method} {path}: expected {expect}, got {response.status_code} {response.text!r}"
    )
    return response
