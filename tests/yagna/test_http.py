"""HTTP behaviour of the client: auth, typed errors, retries, timeouts, bad replies."""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Callable
from decimal import Decimal

import httpx2
import pytest
import trio

from golem_trio.yagna import (
    ApiConfig,
    ApiError,
    BadRequest,
    DaemonTimeout,
    DaemonUnreachable,
    DecodeError,
    DemandOfferBase,
    Deploy,
    Gone,
    NewAllocation,
    NotFound,
    Reason,
    RetryPolicy,
    ServerError,
    Timeouts,
    Unauthorized,
    YagnaClient,
)

APP_KEY = "app-key-0123456789abcdef"
Handler = Callable[[httpx2.Request], httpx2.Response]


def make_client(handler: Handler, *, attempts: int = 4, **config: object) -> YagnaClient:
    cfg = ApiConfig(
        app_key=APP_KEY,
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.001, max_delay=0.002),
        **config,  # type: ignore[arg-type]
    )
    return YagnaClient(cfg, transport=httpx2.MockTransport(handler), rng=random.Random(1))


class Recorder:
    """A mock daemon answering from a script, one reply per request, recording requests."""

    def __init__(self, *replies: httpx2.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


async def test_app_key_is_sent_as_bearer_header_only() -> None:
    daemon = Recorder(httpx2.Response(200, json={"identity": "0x1", "name": "n", "role": "r"}))
    async with make_client(daemon) as yagna:
        me = await yagna.identity.get_identity()
    assert me.identity == "0x1"
    (request,) = daemon.requests
    assert request.headers["authorization"] == f"Bearer {APP_KEY}"
    assert APP_KEY not in str(request.url)
    assert APP_KEY not in repr(yagna)


@pytest.mark.parametrize(
    ("reply", "kind", "message"),
    [
        (
            httpx2.Response(401, text="Invalid application key"),
            Unauthorized,
            "Invalid application key",
        ),
        (
            httpx2.Response(404, json={"message": "Subscription not found"}),
            NotFound,
            "Subscription not found",
        ),
        (httpx2.Response(404, json={"message": None}), NotFound, None),
        (
            httpx2.Response(
                400,
                json={"type": "about:blank", "detail": "Insufficient funds", "instance": "/x"},
                headers={"content-type": "application/problem+json"},
            ),
            BadRequest,
            "Insufficient funds",
        ),
        (httpx2.Response(410, json={"message": "Rejected"}), Gone, "Rejected"),
        (httpx2.Response(501, text=""), ServerError, None),
        (httpx2.Response(418, text="teapot"), ApiError, "teapot"),
    ],
)
async def test_non_2xx_becomes_a_typed_error(
    reply: httpx2.Response, kind: type[ApiError], message: str | None
) -> None:
    async with make_client(Recorder(reply), attempts=1) as yagna:
        with pytest.raises(kind) as info:
            await yagna.market.subscribe_demand(DemandOfferBase({}, "()"))
    error = info.value
    assert type(error) is kind
    assert error.status == reply.status_code
    assert error.message == message
    assert error.operation == "subscribeDemand"
    assert error.method == "POST"
    assert error.path == "/market-api/v1/demands"
    assert "subscribeDemand" in str(error)


async def test_echoed_app_key_is_redacted_from_errors() -> None:
    reply = httpx2.Response(400, json={"message": f"bad key {APP_KEY} in request"})
    async with make_client(Recorder(reply)) as yagna:
        with pytest.raises(BadRequest) as info:
            await yagna.market.get_demands()
    assert APP_KEY not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_any_2xx_is_success(status: int) -> None:
    async with make_client(Recorder(httpx2.Response(status, json="sub-1"))) as yagna:
        assert await yagna.market.subscribe_demand(DemandOfferBase({}, "()")) == "sub-1"


async def test_safe_operation_is_retried_on_5xx() -> None:
    daemon = Recorder(
        httpx2.Response(503, text="busy"),
        httpx2.Response(500, json={"message": "GSB error"}),
        httpx2.Response(200, json=[]),
    )
    async with make_client(daemon) as yagna:
        assert await yagna.market.get_demands() == []
    assert len(daemon.requests) == 3


async def test_safe_operation_gives_up_after_max_attempts() -> None:
    daemon = Recorder(httpx2.Response(503, text="busy"))
    async with make_client(daemon, attempts=3) as yagna:
        with pytest.raises(ServerError, match="busy"):
            await yagna.market.get_demands()
    assert len(daemon.requests) == 3


async def test_unsafe_operation_is_not_retried_after_the_daemon_handled_it() -> None:
    # A 500 is the daemon's own failure: it may have done part of the work.
    daemon = Recorder(httpx2.Response(500, json={"message": "GSB error"}))
    async with make_client(daemon) as yagna:
        with pytest.raises(ServerError):
            await yagna.market.subscribe_demand(DemandOfferBase({}, "()"))
        with pytest.raises(ServerError):
            await yagna.payment.create_allocation(NewAllocation(Decimal(1)))
        with pytest.raises(ServerError):
            await yagna.activity.exec("act-1", [Deploy()])
    assert len(daemon.requests) == 3


async def test_unsafe_operation_is_resent_when_the_daemon_never_handled_it() -> None:
    # A 503 (a proxy, or a daemon not ready) and a refused connection: nothing was done.
    daemon = Recorder(
        httpx2.Response(503, text="<html>busy</html>"),
        httpx2.ConnectError("refused"),
        httpx2.Response(200, json="batch-1"),
    )
    async with make_client(daemon) as yagna:
        assert await yagna.activity.exec("act-1", [Deploy()]) == "batch-1"
    assert len(daemon.requests) == 3
    daemon = Recorder(httpx2.Response(503, text="busy"))
    async with make_client(daemon, attempts=3) as yagna:
        with pytest.raises(ServerError, match="busy"):
            await yagna.market.subscribe_demand(DemandOfferBase({}, "()"))
    assert len(daemon.requests) == 3


async def test_connection_errors_are_retried_only_when_safe_or_never_delivered() -> None:
    daemon = Recorder(httpx2.ConnectError("refused"), httpx2.Response(200, json=[]))
    async with make_client(daemon) as yagna:
        assert await yagna.market.get_demands() == []
    assert len(daemon.requests) == 2

    # The connection broke after the request went out: the daemon may have handled it.
    daemon = Recorder(httpx2.RemoteProtocolError("closed"), httpx2.Response(200, json="x"))
    async with make_client(daemon) as yagna:
        with pytest.raises(DaemonUnreachable, match="subscribeDemand"):
            await yagna.market.subscribe_demand(DemandOfferBase({}, "()"))
    assert len(daemon.requests) == 1


async def test_removal_that_finds_the_object_gone_after_a_retry_succeeded() -> None:
    daemon = Recorder(
        httpx2.Response(502, text="lost"), httpx2.Response(404, json={"message": "x"})
    )
    async with make_client(daemon) as yagna:
        await yagna.market.unsubscribe_demand("sub-1")
    assert len(daemon.requests) == 2
    # ...but on a first attempt 404 means what it says.
    async with make_client(Recorder(httpx2.Response(404, json={"message": "x"}))) as yagna:
        with pytest.raises(NotFound):
            await yagna.market.unsubscribe_demand("sub-1")


async def test_terminate_sends_the_reason_and_retries_like_a_removal() -> None:
    daemon = Recorder(httpx2.Response(500, text="x"), httpx2.Response(410, json={"message": "x"}))
    async with make_client(daemon) as yagna:
        reason = Reason("done", {"golem.requestor.code": "Success"})
        await yagna.market.terminate_agreement("a" * 64, reason)
    assert json.loads(daemon.requests[0].content) == {
        "message": "done",
        "golem.requestor.code": "Success",
    }
    assert daemon.requests[0].headers["content-type"] == "application/json"


async def test_event_long_polls_retry_408_but_waits_report_it() -> None:
    daemon = Recorder(
        httpx2.Response(408, json={"message": "Timeout"}), httpx2.Response(200, json=[])
    )
    async with make_client(daemon) as yagna:
        assert await yagna.market.collect_agreement_events(wait=0.1) == []
    assert len(daemon.requests) == 2

    daemon = Recorder(httpx2.Response(408, json={"message": "Timeout"}))
    async with make_client(daemon) as yagna:
        result = await yagna.market.wait_for_approval("a" * 64, wait=0.1)
    assert (result.approved, result.timed_out) == (False, True)
    assert len(daemon.requests) == 1

    daemon = Recorder(httpx2.Response(410, json={"message": "Rejected"}))
    async with make_client(daemon) as yagna:
        result = await yagna.market.wait_for_approval("a" * 64)
    assert (result.approved, result.timed_out, result.message) == (False, False, "Rejected")


async def test_activity_creation_408_is_not_retried() -> None:
    daemon = Recorder(httpx2.Response(408, json={"message": "Timeout"}))
    async with make_client(daemon) as yagna:
        with pytest.raises(ApiError) as info:
            await yagna.activity.create_activity("a" * 64, wait=1)
    assert info.value.status == 408
    assert len(daemon.requests) == 1


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b'"just a string"', b"[1, 2", b"null", b'{"identity": 5}'],
)
async def test_malformed_success_reply_is_a_decode_error(body: bytes) -> None:
    async with make_client(Recorder(httpx2.Response(200, content=body))) as yagna:
        with pytest.raises(DecodeError) as info:
            await yagna.identity.get_identity()
    assert info.value.operation == "getIdentity"


