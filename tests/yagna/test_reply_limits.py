"""Every reply has an overall deadline and a size cap, over real loopback sockets: a reply
trickled one byte every 0.25 s ends in ``DaemonTimeout`` at the deadline (each byte would
satisfy the read timeout), and a reply body past ``max_reply_size`` raises ``ReplyTooLarge``,
whether it announces its length or not. Both count as transient for the background loops."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from golem_trio.yagna import (
    ApiConfig,
    DaemonTimeout,
    ReplyTooLarge,
    Timeouts,
    YagnaClient,
    is_transient,
)

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A raw HTTP server on a free loopback port: reads one request head, then ``handler``."""

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await handler(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, one, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


BODY = b'{"identity": "0x1234567890123456789012345678901234567890", "name": "r", "role": "m"}'


def trickle(interval: float) -> Handler:
    """The reply's head at once, then its body one byte every ``interval`` seconds."""

    async def handler(stream: trio.SocketStream) -> None:
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        )
        for byte in BODY:
            await trio.sleep(interval)
            await stream.send_all(bytes([byte]))

    return handler


def large(announce: bool) -> Handler:
    async def handler(stream: trio.SocketStream) -> None:
        body = b"[" + b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' * 40_000 + b'"x"]'
        length = f"Content-Length: {len(body)}\r\n" if announce else "Connection: close\r\n"
        await stream.send_all(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n".encode()
        )
        for start in range(0, len(body), 65536):
            await stream.send_all(body[start : start + 65536])

    return handler


async def test_a_trickled_reply_hits_the_overall_deadline() -> None:
    async with serve(trickle(0.25)) as url:
        config = ApiConfig(app_key="k", api_url=url, timeouts=Timeouts(read=5.0, reply=1.5))
        async with YagnaClient(config) as yagna:
            started = trio.current_time()
            with pytest.raises(DaemonTimeout, match="did not arrive in full") as caught:
                await yagna.identity.get_identity()
            elapsed = trio.current_time() - started
    assert 1.4 <= elapsed < 4.0, elapsed
    assert is_transient(caught.value)


async def test_a_whole_reply_within_the_deadline_is_read() -> None:
    async with serve(trickle(0.01)) as url:
        config = ApiConfig(app_key="k", api_url=url, timeouts=Timeouts(read=5.0, reply=60.0))
        async with YagnaClient(config) as yagna:
            with trio.fail_after(60):
                me = await yagna.identity.get_identity()
    assert me.name == "r"


async def test_the_read_timeout_bounds_each_silence_not_the_whole_reply() -> None:
    # 85 bytes 0.02 s apart: the reply takes about 1.7 s, more than three read timeouts.
    async with serve(trickle(0.02)) as url:
        config = ApiConfig(app_key="k", api_url=url, timeouts=Timeouts(read=0.5, reply=60.0))
        async with YagnaClient(config) as yagna:
            with trio.fail_after(60):
                started = trio.current_time()
                me = await yagna.identity.get_identity()
                elapsed = trio.current_time() - started
    assert me.name == "r"
    assert elapsed > 0.5, elapsed


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "until-close"])
async def test_an_oversized_reply_hits_the_cap(announce: bool) -> None:
    async with serve(large(announce)) as url:
        config = ApiConfig(app_key="k", api_url=url, max_reply_size=1024 * 1024)
        async with YagnaClient(config) as yagna:
            with trio.fail_after(30), pytest.raises(ReplyTooLarge) as caught:
                await yagna.payment.get_debit_note_events(wait=0.1)
    assert caught.value.limit == 1024 * 1024
    assert caught.value.size > 1024 * 1024
    assert is_transient(caught.value)


def test_the_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Timeouts(reply=0)
    with pytest.raises(ValueError):
        ApiConfig(app_key="k", max_reply_size=0)
    assert Timeouts().reply == 60.0
    assert ApiConfig(app_key="k").max_reply_size == 64 * 1024 * 1024
