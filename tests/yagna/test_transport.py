"""The HTTP/1.1 transport to a plain-HTTP daemon, over real loopback sockets: connections are
reused while they are good and never once they are in doubt (a reply cut short, a daemon that
asked to close or closed an idle connection, an expired one), replies come back whole however
they are framed, and a broken daemon is a typed error."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Awaitable, Callable

import h11
import httpx2
import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_trio.yagna import (
    ApiConfig,
    DaemonTimeout,
    DaemonUnreachable,
    ReplyTooLarge,
    RetryPolicy,
    Timeouts,
)
from golem_trio.yagna._http import NO_BODY, HttpLayer
from golem_trio.yagna._transport import Call, Http11Transport

APP_KEY = "transport-key-0123456789"
CAP = 4096

#: How the test daemon answers a request, by the path's first segment.
MODES = ("length", "chunked", "close", "hang-up-after", "too-large", "head-only-close")


class Daemon:
    """A daemon speaking HTTP/1.1 through h11 that answers ``/MODE/ID`` as ``MODE`` says, with
    the body ``{"id": ID}``; counts the connections it accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0

    async def __call__(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                request = await self._request(conn, stream)
                if request is None:
                    return
                self.requests += 1
                _, mode, ident = request.target.decode().split("/")[:3]
                body = json.dumps({"id": ident}).encode()
                if not await self._answer(conn, stream, mode, body):
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()

    async def _request(self, conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _answer(
        self, conn: h11.Connection, stream: trio.SocketStream, mode: str, body: bytes
    ) -> bool:
        """Answer; whether the connection may carry another request."""
        headers = [("Content-Type", "application/json")]
        send = stream.send_all
        try:
            if mode == "chunked":
                await send(conn.send(h11.Response(status_code=200, headers=headers)))
                for start in range(0, len(body), 5):
                    await send(conn.send(h11.Data(data=body[start : start + 5])))
                await send(conn.send(h11.EndOfMessage()))
                return True
            if mode == "too-large":
                big = b" " * (CAP * 2) + body
                headers.append(("Content-Length", str(len(big))))
                await send(conn.send(h11.Response(status_code=200, headers=headers)))
                await send(conn.send(h11.Data(data=big)))
                await send(conn.send(h11.EndOfMessage()))
                return True
            if mode == "head-only-close":
                # A head promising a body that never comes: the daemon dies mid-reply.
                headers.append(("Content-Length", str(len(body) + 10)))
                await send(conn.send(h11.Response(status_code=200, headers=headers)))
                await send(conn.send(h11.Data(data=body)))
                return False
            if mode == "close":
                headers.append(("Connection", "close"))
            headers.append(("Content-Length", str(len(body))))
            await send(conn.send(h11.Response(status_code=200, headers=headers)))
            await send(conn.send(h11.Data(data=body)))
            await send(conn.send(h11.EndOfMessage()))
            # "hang-up-after": a daemon whose keep-alive ran out closes without a word.
            return mode not in ("close", "hang-up-after")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False


async def _serve(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[object]]
) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


def _layer(port: int, **config: object) -> HttpLayer:
    cfg = ApiConfig(
        app_key=APP_KEY,
        api_url=f"http://127.0.0.1:{port}",
        max_reply_size=CAP,
        retry=RetryPolicy(max_attempts=1),
        **config,  # type: ignore[arg-type]
    )
    return HttpLayer(cfg, rng=random.Random(1))


async def _get(layer: HttpLayer, port: int, mode: str, ident: int, *, safe: bool = True) -> object:
    url = f"http://127.0.0.1:{port}/{mode}/{ident}"
    method = "GET" if safe else "POST"
    body = None if safe else {"n": ident}
    kwargs: dict[str, object] = {"safe": safe}
    if body is not None:
        kwargs["body"] = body
    return await layer.call_json("op", method, url, dict, **kwargs)


@pytest.fixture
async def daemon(nursery: trio.Nursery) -> tuple[Daemon, int]:
    handler = Daemon()
    port = await _serve(nursery, handler)
    return handler, port


async def test_a_plain_http_daemon_gets_the_lean_transport_and_https_gets_httpx() -> None:
    plain = HttpLayer(ApiConfig(app_key=APP_KEY, api_url="http://127.0.0.1:1"))
    secure = HttpLayer(ApiConfig(app_key=APP_KEY, api_url="https://127.0.0.1:1"))
    mixed = HttpLayer(
        ApiConfig(
            app_key=APP_KEY, api_url="http://127.0.0.1:1", payment_url="https://127.0.0.1:2/p"
        )
    )
    try:
        assert isinstance(plain._control_transport, Http11Transport)
        assert isinstance(plain._poll_transport, Http11Transport)
        for layer in (secure, mixed):
            assert isinstance(layer._control_transport, httpx2.AsyncHTTPTransport)
            assert isinstance(layer._poll_transport, httpx2.AsyncHTTPTransport)
    finally:
        for layer in (plain, secure, mixed):
            await layer.aclose()


async def test_one_connection_carries_sequential_calls(daemon: tuple[Daemon, int]) -> None:
    handler, port = daemon
    layer = _layer(port)
    try:
        for i in range(20):
            assert await _get(layer, port, "length", i, safe=i % 2 == 0) == {"id": str(i)}
    finally:
        await layer.aclose()
    assert handler.connections == 1
    assert handler.requests == 20


async def test_concurrent_calls_open_what_they_need_and_keep_at_most_max_idle(
    daemon: tuple[Daemon, int],
) -> None:
    handler, port = daemon
    layer = _layer(port)
    results: dict[int, object] = {}

    async def one(i: int) -> None:
        results[i] = await _get(layer, port, "chunked", i)

    try:
        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(one, i)
        assert results == {i: {"id": str(i)} for i in range(40)}
        transport = layer._control_transport
        assert isinstance(transport, Http11Transport)
        assert 1 <= transport.idle_connections <= 32
        before = handler.connections
        for i in range(5):
            await _get(layer, port, "length", i)
        assert handler.connections == before  # reused, not reopened
    finally:
        await layer.aclose()
    assert transport.idle_connections == 0


@pytest.mark.parametrize("mode", ["close", "hang-up-after"])
async def test_a_connection_the_daemon_closed_is_not_reused(
    daemon: tuple[Daemon, int], mode: str
) -> None:
    """A daemon that says ``Connection: close``, or closes an idle connection silently (its
    keep-alive ran out): the next call, even one never repeated (``POST``), goes through on a
    new connection."""
    handler, port = daemon
    layer = _layer(port)
    try:
        assert await _get(layer, port, mode, 1) == {"id": "1"}
        await trio.sleep(0.05)  # the daemon's close reaches us
        assert await _get(layer, port, "length", 2, safe=False) == {"id": "2"}
    finally:
        await layer.aclose()
    assert handler.connections == 2


async def test_an_idle_connection_expires(daemon: tuple[Daemon, int]) -> None:
    handler, port = daemon
    layer = _layer(port)
    transport = Http11Transport(max_idle=4, keepalive_expiry=0.05)
    layer._control_transport = transport
    layer._owned.append(transport)
    try:
        await _get(layer, port, "length", 1)
        await _get(layer, port, "length", 2)
        assert handler.connections == 1
        await trio.sleep(0.1)
        await _get(layer, port, "length", 3)
    finally:
        await layer.aclose()
    assert handler.connections == 2


async def test_a_reply_cut_short_does_not_leave_its_connection_for_the_next(
    daemon: tuple[Daemon, int],
) -> None:
    handler, port = daemon
    layer = _layer(port)
    try:
        with pytest.raises(ReplyTooLarge):
            await _get(layer, port, "too-large", 1)
        # Its body is still on that connection: reusing it would read it as the next reply.
        assert await _get(layer, port, "length", 2) == {"id": "2"}
    finally:
        await layer.aclose()
    assert handler.connections == 2


async def test_a_daemon_dying_mid_reply_is_unreachable(daemon: tuple[Daemon, int]) -> None:
    handler, port = daemon
    layer = _layer(port)
    try:
        with pytest.raises(DaemonUnreachable, match="op: GET"):
            await _get(layer, port, "head-only-close", 1)
        assert await _get(layer, port, "length", 2) == {"id": "2"}
    finally:
        await layer.aclose()
    assert handler.connections == 2


async def test_a_call_cancelled_mid_reply_closes_its_connection(nursery: trio.Nursery) -> None:
    connections = 0
    first = trio.Event()

    async def slow_then_fast(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        mine = connections
        async with stream:
            await stream.receive_some(65536)
            if mine == 1:
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{")
                first.set()
                await trio.sleep_forever()
            body = b'{"id": "2"}'
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n"
            await stream.send_all(head.encode() + body)
            await trio.sleep_forever()

    port = await _serve(nursery, slow_then_fast)
    layer = _layer(port)
    try:
        async with trio.open_nursery() as inner:
            inner.start_soon(functools.partial(_get, layer, port, "x", 1))
            await first.wait()
            inner.cancel_scope.cancel()
        assert await _get(layer, port, "x", 2) == {"id": "2"}
    finally:
        await layer.aclose()
    assert connections == 2


async def test_garbage_for_a_reply_is_a_typed_error(nursery: trio.Nursery) -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(b"<html>502 Bad Gateway</html>\r\n\r\n")

    port = await _serve(nursery, garbage)
    layer = _layer(port)
    try:
        with pytest.raises(DaemonUnreachable, match="op: GET"):
            await _get(layer, port, "x", 1)
    finally:
        await layer.aclose()


async def test_a_reply_head_that_never_ends_is_refused(nursery: trio.Nursery) -> None:
    async def endless(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 200 OK\r\n")
            for i in range(20_000):
                await stream.send_all(f"X-Filler-{i}: {'y' * 40}\r\n".encode())

    port = await _serve(nursery, endless)
    layer = _layer(port)
    try:
        with trio.fail_after(10), pytest.raises(DaemonUnreachable):
            await _get(layer, port, "x", 1)
    finally:
        await layer.aclose()


async def test_a_silent_daemon_is_a_read_timeout(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    port = await _serve(nursery, silent)
    layer = _layer(port, timeouts=Timeouts(read=0.2))
    try:
        with trio.fail_after(5), pytest.raises(DaemonTimeout, match="ReadTimeout"):
            await _get(layer, port, "x", 1)
    finally:
        await layer.aclose()


async def _deaf(stream: trio.SocketStream) -> None:
    """A daemon that accepts the connection and never reads from it."""
    async with stream:
        await trio.sleep_forever()


#: A request body no loopback socket buffers hold while the other end reads nothing.
_HUGE = {"data": "x" * (64 * 1024 * 1024)}


async def test_a_daemon_that_reads_nothing_is_a_write_timeout(nursery: trio.Nursery) -> None:
    port = await _serve(nursery, _deaf)
    layer = _layer(port, timeouts=Timeouts(write=0.3))
    try:
        with trio.fail_after(10), pytest.raises(DaemonTimeout, match="WriteTimeout"):
            await layer.call("op", "POST", f"http://127.0.0.1:{port}/x", body=_HUGE)
    finally:
        await layer.aclose()


async def test_the_overall_deadline_bounds_the_write_too(nursery: trio.Nursery) -> None:
    port = await _serve(nursery, _deaf)
    layer = _layer(port, timeouts=Timeouts(write=30.0, reply=0.3))
    transport = layer._control_transport
    assert isinstance(transport, Http11Transport)
    try:
        with trio.fail_after(10), pytest.raises(DaemonTimeout, match="did not arrive in full"):
            await layer.call("op", "POST", f"http://127.0.0.1:{port}/x", body=_HUGE)
        # The connection is in doubt: closed, never given back.
        assert transport.idle_connections == 0
    finally:
        await layer.aclose()


async def test_a_closed_transport_refuses_calls(daemon: tuple[Daemon, int]) -> None:
    handler, port = daemon
    layer = _layer(port)
    await _get(layer, port, "length", 1)
    await layer.aclose()
    with pytest.raises(DaemonUnreachable, match="closed"):
        await _get(layer, port, "length", 2)
    assert handler.requests == 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(
        st.tuples(st.sampled_from(MODES), st.booleans(), st.integers(0, 3)),
        min_size=1,
        max_size=25,
    )
)
def test_every_call_gets_its_own_reply_whatever_came_before(
    plan: list[tuple[str, bool, int]],
) -> None:
    """Any sequence of replies framed any way, cut short, closed or hung up on, with calls
    alone or several at once: every whole reply reaches the call that asked for it, and every
    broken one is a typed error of that call only."""

    async def one(
        layer: HttpLayer, port: int, outcomes: dict[int, object], i: int, mode: str, safe: bool
    ) -> None:
        try:
            outcomes[i] = await _get(layer, port, mode, i, safe=safe)
        except (ReplyTooLarge, DaemonUnreachable) as exc:
            outcomes[i] = type(exc)

    async def main() -> None:
        handler = Daemon()
        async with trio.open_nursery() as nursery:
            port = await _serve(nursery, handler)
            layer = _layer(port)
            try:
                for step, (mode, safe, beside) in enumerate(plan):
                    outcomes: dict[int, object] = {}

                    async with trio.open_nursery() as calls:
                        calls.start_soon(one, layer, port, outcomes, step * 10, mode, safe)
                        for k in range(beside):
                            calls.start_soon(
                                one, layer, port, outcomes, step * 10 + k + 1, "length", safe
                            )
                    assert outcomes.pop(step * 10) == {
                        "too-large": ReplyTooLarge,
                        "head-only-close": DaemonUnreachable,
                    }.get(mode, {"id": str(step * 10)})
                    assert outcomes == {i: {"id": str(i)} for i in outcomes}
                    if mode in ("close", "hang-up-after"):
                        await trio.sleep(0.01)  # the daemon's close reaches us
            finally:
                await layer.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)


# Path segments as the client's URLs have them (ids, addresses, names), any printable ASCII
# but the URL's own delimiters and '%' (the client never puts an escape in a path itself).
_segment = st.text(
    alphabet=st.sampled_from([chr(i) for i in range(0x20, 0x7F) if chr(i) not in "/?#%"]),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
_param_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(0, 1e6, allow_nan=False),
    st.text(max_size=20),
)


#: Only shapes requests (never sends): one for every example.
_SHAPER = HttpLayer(ApiConfig(app_key=APP_KEY, api_url="http://127.0.0.1:5000"))


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segments=st.lists(_segment, min_size=1, max_size=4),
    params=st.dictionaries(
        st.sampled_from(["timeout", "maxEvents", "afterTimestamp", "a b"]), _param_value
    ),
    body=st.one_of(
        st.just(NO_BODY), st.none(), st.dictionaries(st.text(max_size=5), st.integers())
    ),
    accept=st.sampled_from([None, "text/event-stream"]),
    long_poll=st.sampled_from([None, 5.0]),
)
def test_the_direct_path_sends_what_httpx_would(
    method: str,
    segments: list[str],
    params: dict[str, object],
    body: object,
    accept: str | None,
    long_poll: float | None,
) -> None:
    """Our transport's calls skip httpx's request objects: they must still put the same bytes
    on the wire (target, headers, body) and the same timeouts."""
    layer = _SHAPER
    url = "http://127.0.0.1:5000/" + "/".join(segments)
    headers = None if accept is None else {"Accept": accept}
    call, path = layer._call(method, url, body, params, headers, long_poll)
    request = layer._request(method, url, body, params, headers, long_poll)
    assert call.method.decode() == request.method
    assert call.origin == (request.url.host, request.url.port)
    assert call.target == request.url.raw_path
    assert path == request.url.path
    assert sorted((k.lower(), v) for k, v in call.headers) == sorted(
        (k.lower(), v) for k, v in request.headers.raw
    )
    assert call.content == request.read()
    timeout = request.extensions["timeout"]
    assert (call.connect, call.write, call.read) == (
        timeout["connect"],
        timeout["write"],
        timeout["read"],
    )


# --- the reply framing, byte by byte ---------------------------------------------------------


def _call(port: int, *, headers: list[tuple[bytes, bytes]] | None = None) -> Call:
    return Call(
        method=b"GET",
        origin=("127.0.0.1", port),
        target=b"/x",
        headers=[(b"Host", f"127.0.0.1:{port}".encode()), *(headers or [])],
        content=b"",
        connect=5.0,
        write=5.0,
        read=5.0,
    )


async def _one_reply(
    reply: Callable[[], list[bytes]], then_close: bool = True
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    await trio.lowlevel.checkpoint()

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            for piece in reply():
                await stream.send_all(piece)
                await trio.lowlevel.checkpoint()
            if not then_close:
                await trio.sleep_forever()

    return serve


def _chunked(body: bytes, cuts: list[int], extension: bool, trailers: bool) -> bytes:
    out = b""
    start = 0
    for cut in [*sorted(c % (len(body) + 1) for c in cuts), len(body)]:
        if cut > start:
            size = f"{cut - start:x}".encode()
            out += size + (b";ext=1" if extension else b"") + b"\r\n" + body[start:cut] + b"\r\n"
            start = cut
    out += b"0\r\n" + (b"X-Trailer: yes\r\n" if trailers else b"") + b"\r\n"
    return out


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=3000),
    framing=st.sampled_from(["length", "chunked", "until-close", "http/1.0", "close-header"]),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
    splits=st.lists(st.integers(1, 4000), max_size=8),
    informational=st.booleans(),
    extension=st.booleans(),
    trailers=st.booleans(),
    shout=st.booleans(),
)
def test_replies_framed_any_way_and_sent_in_any_pieces_come_back_whole(
    body: bytes,
    framing: str,
    cuts: list[int],
    splits: list[int],
    informational: bool,
    extension: bool,
    trailers: bool,
    shout: bool,
) -> None:
    """Whatever the framing (length, chunks with extensions and trailers, the end of the
    connection), header case, a 100 Continue first, and however the bytes are cut into
    segments, the body comes back as sent, and the connection is kept exactly when the reply
    allows another request on it."""
    length_name = b"CONTENT-LENGTH" if shout else b"Content-Length"
    version = b"HTTP/1.0" if framing == "http/1.0" else b"HTTP/1.1"
    head = version + b" 200 OK\r\nContent-Type: application/json\r\n"
    if framing == "chunked":
        head += b"Transfer-Encoding: " + (b"CHUNKED" if shout else b"chunked") + b"\r\n"
        payload = _chunked(body, cuts, extension, trailers)
    elif framing == "until-close":
        payload = body
    else:
        head += length_name + b": " + str(len(body)).encode() + b"\r\n"
        if framing == "close-header":
            head += b"Connection: " + (b"Keep-Alive, Close" if shout else b"close") + b"\r\n"
        payload = body
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n" if informational else b"") + head + b"\r\n" + payload
    pieces = []
    start = 0
    for cut in sorted({s % (len(raw) + 1) for s in splits} | {len(raw)}):
        if cut > start:
            pieces.append(raw[start:cut])
            start = cut
    reusable = framing in ("length", "chunked")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            serve = await _one_reply(lambda: pieces, then_close=not reusable)
            port = await _serve(nursery, serve)
            transport = Http11Transport(max_idle=4)
            status, got = await transport.fetch(_call(port), cap=10_000)
            assert (status, got) == (200, body)
            assert transport.idle_connections == (1 if reusable else 0)
            await transport.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 5000,
        b"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
)
async def test_a_broken_reply_is_a_protocol_error_and_its_connection_is_dropped(
    nursery: trio.Nursery, reply: bytes
) -> None:
    port = await _serve(nursery, await _one_reply(lambda: [reply]))
    transport = Http11Transport(max_idle=4)
    try:
        with trio.fail_after(5), pytest.raises(httpx2.RemoteProtocolError):
            await transport.fetch(_call(port), cap=10_000)
        assert transport.idle_connections == 0
    finally:
        await transport.aclose()


