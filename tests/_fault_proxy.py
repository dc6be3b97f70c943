"""A fault-injecting HTTP proxy for tests: raw trio sockets in front of a served daemon.

``async with open_fault_proxy(upstream_url) as proxy:`` listens on a loopback port
(``proxy.url``) and forwards every request to ``upstream_url``, one upstream connection per
request (``Connection: close`` both ways). While a fault window is on
(:meth:`FaultProxy.window`, :meth:`FaultProxy.start_faults`), requests whose path matches the
window's ``routes`` (regular expressions; all paths by default) are not forwarded but answered
by the fault instead, in turn when several kinds are given:

* ``"503"``: ``503`` with an HTML error page, as a proxy in front of a restarting daemon sends;
* ``"html"``: ``200`` with an HTML page (a login or captive page): not the daemon's JSON;
* ``"malformed"``: ``200 application/json`` with a body that is not JSON;
* ``"408"``: ``408`` with a JSON message;
* ``"refuse"``: the connection is closed at once, with no answer;
* ``"stall"``: nothing is answered until the window ends, then the connection is closed.

Requests that arrived during a window are counted per kind (:attr:`FaultProxy.injected`);
forwarded ones in :attr:`FaultProxy.forwarded`. It works under the real clock only (sockets).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from urllib.parse import urlsplit

import attrs
import trio

__all__ = ["FAULT_KINDS", "FaultProxy", "open_fault_proxy"]

FAULT_KINDS = ("503", "html", "malformed", "408", "refuse", "stall")

_HTML = (
    b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center>"
    b"<hr><center>nginx</center></body></html>"
)


def _reply(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_CANNED = {
    "503": _reply("503 Service Unavailable", "text/html", _HTML),
    "html": _reply("200 OK", "text/html; charset=utf-8", _HTML.replace(b"503", b"Welcome")),
    "malformed": _reply("200 OK", "application/json", b'[{"eventType": "DebitNoteReceivedEv'),
    "408": _reply("408 Request Timeout", "application/json", b'{"message": "Timeout"}'),
}


@attrs.define(eq=False)
class _Window:
    kinds: Sequence[str]
    routes: Sequence[re.Pattern[str]]
    over: trio.Event = attrs.field(factory=trio.Event)
    hit: trio.Event = attrs.field(factory=trio.Event)
    turn: itertools.count[int] = attrs.field(factory=itertools.count)

    def matches(self, path: str) -> bool:
        return not self.routes or any(r.search(path) for r in self.routes)

    def next_kind(self) -> str:
        return self.kinds[next(self.turn) % len(self.kinds)]


@attrs.define(eq=False)
class FaultProxy:
    """The running proxy; get one from :func:`open_fault_proxy`."""

    upstream_host: str
    upstream_port: int
    port: int = 0
    injected: Counter[str] = attrs.field(factory=Counter)
    forwarded: int = 0
    _window: _Window | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faulting(self) -> bool:
        return self._window is not None

    def start_faults(self, kinds: Iterable[str] = ("503",), routes: Iterable[str] = ()) -> None:
        """Answer matching requests with ``kinds`` (in turn) from now until
        :meth:`stop_faults`."""
        kinds = tuple(kinds)
        unknown = set(kinds) - set(FAULT_KINDS)
        if not kinds or unknown:
            raise ValueError(f"fault kinds must be among {FAULT_KINDS}, got {kinds}")
        self.stop_faults()
        self._window = _Window(kinds, [re.compile(r) for r in routes])

    def stop_faults(self) -> None:
        """End the window: stalled requests are closed, new ones forwarded again."""
        if self._window is not None:
            self._window.over.set()
            self._window = None

    async def wait_hit(self) -> None:
        """Return once the current fault window answered a request with a fault."""
        window = self._window
        if window is None:
            raise RuntimeError("no fault window is open")
        await window.hit.wait()

    @contextlib.asynccontextmanager
    async def window(
        self, seconds: float, kinds: Iterable[str] = ("503",), routes: Iterable[str] = ()
    ) -> AsyncIterator[None]:
        """A fault window of ``seconds`` (the block runs while it lasts, and waits for its
        end)."""
        self.start_faults(kinds, routes)
        try:
            yield
            await trio.sleep_until(trio.current_time() + seconds)
        finally:
            self.stop_faults()

    async def _serve(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                request = await _read_request(client)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
                return
            if request is None:
                return
            path = request.split(b" ", 2)[1].decode("latin-1", "replace")
            window = self._window
            if window is not None and window.matches(urlsplit(path).path):
                kind = window.next_kind()
                self.injected[kind] += 1
                window.hit.set()
                await self._fault(client, kind, window)
                return
            self.forwarded += 1
            await self._forward(client, request)

    async def _fault(self, client: trio.SocketStream, kind: str, window: _Window) -> None:
        if kind == "refuse":
            await trio.lowlevel.checkpoint()
            return
        if kind == "stall":
            await window.over.wait()
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await client.send_all(_CANNED[kind])

    async def _forward(self, client: trio.SocketStream, request: bytes) -> None:
        try:
            upstream = await trio.open_tcp_stream(self.upstream_host, self.upstream_port)
        except OSError:
            return
        async with upstream:
            try:
                await upstream.send_all(request)
                while True:
                    chunk = await upstream.receive_some(65536)
                    if not chunk:
                        return
                    await client.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


async def _read_request(stream: trio.SocketStream) -> bytes | None:
    """One request, head and body (by ``Content-Length``), with ``Connection: close``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            raise ValueError("request head too large")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kept = [lines[0]]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        if lowered in (b"connection", b"keep-alive"):
            continue
        kept.append(line)
    kept.append(b"Connection: close")
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        body += chunk
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


@contextlib.asynccontextmanager
async def open_fault_proxy(upstream_url: str) -> AsyncIterator[FaultProxy]:
    """A :class:`FaultProxy` in front of ``upstream_url`` (``http://host:port``) on a free
    loopback port, for the duration of the block."""
    parts = urlsplit(upstream_url)
    assert parts.hostname is not None
    assert parts.port is not None
    proxy = FaultProxy(parts.hostname, parts.port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, proxy._serve, 0, host="127.0.0.1")
        )
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            proxy.stop_faults()
            nursery.cancel_scope.cancel()
