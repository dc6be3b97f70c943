"""Every client method against the specs: each request must be one the daemon accepts, and the
daemon's (spec-valid) reply must decode into the documented model."""

from __future__ import annotations

import json
import logging

import httpx2
import pytest

from golem_trio.yagna import ApprovalResult, Unauthorized

from .client_calls import (
    APP_KEY,
    CALLS,
    KNOWN_CLIENT_BUGS,
    NO_REQUEST,
    ClientCall,
    FakeDaemon,
    conforms,
    dropped_fields,
    public_methods,
    run_call,
    runtime_events,
    spec_operation,
)
from .openapi_support import Operation

#: Calls whose 401 handling is wrong (client bugs), keyed by call id.
KNOWN_AUTH_BUGS: dict[str, str] = {}


def _params(calls: list[ClientCall]) -> list[object]:
    return [
        pytest.param(
            call,
            id=call.id,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_CLIENT_BUGS[call.id])]
            if call.id in KNOWN_CLIENT_BUGS
            else [],
        )
        for call in calls
    ]


@pytest.mark.parametrize("call", _params(CALLS))
async def test_request_and_reply(call: ClientCall, caplog: pytest.LogCaptureFixture) -> None:
    daemon = FakeDaemon(reply=call.reply)
    with caplog.at_level(logging.DEBUG, logger="golem_trio.yagna"):
        result = await run_call(call, daemon)

    expected = spec_operation(call)
    sent = daemon.operations()
    assert sent == [expected], f"{call.id} sent {[str(op) for op in sent]}, expected {expected}"

    assert conforms(result, call.returns), f"{call.id} returned {result!r}"
    response = daemon.exchanges[-1].response
    assert response is not None
    if call.method == "open_exec_stream":
        data = runtime_events()
    elif response.headers.get("content-type", "").startswith("application/json"):
        data = json.loads(response.content)
    else:
        data = None
    if isinstance(data, list):
        assert isinstance(result, list)
        assert len(result) == len(data), f"{call.id}: {len(data)} items sent, {len(result)} decoded"
    assert not dropped_fields(result, data), f"{call.id} lost fields of the reply"

    # The client names its operation as the spec does (in its logs and errors).
    labels = {r.operation for r in caplog.records if hasattr(r, "operation")}
    assert labels <= {expected.operation_id}, labels


async def test_approval_wait_reports_approval() -> None:
    (call,) = [c for c in CALLS if c.method == "wait_for_approval"]
    assert await run_call(call, FakeDaemon()) == ApprovalResult(True)


async def test_every_client_method_is_called() -> None:
    called = {(call.api, call.method) for call in CALLS}
    async with FakeDaemon().client() as client:
        missing = [
            f"{api}.{method}"
            for api, method in public_methods(client)
            if (api, method) not in called and (api, method) not in NO_REQUEST
        ]
    assert not missing, f"client methods no contract test calls: {missing}"


def _unauthorized(op: Operation, request: httpx2.Request) -> httpx2.Response:
    # What the daemon answers to an unknown app key: 401 with a plain-text body (§1, §9.9).
    return httpx2.Response(
        401, headers={"Content-Type": "text/plain"}, text="Invalid application key"
    )


_SECURED = [call for call in CALLS if not call.variant and call.method != "get_version"]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            call,
            id=call.id,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_AUTH_BUGS[call.id])]
            if call.id in KNOWN_AUTH_BUGS
            else [],
        )
        for call in _SECURED
    ],
)
async def test_unauthorized_reply_raises_unauthorized(call: ClientCall) -> None:
    daemon = FakeDaemon(reply=_unauthorized)
    with pytest.raises(Unauthorized) as caught:
        await run_call(call, daemon)
    expected = spec_operation(call)
    assert caught.value.operation == expected.operation_id
    assert caught.value.message == "Invalid application key"
    assert APP_KEY not in str(caught.value)
    assert daemon.operations() == [expected]  # a 401 is not retried
