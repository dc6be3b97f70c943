"""LocalNet's HTTP server over real loopback sockets: keep-alive, bodies both ways, streamed
replies, what it does with a failing app, a client that goes away, bad or oversized requests,
idle connections, and websockets (accepted, refused with the app's reply, or refused)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest
import trio
from httpx2.websockets import WebSocketUpgradeError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from golem_trio.localnet import _server
from golem_trio.localnet._server import serve_asgi


class Probe:
    """What the app saw: streams ended by a client that left, connections seen."""

    def __init__(self) -> None:
        self.stream_gone = trio.Event()
        self.release = trio.Event()
        self.peers: set[tuple[str, int]] = set()


class _AsAsgi:
    """Wraps an ASGI function so that Starlette's route hands it the scope as is (it calls a
    plain function as a request handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def make_app(probe: Probe) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        assert request.client is not None
        probe.peers.add((request.client.host, request.client.port))
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "body": body.decode(),
                "auth": request.headers.get("authorization"),
            }
        )

    async def fail(request: Request) -> Response:
        raise RuntimeError("the app failed")

    async def fail_midway(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first part;"
            raise RuntimeError("the app failed midway")

        return StreamingResponse(parts(), media_type="text/plain")

    async def ticks(scope: Scope, receive: Receive, send: Send) -> None:
        """An endless event stream, as a plain ASGI app: it sees the client leave as the
        ``OSError`` of a ``send`` (ASGI 2.4)."""
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            for i in range(1_000_000):
                chunk = f"data: {i}\n\n".encode()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await trio.sleep(0.01)
        except OSError:
            probe.stream_gone.set()

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        """A stream whose first part waits for the test."""
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await probe.release.wait()
        await send({"type": "http.response.body", "body": b"at last"})

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"][::-1])
            elif message.get("text") == "bye":
                await websocket.close(code=4000)
                return
            else:
                await websocket.send_text((message.get("text") or "").upper())

    async def ws_denied(websocket: WebSocket) -> None:
        await websocket.send_denial_response(Response(b"go away", status_code=401))

    async def ws_closed(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    return Starlette(
        routes=[
            Route("/echo/{name}", echo, methods=["GET", "POST", "PUT"]),
            Route("/fail", fail),
            Route("/fail-midway", fail_midway),
            Route("/ticks", _AsAsgi(ticks)),
            Route("/held", _AsAsgi(held)),
            WebSocketRoute("/ws", ws_echo),
            WebSocketRoute("/ws-denied", ws_denied),
            WebSocketRoute("/ws-closed", ws_closed),
        ]
    )


@pytest.fixture
async def served(nursery: trio.Nursery) -> tuple[str, Probe]:
    probe = Probe()
    urls = await nursery.start(serve_asgi, make_app(probe), "127.0.0.1", 0)
    return urls[0], probe


async def _raw(url: str, data: bytes, *, until_close: bool = True) -> bytes:
    """Send ``data`` on a new connection; what comes back until the server closes it."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.fail_after(10):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return received
                received += chunk
                if not until_close and b"\r\n\r\n" in received:
                    return received


async def test_requests_and_bodies_both_ways_on_one_kept_connection(
    served: tuple[str, Probe],
) -> None:
    url, probe = served
    async with httpx2.AsyncClient(base_url=url) as client:
        got = await client.post(
            "/echo/a%20b", params={"x": "1"}, content=b"hello", headers={"Authorization": "k"}
        )
        assert got.status_code == 200
        assert got.json() == {
            "method": "POST",
            "path": "/echo/a b",
            "query": {"x": "1"},
            "body": "hello",
            "auth": "k",
        }
        for i in range(5):
            again = await client.get(f"/echo/{i}")
            assert again.json()["path"] == f"/echo/{i}"
        big = b"x" * 300_000
        put = await client.put("/echo/big", content=big)
        assert put.json()["body"] == big.decode()
    assert len(probe.peers) == 1  # keep-alive: one connection for all seven


async def test_a_stream_gets_its_head_before_its_first_part(served: tuple[str, Probe]) -> None:
    """A reply of known length goes out in one write with its body; a stream's head is not
    held back for a first part that may be slow to come."""
    url, probe = served
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some(65536)
        assert received.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in received.lower()
        probe.release.set()
        with trio.fail_after(10):
            while not received.endswith(b"0\r\n\r\n"):
                received += await stream.receive_some(65536)
        assert b"at last" in received


async def test_pipelined_requests_are_answered_in_order(served: tuple[str, Probe]) -> None:
    url, _ = served
    requests = (
        b"".join(f"GET /echo/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3))
        + b"GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    received = await _raw(url, requests)
    paths = [part.split(b'"path":"')[1].split(b'"')[0] for part in received.split(b"HTTP/1.1 ")[1:]]
    assert paths == [b"/echo/0", b"/echo/1", b"/echo/2", b"/echo/last"]


async def test_an_app_failure_before_its_reply_is_a_500_and_the_server_goes_on(
    served: tuple[str, Probe], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = served
    async with httpx2.AsyncClient(base_url=url) as client:
        failed = await client.get("/fail")
        assert failed.status_code == 500
        assert (await client.get("/echo/after")).status_code == 200
    assert "the app failed" in caplog.text


async def test_an_app_failure_midway_cuts_the_reply(served: tuple[str, Probe]) -> None:
    url, _ = served
    async with httpx2.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get("/fail-midway")
        assert (await client.get("/echo/after")).status_code == 200


async def test_a_client_leaving_a_stream_ends_it_on_the_server(served: tuple[str, Probe]) -> None:
    url, probe = served
    async with httpx2.AsyncClient(base_url=url) as client:
        async with client.stream("GET", "/ticks") as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            seen = 0
            async for _ in reply.aiter_bytes():
                seen += 1
                if seen == 3:
                    break
    with trio.fail_after(5):
        await probe.stream_gone.wait()


async def test_bad_and_oversized_requests_are_refused(
    served: tuple[str, Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = served
    garbage = await _raw(url, b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    monkeypatch.setattr(_server, "MAX_BODY", 1000)
    oversized = await _raw(
        url, b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"y" * 5000
    )
    assert oversized.startswith(b"HTTP/1.1 413 ")
    async with httpx2.AsyncClient(base_url=url) as client:
        assert (await client.get("/echo/after")).status_code == 200


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "IDLE_TIMEOUT", 0.2)
    urls = await nursery.start(serve_asgi, make_app(Probe()), "127.0.0.1", 0)
    host, port = urls[0].removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            received = b""
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break  # closed by the server once idle
                received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")


async def test_websocket_messages_both_ways_and_the_apps_close(served: tuple[str, Probe]) -> None:
    url, _ = served
    async with httpx2.AsyncClient(base_url=url) as client:
        async with client.websocket("/ws") as ws:
            # (Within the client's default limit of 64 KiB per message.)
            await ws.send_bytes(b"abc" * 20_000)
            assert await ws.receive_bytes() == b"cba" * 20_000
            await ws.send_text("hello")
            assert await ws.receive_text() == "HELLO"
            await ws.send_text("bye")
            with pytest.raises(Exception) as closed:
                await ws.receive_text()
            assert "4000" in str(closed.value)


@pytest.mark.parametrize(("path", "status"), [("/ws-denied", 401), ("/ws-closed", 403)])
async def test_a_refused_websocket_gets_an_http_reply(
    served: tuple[str, Probe], path: str, status: int
) -> None:
    url, _ = served
    upgrade = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    received = await _raw(url, upgrade.encode(), until_close=False)
    assert received.startswith(f"HTTP/1.1 {status} ".encode())
    async with httpx2.AsyncClient(base_url=url) as client:
        with pytest.raises(WebSocketUpgradeError):
            async with client.websocket(path):
                pass


async def test_cancelling_the_server_closes_its_connections() -> None:
    probe = Probe()
    async with trio.open_nursery() as outer:
        urls = await outer.start(functools.partial(serve_asgi, make_app(probe), "127.0.0.1", 0))
        host, port = urls[0].removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            await stream.receive_some(65536)
        outer.cancel_scope.cancel()
    with trio.fail_after(5):
        assert await stream.receive_some(65536) == b""
    await stream.aclose()