async def test_decode_error_names_the_missing_field() -> None:
    reply = httpx2.Response(200, json={"identity": "0x1", "role": "manager"})
    async with make_client(Recorder(reply)) as yagna:
        with pytest.raises(DecodeError, match="name"):
            await yagna.identity.get_identity()


async def test_long_polls_use_their_own_pool_and_send_the_wait() -> None:
    control = Recorder(httpx2.Response(200, json=[]))
    polls = Recorder(httpx2.Response(200, json=[]))
    cfg = ApiConfig(app_key=APP_KEY)
    async with YagnaClient(
        cfg,
        transport=httpx2.MockTransport(control),
        long_poll_transport=httpx2.MockTransport(polls),
    ) as yagna:
        await yagna.market.get_demands()
        await yagna.market.collect_offers("sub", wait=3, max_events=7)
        await yagna.payment.get_debit_note_events(wait=2, kinds=["RECEIVED", "ACCEPTED"])
    assert [r.url.path for r in control.requests] == ["/market-api/v1/demands"]
    offers, notes = polls.requests
    assert offers.url.params["timeout"] == "3"
    assert offers.url.params["maxEvents"] == "7"
    assert notes.headers["x-requestor-events"] == "RECEIVED,ACCEPTED"


class InFlight:
    """A mock daemon whose replies take ``delay`` seconds; counts requests in flight."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.now = 0
        self.most = 0
        self.served = 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await trio.sleep(self.delay)
        finally:
            self.now -= 1
        self.served += 1
        return httpx2.Response(200, json=[])


async def test_control_calls_in_flight_are_bounded_by_the_pool(autojump_clock: object) -> None:
    daemon = InFlight(delay=1.0)
    async with YagnaClient(ApiConfig(app_key=APP_KEY), transport=httpx2.MockTransport(daemon)) as y:
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(y.market.get_demands)
    assert daemon.served == 100
    assert daemon.most == 32


async def test_waiting_for_a_free_connection_is_bounded_by_the_pool_timeout(
    autojump_clock: object,
) -> None:
    daemon = InFlight(delay=50.0)
    cfg = ApiConfig(app_key=APP_KEY, timeouts=Timeouts(pool=5.0), retry=RetryPolicy(max_attempts=1))
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await yagna.market.get_demands()
            outcomes.append("ok")
        except DaemonTimeout as exc:
            outcomes.append("pool" if "no connection free" in str(exc) else str(exc))

    async with YagnaClient(cfg, transport=httpx2.MockTransport(daemon)) as yagna:
        async with trio.open_nursery() as nursery:
            for _ in range(33):
                nursery.start_soon(one)
    assert sorted(outcomes) == ["ok"] * 32 + ["pool"]


# --- real sockets: a daemon that stalls, or drops the connection ---------------------------------


async def _serve(handler: Callable[[trio.SocketStream], object], nursery: trio.Nursery) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def test_a_daemon_that_never_answers_times_out_in_bound(nursery: trio.Nursery) -> None:
    async def stall(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    port = await _serve(stall, nursery)
    cfg = ApiConfig(
        app_key=APP_KEY,
        api_url=f"http://127.0.0.1:{port}",
        timeouts=Timeouts(connect=1.0, read=0.3),
        retry=RetryPolicy(max_attempts=3, base_delay=0.001),
    )
    async with YagnaClient(cfg) as yagna:
        with trio.fail_after(5):  # a generous bound: the call itself gives up after 0.3 s
            with pytest.raises(DaemonTimeout, match="getIdentity"):
                await yagna.identity.get_identity()


async def test_a_stalled_long_poll_times_out_after_wait_plus_margin(nursery: trio.Nursery) -> None:
    async def stall(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    port = await _serve(stall, nursery)
    cfg = ApiConfig(
        app_key=APP_KEY,
        api_url=f"http://127.0.0.1:{port}",
        timeouts=Timeouts(read=60.0, long_poll_margin=0.2),
    )
    async with YagnaClient(cfg) as yagna:
        with trio.fail_after(5):
            with pytest.raises(DaemonTimeout):
                await yagna.market.collect_agreement_events(wait=0.1)


async def test_a_daemon_that_closes_the_connection_is_unreachable(nursery: trio.Nursery) -> None:
    accepted = 0

    async def hang_up(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.receive_some(65536)
        await stream.aclose()

    port = await _serve(hang_up, nursery)
    cfg = ApiConfig(
        app_key=APP_KEY,
        api_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=3, base_delay=0.001),
    )
    async with YagnaClient(cfg) as yagna:
        with pytest.raises(DaemonUnreachable) as info:
            await yagna.market.get_demands()
    assert info.value.operation == "getDemands"
    assert accepted == 3
    assert APP_KEY not in str(info.value)


async def test_no_daemon_at_all_is_unreachable() -> None:
    # Bind a port, then close it, so that nothing listens there.
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cfg = ApiConfig(
        app_key=APP_KEY,
        api_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=2, base_delay=0.001),
    )
    async with YagnaClient(cfg) as yagna:
        with pytest.raises(DaemonUnreachable, match="getIdentity"):
            await yagna.identity.get_identity()


async def test_retries_are_logged_without_the_app_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="golem_trio.yagna")
    daemon = Recorder(httpx2.Response(503, text=f"echo {APP_KEY}"), httpx2.Response(200, json=[]))
    async with make_client(daemon) as yagna:
        await yagna.market.get_demands()
    assert any("retry 1" in r.getMessage() for r in caplog.records)
    assert all(APP_KEY not in r.getMessage() for r in caplog.records)
