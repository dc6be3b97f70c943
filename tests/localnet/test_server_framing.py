"""LocalNet's HTTP server reads requests with its own framing: every way a client may frame
them (``Content-Length`` or chunked bodies, extensions, trailers, pipelining, any split into
segments) gives the app the same request, replies are read back with h11 as the reference,
and what an HTTP/1.1 client does not send is refused with the status h11 would give."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator

import h11
import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from golem_trio.localnet import _server
from golem_trio.localnet._server import serve_asgi


async def echo(request: Request) -> Response:
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "body": (await request.body()).decode("latin-1"),
            "tag": request.headers.get("x-tag"),
        }
    )


async def stream(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            await trio.lowlevel.checkpoint()
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD"]
APP = Starlette(routes=[Route("/stream", stream), Route("/{path:path}", echo, methods=METHODS)])


async def _exchange(port: int, pieces: list[bytes], pause: float = 0.0) -> bytes:
    """Send ``pieces`` one write each; all that comes back until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = bytearray()
    async with stream:
        for piece in pieces:
            await stream.send_all(piece)
            if pause:
                await trio.sleep(pause)
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                received += chunk
    return bytes(received)


def _replies(data: bytes, methods: list[str]) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The replies in ``data`` (to requests of ``methods``, in order), read with h11."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    client.receive_data(b"")
    replies = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        replies.append((status, headers, body))
        if client.our_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    return replies


@pytest.fixture
async def port(nursery: trio.Nursery) -> int:
    urls = await nursery.start(serve_asgi, APP, "127.0.0.1", 0)
    return int(urls[0].rsplit(":", 1)[1])


_BODY = st.binary(max_size=300).map(lambda b: bytes(x % 94 + 33 for x in b))
_REQUEST = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]),
    st.text("abcxyz019-_.~", min_size=0, max_size=12),
    st.text("abc=&19", max_size=8),
    _BODY,
    st.sampled_from(["length", "chunked", "none"]),
    st.lists(st.integers(min_value=1, max_value=50), max_size=5),
    st.booleans(),
)


def _frame(request: tuple[str, str, str, bytes, str, list[int], bool], tag: int) -> bytes:
    method, path, query, body, framing, cuts, extras = request
    target = f"/{path}" + (f"?{query}" if query else "")
    lines = [f"{method} {target} HTTP/1.1", "Host: x", f"X-Tag: {tag}"]
    if framing == "none":
        body = b""
    if framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        chunks, rest = [], body
        for cut in cuts:
            piece, rest = rest[:cut], rest[cut:]
            if piece:
                chunks.append(piece)
        if rest:
            chunks.append(rest)
        ext = ";name=value" if extras else ""
        payload = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext.encode(), c) for c in chunks)
        payload += b"0\r\n" + (b"X-Trailer: 1\r\n" if extras else b"") + b"\r\n"
    else:
        if framing == "length":
            lines.append(f"Content-Length: {len(body)}")
        payload = body
    head = "\r\n".join(lines) + "\r\n\r\n"
    return (b"\r\n" if extras and tag == 0 else b"") + head.encode() + payload


@settings(max_examples=150, deadline=None)
# A blank line before the first request, its CR and LF in two reads.
@example(requests=[("GET", "", "", b"", "length", [], True)], cuts=[1])
@given(
    requests=st.lists(_REQUEST, min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=6),
)
def test_requests_framed_any_way_and_sent_in_any_pieces_reach_the_app_whole(
    requests: list[tuple[str, str, str, bytes, str, list[int], bool]],
    cuts: list[int],
) -> None:
    async def main() -> bytes:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve_asgi, APP, "127.0.0.1", 0)
            data = await _exchange(int(urls[0].rsplit(":", 1)[1]), pieces, pause=0.001)
            nursery.cancel_scope.cancel()
        return data

    wire = b"".join(_frame(r, i) for i, r in enumerate(requests))
    wire += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    pieces, rest = [], wire
    for cut in cuts:
        piece, rest = rest[:cut], rest[cut:]
        if piece:
            pieces.append(piece)
    pieces.append(rest)
    data = trio.run(main)
    methods = [r[0] for r in requests] + ["GET"]
    replies = _replies(data, methods)
    assert len(replies) == len(methods)
    for i, (request, (status, _headers, body)) in enumerate(zip(requests, replies, strict=False)):
        method, path, query, sent, framing, _, _ = request
        assert status == 200
        if method == "HEAD":
            assert body == b""
            continue
        got = json.loads(body)
        assert got["method"] == method
        assert got["path"] == f"/{path}"
        assert got["query"] == query
        assert got["body"] == ("" if framing == "none" else sent.decode("latin-1"))
        assert got["tag"] == str(i)
    assert json.loads(replies[-1][2])["path"] == "/last"
    assert replies[-1][1][b"connection"] == b"close"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ab\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * (70 * 1024) + b"\r\n\r\n", 431),
    ],
)
async def test_what_a_client_does_not_send_is_refused_and_the_connection_closed(
    port: int, request_bytes: bytes, status: int
) -> None:
    data = await _exchange(port, [request_bytes])
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:80]
    assert b"connection: close" in data.lower()


async def test_a_client_that_expects_100_continue_gets_it_before_sending_its_body(
    port: int,
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\n"
        )
        with trio.fail_after(10):
            first = await stream.receive_some(65536)
        assert first.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(b"abc")
        received = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["body"] == "abc"


async def test_an_http_10_client_gets_its_stream_up_to_the_close(port: int) -> None:
    data = await _exchange(port, [b"GET /stream HTTP/1.0\r\n\r\n"])
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"chunked" not in head.lower()
    assert body == b"one two three"


async def test_a_head_request_gets_no_body_and_the_connection_goes_on(port: int) -> None:
    data = await _exchange(
        port,
        [
            b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ],
    )
    (head_status, head_headers, head_body), (status, _, body) = _replies(data, ["HEAD", "GET"])
    assert (head_status, head_body, status) == (200, b"", 200)
    assert int(head_headers[b"content-length"]) > 0
    assert json.loads(body)["path"] == "/y"


@pytest.fixture
async def impatient_port(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> int:
    """A server that gives a request 0.3 s to arrive once it started."""
    monkeypatch.setattr(_server, "REQUEST_TIMEOUT", 0.3)
    urls = await nursery.start(functools.partial(serve_asgi, APP, "127.0.0.1", 0))
    return int(urls[0].rsplit(":", 1)[1])


async def test_a_body_that_does_not_come_in_time_is_a_408(impatient_port: int) -> None:
    received = await _exchange(
        impatient_port, [b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"]
    )
    assert received.startswith(b"HTTP/1.1 408 ")


async def test_a_request_head_that_never_ends_is_dropped(impatient_port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", impatient_port)
    closed = False
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with trio.fail_after(10):
            # One header line every 0.1 s: each read is quick, the head never ends.
            while not closed:
                try:
                    await stream.send_all(b"X-A: 1\r\n")
                except trio.BrokenResourceError:
                    closed = True
                with trio.move_on_after(0.1):
                    try:
                        closed = closed or not await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        closed = True  # reset: it closed with our lines unread
    assert closed
