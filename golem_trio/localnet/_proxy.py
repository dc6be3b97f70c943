"""A fault-injecting HTTP proxy in front of a daemon's REST API: raw trio sockets on loopback.

``async with open_fault_proxy(upstream_url) as proxy:`` listens on a loopback port
(``proxy.url``) and forwards every request to ``upstream_url``, one upstream connection per
request (``Connection: close`` both ways; replies, event streams included, are passed on as
they come). Requests are answered by a fault instead in two ways:

* a **window** (:meth:`FaultProxy.window`, :meth:`FaultProxy.start_faults`): every request
  whose path matches the window's ``routes`` (regular expressions; all paths by default) gets
  the window's kinds in turn, each one of :data:`PROXY_FAULT_KINDS`:

  - ``"503"``: ``503`` with an HTML error page, as a proxy in front of a restarting daemon
    sends;
  - ``"html"``: ``200`` with an HTML page (a login or captive page): not the daemon's JSON;
  - ``"malformed"``: ``200 application/json`` with a body that is not JSON;
  - ``"408"``: ``408`` with a JSON message;
  - ``"refuse"``: the connection is closed at once, with no answer;
  - ``"stall"``: nothing is answered until the window ends, then the connection is closed;

* **daemon faults** (:attr:`FaultProxy.daemon`, LocalNet's
  :class:`~golem_trio.localnet.emulator.DaemonFault` entries): as the emulator applies them,
  by operationId (``*`` for any), each request drawing under the proxy's seed whether the
  entry applies: ``daemon-5xx`` answers the entry's status with the daemon's JSON error,
  ``daemon-408`` a 408, ``daemon-latency`` and ``daemon-stall`` hold the request ``value``
  seconds (a stall without a value: until the entry is gone) before forwarding it.

Faults are counted per kind (:attr:`FaultProxy.injected`), forwarded requests in
:attr:`FaultProxy.forwarded`. It works under the real clock only (sockets).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from urllib.parse import urlsplit

import attrs
import trio

from .emulator import DaemonFault, FaultKind, operation_of

__all__ = ["PROXY_FAULT_KINDS", "FaultProxy", "open_fault_proxy"]

PROXY_FAULT_KINDS = ("503", "html", "malformed", "408", "refuse", "stall")

_HTML = (
    b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center>"
    b"<hr><center>nginx</center></body></html>"
)
#: The longest request head (and body) the proxy reads.
_MAX_REQUEST = 64 << 20


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
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def _daemon_error(status: int) -> bytes:
    reason = _REASONS.get(status, "Server Error")
    body = json.dumps({"message": reason}).encode()
    return _reply(f"{status} {reason}", "application/json", body)


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
    #: Seeds the draws of :attr:`daemon` entries with a rate below 1.
    seed: int = 0
    #: The nursery its connections are served in, while it runs.
    nursery: trio.Nursery | None = None
    _window: _Window | None = None
    _daemon: tuple[DaemonFault, ...] = ()
    #: Set (and replaced) whenever :attr:`daemon` changes: held requests wake on it.
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}/proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faulting(self) -> bool:
        return self._window is not None

    @property
    def daemon(self) -> tuple[DaemonFault, ...]:
        """The daemon faults applied now (LocalNet's entries, by operationId)."""
        return self._daemon

    @daemon.setter
    def daemon(self, entries: Iterable[DaemonFault]) -> None:
        self._daemon = tuple(entries)
        self._changed.set()
        self._changed = trio.Event()

    def start_faults(self, kinds: Iterable[str] = ("503",), routes: Iterable[str] = ()) -> None:
        """Answer matching requests with ``kinds`` (in turn) from now until
        :meth:`stop_faults`."""
        kinds = tuple(kinds)
        unknown = set(kinds) - set(PROXY_FAULT_KINDS)
        if not kinds or unknown:
            raise ValueError(f"fault kinds must be among {PROXY_FAULT_KINDS}, got {kinds}")
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
        await trio.lowlevel.checkpoint()
        self.start_faults(kinds, routes)
        try:
            yield
            await trio.sleep_until(trio.current_time() + seconds)
        finally:
            self.stop_faults()

    def _daemon_action(self, method: str, path: str) -> DaemonFault | None:
        if not self._daemon:
            return None
        operation = operation_of(method, path)
        for entry in self._daemon:
            if entry.operation != "*" and entry.operation != operation:
                continue
            if entry.rate >= 1.0 or self._rng.random() < entry.rate:
                return entry
        return None

    async def _serve(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                request = await _read_request(client)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
                return
            if request is None:
                return
            method, target = request.split(b" ", 2)[:2]
            path = urlsplit(target.decode("latin-1", "replace")).path
            window = self._window
            if window is not None and window.matches(path):
                kind = window.next_kind()
                self.injected[kind] += 1
                window.hit.set()
                await self._fault(client, kind, window)
                return
            entry = self._daemon_action(method.decode("latin-1"), path)
            if entry is not None:
                self.injected[entry.kind.value] += 1
                if not await self._apply(client, entry):
                    return
            self.forwarded += 1
            await self._forward(client, request)

    async def _apply(self, client: trio.SocketStream, entry: DaemonFault) -> bool:
        """Apply a daemon fault: whether the request is to be forwarded after it."""
        await trio.lowlevel.checkpoint()
        if entry.kind in (FaultKind.DAEMON_LATENCY, FaultKind.DAEMON_STALL):
            if entry.value is not None:
                await trio.sleep(entry.value)
                return True
            # A stall with no end: held while the entry is in force.
            while entry in self._daemon:
                await self._changed.wait()
            return True
        status = 408 if entry.kind is FaultKind.DAEMON_408 else int(entry.value or 500)
        reply = _CANNED["408"] if status == 408 else _daemon_error(status)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await client.send_all(reply)
        return False

    async def _fault(self, client: trio.SocketStream, kind: str, window: _Window) -> None:
        await trio.lowlevel.checkpoint()
        if kind == "refuse":
            return
        if kind == "stall":
            await window.over.wait()
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await client.send_all(_CANNED[kind])

    async def _forward(self, client: trio.SocketStream, request: bytes) -> None:
        await trio.lowlevel.checkpoint()
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
    await trio.lowlevel.checkpoint()
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
    if len(lines[0].split(b" ")) != 3:
        raise ValueError("not an HTTP request line")
    kept = [lines[0]]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
            if not 0 <= length <= _MAX_REQUEST:
                raise ValueError("request body too large")
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
async def open_fault_proxy(upstream_url: str, *, seed: int = 0) -> AsyncIterator[FaultProxy]:
    """A :class:`FaultProxy` in front of ``upstream_url`` (``http://host:port``) on a free
    loopback port, for the duration of the block; ``seed`` seeds the draws of daemon faults
    with a rate below 1."""
    parts = urlsplit(upstream_url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"the proxy forwards to http://host:port, got {upstream_url!r}")
    proxy = FaultProxy(parts.hostname, parts.port, seed=seed)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, proxy._serve, 0, host="127.0.0.1")
        )
        proxy.port = listeners[0].socket.getsockname()[1]
        proxy.nursery = nursery
        try:
            yield proxy
        finally:
            proxy.stop_faults()
            proxy.daemon = ()
            proxy.nursery = None
            nursery.cancel_scope.cancel()