@pytest.mark.parametrize(
    "header",
    [
        (b"X-Evil", b"a\r\nInjected: yes"),
        (b"X-Evil", b"a\nb"),
        (b"X-Evil\r\nInjected", b"yes"),
        (b"X-Evil:", b"yes"),
    ],
)
async def test_a_header_that_would_break_its_line_is_refused_before_anything_is_sent(
    nursery: trio.Nursery, header: tuple[bytes, bytes]
) -> None:
    connections = 0

    async def count(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        await stream.aclose()

    port = await _serve(nursery, count)
    transport = Http11Transport(max_idle=4)
    try:
        with pytest.raises(ValueError, match="cannot be sent"):
            await transport.fetch(_call(port, headers=[header]), cap=10_000)
    finally:
        await transport.aclose()
    await trio.sleep(0.05)
    assert connections == 0


async def test_a_reply_with_no_body_by_its_status_keeps_the_connection(
    nursery: trio.Nursery,
) -> None:
    replies = [b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\n\r\n"]
    for reply in replies:
        port = await _serve(nursery, await _one_reply(lambda r=reply: [r], then_close=False))  # type: ignore[misc]
        transport = Http11Transport(max_idle=4)
        try:
            status, body = await transport.fetch(_call(port), cap=10)
            assert body == b""
            assert status in (204, 304)
            assert transport.idle_connections == 1
        finally:
            await transport.aclose()
