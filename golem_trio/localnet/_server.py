"""LocalNet's HTTP server: the emulated daemon's ASGI app served over HTTP/1.1 on trio, with
its own framing and wsproto websockets.

A served LocalNet answers every request of every requestor it hosts, so its cost per request
bounds how large a network one machine can emulate. Hypercorn's trio worker spent more CPU per
request than the emulated daemon itself (its protocol layers, a task and channels per request);
this server does what LocalNet needs and nothing else:

* HTTP/1.1 with keep-alive and pipelining, one task per connection; the request body (by
  ``Content-Length`` or chunked) is read whole before the app runs (at most :data:`MAX_BODY`
  bytes: 413 beyond; ``Expect: 100-continue`` answered), the reply is sent as the app gives it
  (``Content-Length`` when the app sets one, chunked otherwise, which event streams need);
* the framing is the server's own (:func:`_parse_request`, :class:`_Reply`): h11's general
  state machine and header validation were about a quarter of LocalNet's CPU at 1000
  instances. A request that is not HTTP/1.x, or has a malformed request line, header,
  ``Content-Length`` or chunk, or no ``Host`` (HTTP/1.1), is refused with a 4xx or 5xx and
  the connection closed; a request head may take :data:`REQUEST_TIMEOUT` s once it started;
* ASGI 3.0, HTTP spec 2.3: ``receive()`` after the body returns ``http.disconnect`` once the
  client has gone (it reads the connection meanwhile, keeping a pipelined request for later),
  so an event stream waiting for events notices a client that left; a ``send()`` to a client
  that left raises ``OSError``;
* websockets (ASGI websocket spec, with the ``websocket.http.response`` extension so that a
  refused upgrade gets the daemon's plain HTTP error), which the VPN's TCP route needs;
* an idle connection is closed after :data:`IDLE_TIMEOUT` s, longer than clients keep theirs
  (so a client never reuses one the server is closing); an exception of the app before its
  reply started is a 500, after it the connection is closed; both are logged.

Cancellation: cancelling :func:`serve_asgi` closes the listeners and every connection.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote

import trio
from starlette.requests import ClientDisconnect
from wsproto import ConnectionType
from wsproto.connection import Connection as WsConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from wsproto.handshake import H11Handshake

__all__ = ["IDLE_TIMEOUT", "MAX_BODY", "serve_asgi"]

logger = logging.getLogger("golem_trio.localnet.http")

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
AsgiApp = Callable[
    [Scope, Callable[[], Awaitable[AsgiMessage]], Callable[[AsgiMessage], Awaitable[None]]],
    Awaitable[None],
]

#: Largest request body accepted (bytes).
MAX_BODY: Final = 64 * 1024 * 1024
#: Seconds an idle keep-alive connection stays open.
IDLE_TIMEOUT: Final = 75.0
#: Seconds a request's head and body may take to arrive once it started.
REQUEST_TIMEOUT: Final = 60.0
_READ_SIZE: Final = 65536
_MAX_HEAD: Final = 64 * 1024


async def serve_asgi(
    app: AsgiApp,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (``0``: any free port) until cancelled; reports the
    bound URLs (``http://host:port``) to ``task_status``."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    urls = []
    for listener in listeners:
        address, bound = listener.socket.getsockname()[:2]
        shown = f"[{address}]" if ":" in address else address
        urls.append(f"http://{shown}:{bound}")
    handler = functools.partial(_serve_connection, app)
    async with trio.open_nursery() as nursery:
        task_status.started(urls)
        await trio.serve_listeners(handler, listeners, handler_nursery=nursery)


async def _serve_connection(app: AsgiApp, stream: trio.SocketStream) -> None:
    connection = _Connection(app, stream)
    try:
        await connection.run()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the client went away
    except Exception:
        # One connection's failure is never the server's: log it, close it, serve on.
        logger.exception("LocalNet's connection from %s:%s failed", *connection.client)
    finally:
        with trio.move_on_after(1.0, shield=True):
            await stream.aclose()


def _address(sockname: Any) -> tuple[str, int]:
    """A socket's address as ASGI has it: ``(host, port)``."""
    return (str(sockname[0]), int(sockname[1]))


class _BadRequest(Exception):
    """A request the server refuses before the app sees it (``status``, and why)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


#: A method or header name (RFC 9110's token).
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What a request target may not hold (whitespace and control bytes).
_BAD_TARGET: Final = re.compile(rb"[\x00-\x20\x7f]")
#: What a header value may not hold (control bytes but the tab).
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_MAX_LINE: Final = 4096
_REASONS: Final = {status.value: status.phrase.encode() for status in HTTPStatus}
_MAX_TRAILERS: Final = 100


class _Request:
    """A request's head as the server reads it."""

    __slots__ = (
        "chunked",
        "expects_continue",
        "head_only",
        "headers",
        "http11",
        "keep_alive",
        "length",
        "method",
        "target",
        "upgrade",
    )

    def __init__(self, method: bytes, target: bytes, http11: bool) -> None:
        self.method = method
        self.target = target
        self.http11 = http11
        #: (lower-case name, value), in order, as ASGI has them.
        self.headers: list[tuple[bytes, bytes]] = []
        self.length = 0
        self.chunked = False
        self.keep_alive = http11
        self.expects_continue = False
        self.upgrade = False
        self.head_only = method == b"HEAD"


def _parse_request(head: bytes) -> _Request:
    """A request head (request line and headers, without the blank line); raises
    :class:`_BadRequest` for anything an HTTP/1.1 client does not send."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise _BadRequest(400, f"not an HTTP request line: {lines[0][:80]!r}")
    method, target, version = parts
    if _BAD_TARGET.search(target):
        raise _BadRequest(400, "a malformed request target")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if not version.startswith(b"HTTP/"):
            raise _BadRequest(400, f"not an HTTP request line: {lines[0][:80]!r}")
        raise _BadRequest(505, f"unsupported HTTP version {version[:20]!r}")
    request = _Request(method, target, version == b"HTTP/1.1")
    headers = request.headers
    lengths: set[bytes] = set()
    host = False
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # An obsolete line folding: part of the header before.
            if not headers:
                raise _BadRequest(400, "a header line folded onto nothing")
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _BadRequest(400, f"a malformed header line: {line[:80]!r}")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise _BadRequest(400, "a header value with control characters")
        name = name.lower()
        headers.append((name, value))
        if name == b"content-length":
            lengths.update(v.strip(b" \t") for v in value.split(b","))
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked" or request.chunked:
                raise _BadRequest(501, f"unsupported Transfer-Encoding: {value[:40]!r}")
            request.chunked = True
        elif name == b"connection":
            tokens = {t.strip(b" \t").lower() for t in value.split(b",")}
            if b"close" in tokens:
                request.keep_alive = False
            elif b"keep-alive" in tokens and not request.http11:
                request.keep_alive = True
        elif name == b"host":
            host = True
        elif name == b"expect":
            request.expects_continue = value.lower() == b"100-continue"
        elif name == b"upgrade":
            request.upgrade = value.lower() == b"websocket"
    if request.http11 and not host:
        raise _BadRequest(400, "no Host header")
    if lengths:
        if request.chunked:
            raise _BadRequest(400, "both Content-Length and Transfer-Encoding")
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise _BadRequest(400, "a bad Content-Length")
        request.length = int(next(iter(lengths)))
    return request


class _Disconnected(OSError):
    """The client is gone (a ``send()`` to it raises this ``OSError``)."""


def _only_disconnects(exc: BaseException) -> bool:
    """Whether ``exc`` says only that the client left (alone or grouped)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_disconnects(inner) for inner in exc.exceptions)
    return isinstance(exc, _Disconnected | ClientDisconnect)


class _Connection:
    """One client's connection: requests read and framed here, answered by the app in turn."""

    def __init__(self, app: AsgiApp, stream: trio.SocketStream) -> None:
        self.app = app
        self.stream = stream
        #: What the client sent that was not read as a request yet.
        self.buffer = bytearray()
        #: Whether another request may follow the current one on this connection.
        self.reusable = True
        sock = stream.socket
        self.server = _address(sock.getsockname())
        self.client = _address(sock.getpeername())

    async def _fill(self, deadline: float) -> bool | None:
        """Read once into the buffer by ``deadline``: ``None`` when nothing came in time,
        ``False`` when the client is gone."""
        with trio.CancelScope(deadline=deadline):
            data = await self._read()
            self.buffer += data
            return bool(data)
        return None

    def _skip_blank_lines(self) -> bool:
        """Drop blank lines before a request (allowed: RFC 9112, 2.2); whether there were."""
        skipped = False
        while self.buffer[:2] == b"\r\n":
            del self.buffer[:2]
            skipped = True
        return skipped

    async def _next_request(self) -> _Request | None:
        """The next request's head; ``None`` when the client left, or said nothing for
        :data:`IDLE_TIMEOUT` s, or did not finish the head within :data:`REQUEST_TIMEOUT` s.
        A checkpoint either way."""
        self._skip_blank_lines()
        end = self.buffer.find(b"\r\n\r\n")
        if end >= 0:
            await trio.lowlevel.checkpoint()
        else:
            wait = IDLE_TIMEOUT if not self.buffer else REQUEST_TIMEOUT
            deadline = trio.current_time() + wait
            while True:
                if len(self.buffer) > _MAX_HEAD:
                    raise _BadRequest(431, "the request head is too large")
                searched = max(0, len(self.buffer) - 3)
                idle = not self.buffer
                if not await self._fill(deadline):
                    return None
                if idle:
                    deadline = trio.current_time() + REQUEST_TIMEOUT
                if self._skip_blank_lines():
                    searched = 0
                end = self.buffer.find(b"\r\n\r\n", searched)
                if end >= 0:
                    break
        if end > _MAX_HEAD:
            raise _BadRequest(431, "the request head is too large")
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        return _parse_request(head)

    async def run(self) -> None:
        while True:
            try:
                request = await self._next_request()
                if request is None:
                    return  # gone, or idle too long
                if request.upgrade:
                    await _WebSocket(self, request).run()
                    return
                body = self._take_body(request)
                if body is None:
                    body = await self._body(request)
            except _BadRequest as exc:
                await self._refuse(exc.status, exc.why)
                return
            if body is None:
                await self._refuse(413, f"request body over {MAX_BODY} bytes")
                return
            self.reusable = request.keep_alive
            await self._respond(request, body)
            if not self.reusable:
                return

    async def _more(self, deadline: float) -> None:
        """Read once more of a request's body; :class:`_BadRequest` if it cannot come."""
        got = await self._fill(deadline)
        if got is None:
            raise _BadRequest(408, "the request took too long")
        if not got:
            raise _BadRequest(400, "the request ended early")

    def _take_body(self, request: _Request) -> bytes | None:
        """The request's body when it is in the buffer already, by its ``Content-Length``
        (most requests: they come in one piece); ``None`` otherwise."""
        length = request.length
        if (
            request.chunked
            or request.expects_continue
            or length > MAX_BODY
            or len(self.buffer) < length
        ):
            return None
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body

    async def _body(self, request: _Request) -> bytes | None:
        """The request's whole body (``None``: over :data:`MAX_BODY`), read within
        :data:`REQUEST_TIMEOUT` s."""
        await trio.lowlevel.checkpoint()
        if request.length > MAX_BODY:
            return None
        if request.expects_continue and (request.length or request.chunked):
            await self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        deadline = trio.current_time() + REQUEST_TIMEOUT
        if request.chunked:
            return await self._chunks(deadline)
        length = request.length
        while len(self.buffer) < length:
            await self._more(deadline)
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body

    async def _line(self, deadline: float) -> bytes:
        """The body's next line (without its CRLF)."""
        await trio.lowlevel.checkpoint()
        while (end := self.buffer.find(b"\r\n", 0, _MAX_LINE + 2)) < 0:
            if len(self.buffer) > _MAX_LINE + 1:
                raise _BadRequest(400, "a line of the request body is too long")
            await self._more(deadline)
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def _chunks(self, deadline: float) -> bytes | None:
        """A chunked body, extensions and trailers skipped."""
        await trio.lowlevel.checkpoint()
        parts: list[bytes] = []
        size = 0
        while True:
            token = (await self._line(deadline)).split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(token):
                raise _BadRequest(400, "a bad chunk size")
            chunk = int(token, 16)
            if chunk == 0:
                break
            size += chunk
            if size > MAX_BODY:
                return None
            while len(self.buffer) < chunk + 2:
                await self._more(deadline)
            if self.buffer[chunk : chunk + 2] != b"\r\n":
                raise _BadRequest(400, "a chunk does not end where it said")
            parts.append(bytes(self.buffer[:chunk]))
            del self.buffer[: chunk + 2]
        for _ in range(_MAX_TRAILERS + 1):
            if not await self._line(deadline):
                return b"".join(parts)
        raise _BadRequest(400, "too many trailers")

    async def _write(self, data: bytes) -> None:
        """Send ``data`` as it is; :class:`_Disconnected` if the client is gone."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _Disconnected("the client is gone") from exc

    async def _wait_gone(self, reply: _Reply) -> None:
        """Return once the client has gone (or at once if the reply is over). What it sends
        meanwhile (a pipelined request) is kept for after this reply."""
        if reply.finished.is_set():
            await trio.lowlevel.checkpoint()
            return
        data = await self._read()
        while data:
            self.buffer += data
            data = await self._read()

    async def _read(self) -> bytes:
        """The client's next bytes (``b""``: it is gone)."""
        try:
            return await self.stream.receive_some(_READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.lowlevel.checkpoint()
            return b""

    async def _refuse(self, status: int, why: str) -> None:
        """Answer ``status`` (no reply started on this request) and close."""
        logger.info("refused a request from %s:%s: %s", *self.client, why)
        self.reusable = False
        body = why.encode()
        head = _head(
            status,
            [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        )
        try:
            await self._write(head + body)
        except _Disconnected:
            await trio.lowlevel.checkpoint()

    def _scope(self, request: _Request, kind: str) -> Scope:
        raw_path, _, query = request.target.partition(b"?")
        scope: Scope = {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1" if request.http11 else "1.0",
            "scheme": "http" if kind == "http" else "ws",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": self.client,
            "server": self.server,
            "state": {},
        }
        if kind == "http":
            scope["method"] = request.method.decode("ascii")
        else:
            scope["subprotocols"] = []
            scope["extensions"] = {"websocket.http.response": {}}
        return scope

    async def _respond(self, request: _Request, body: bytes) -> None:
        reply = _Reply(self, request)
        delivered = False

        async def receive() -> AsgiMessage:
            nonlocal delivered
            if not delivered:
                delivered = True
                await trio.lowlevel.checkpoint()
                return {"type": "http.request", "body": body, "more_body": False}
            await self._wait_gone(reply)
            return {"type": "http.disconnect"}

        try:
            await self.app(self._scope(request, "http"), receive, reply.send)
        except Exception as exc:
            if _only_disconnects(exc):
                await trio.lowlevel.checkpoint()
                self.reusable = False
                return
            logger.exception("LocalNet's app failed on %s %s", request.method, request.target)
            if not reply.started:
                await self._refuse(500, "Internal Server Error")
                return
            await trio.lowlevel.checkpoint()
        if not reply.finished.is_set():
            # The app ended without finishing its reply: the connection cannot go on.
            self.reusable = False


def _head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A reply's status line and headers, with the blank line."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError(f"header {name!r} cannot be sent as it is")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class _Reply:
    """The ASGI ``send`` of one HTTP request: frames the app's reply (``Content-Length`` when
    the app sets one, chunked otherwise, nothing for a HEAD request or a 1xx, 204 or 304, up
    to the end of the connection for an HTTP/1.0 client)."""

    def __init__(self, connection: _Connection, request: _Request) -> None:
        self.connection = connection
        self.request = request
        self.started = False
        self.finished = trio.Event()
        #: The head of a reply of known length, held to go out with its body in one write.
        self.head = b""
        #: How the body is framed: "length", "chunked", "none" or "close".
        self.framing = "none"
        #: Body bytes still due, for "length".
        self.due = 0

    async def send(self, message: AsgiMessage) -> None:
        kind = message["type"]
        connection = self.connection
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("the reply was already started")
            self.started = True
            status = int(message["status"])
            headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
            lengths = [v for k, v in headers if k == b"content-length"]
            if self.request.head_only or status < 200 or status in (204, 304):
                self.framing = "none"
            elif lengths:
                if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
                    raise RuntimeError(f"the app set a bad Content-Length: {lengths}")
                self.framing = "length"
                self.due = int(lengths[0])
            elif self.request.http11:
                self.framing = "chunked"
                headers = [(k, v) for k, v in headers if k != b"transfer-encoding"]
                headers.append((b"transfer-encoding", b"chunked"))
            else:
                self.framing = "close"
                connection.reusable = False
            if not connection.reusable or any(
                k == b"connection" and b"close" in v.lower() for k, v in headers
            ):
                connection.reusable = False
                headers = [(k, v) for k, v in headers if k != b"connection"]
                headers.append((b"connection", b"close"))
            head = _head(status, headers)
            if self.framing in ("length", "none"):
                # Its body follows at once: one write for both.
                self.head = head
                await trio.lowlevel.checkpoint()
            else:
                # A stream may be slow to send its first part: its head goes now.
                await connection._write(head)
        elif kind == "http.response.body":
            if not self.started or self.finished.is_set():
                raise RuntimeError("a reply body outside a reply")
            data = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            head, self.head = self.head, b""
            if self.framing == "length":
                if len(data) > self.due:
                    raise RuntimeError("more body than the reply's Content-Length")
                self.due -= len(data)
                if not more and self.due:
                    raise RuntimeError("less body than the reply's Content-Length")
                part = data
            elif self.framing == "chunked":
                part = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
                if not more:
                    part += b"0\r\n\r\n"
            elif self.framing == "close":
                part = data
            else:
                part = b""
            if head or part:
                await connection._write(head + part)
            else:
                await trio.lowlevel.checkpoint()
            if not more:
                self.finished.set()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on an HTTP request")


class _WebSocket:
    """One websocket: the upgrade request, then frames both ways (wsproto)."""

    def __init__(self, connection: _Connection, request: _Request) -> None:
        self.connection = connection
        self.request = request
        self.ws: WsConnection | None = None
        #: The HTTP reply refusing the upgrade, when the app sends one (the connection then
        #: closes).
        connection.reusable = False
        self.denial = _Reply(connection, request)
        self.closed = False
        self.inbox_send, self.inbox = trio.open_memory_channel[AsgiMessage](math.inf)
        self.nursery: trio.Nursery | None = None

    async def run(self) -> None:
        connection = self.connection
        await self.inbox_send.send({"type": "websocket.connect"})
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            try:
                await connection.app(
                    connection._scope(self.request, "websocket"), self.inbox.receive, self.send
                )
            except _Disconnected:
                pass
            except Exception:
                logger.exception("LocalNet's app failed on websocket %s", self.request.target)
            nursery.cancel_scope.cancel()
        if self.ws is None and not self.denial.started:
            await connection._refuse(500, "the websocket was neither accepted nor refused")
        elif self.ws is not None and not self.closed:
            await self.connection._write(self.ws.send(CloseConnection(code=1011)))

    async def _pump(self, ws: WsConnection, trailing: bytes) -> None:
        """The client's frames into the app's inbox, until the websocket closes (a client
        gone shows as a disconnect with code 1006)."""
        try:
            await self._frames(ws, trailing)
        except _Disconnected:
            self.closed = True
            await self.inbox_send.send({"type": "websocket.disconnect", "code": 1006})

    async def _frames(self, ws: WsConnection, trailing: bytes) -> None:
        parts: list[bytes | str] = []
        if trailing:
            ws.receive_data(trailing)
        while True:
            for event in ws.events():
                if isinstance(event, BytesMessage | TextMessage):
                    parts.append(
                        bytes(event.data) if isinstance(event, BytesMessage) else event.data
                    )
                    if event.message_finished:
                        whole: dict[str, Any]
                        if isinstance(event, BytesMessage):
                            whole = {"bytes": b"".join(p for p in parts if isinstance(p, bytes))}
                        else:
                            whole = {"text": "".join(p for p in parts if isinstance(p, str))}
                        parts.clear()
                        await self.inbox_send.send({"type": "websocket.receive", **whole})
                elif isinstance(event, Ping):
                    await self.connection._write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if not self.closed:
                        self.closed = True
                        await self.connection._write(ws.send(event.response()))
                    await self.inbox_send.send({"type": "websocket.disconnect", "code": event.code})
                    return
            data = await self.connection._read()
            if not data:
                self.closed = True
                await self.inbox_send.send({"type": "websocket.disconnect", "code": 1006})
                return
            ws.receive_data(data)

    async def send(self, message: AsgiMessage) -> None:
        # (Rare enough to checkpoint first: each branch below then need not.)
        await trio.lowlevel.checkpoint()
        kind = message["type"]
        connection = self.connection
        if kind == "websocket.accept":
            if self.ws is not None or self.denial.started:
                raise RuntimeError("the websocket was already answered")
            handshake = H11Handshake(ConnectionType.SERVER)
            handshake.initiate_upgrade_connection(self.request.headers, self.request.target)
            for _ in handshake.events():
                pass
            extra = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            accept = AcceptConnection(subprotocol=message.get("subprotocol"), extra_headers=extra)
            data = handshake.send(accept)
            ws = handshake.connection
            assert ws is not None
            assert self.nursery is not None
            self.ws = ws
            await self.connection._write(data)
            trailing = bytes(connection.buffer)
            connection.buffer.clear()
            self.nursery.start_soon(self._pump, ws, trailing)
        elif kind == "websocket.send":
            if self.ws is None or self.closed:
                raise _Disconnected("the websocket is not open")
            payload = message.get("bytes")
            if payload is None:
                payload = message.get("text") or ""
            await self.connection._write(self.ws.send(Message(data=payload)))
        elif kind == "websocket.close":
            if self.ws is None:
                if not self.denial.started:
                    self.denial.started = True
                    await connection._refuse(403, "websocket refused")
            elif not self.closed:
                self.closed = True
                code = message.get("code") or 1000
                await self.connection._write(
                    self.ws.send(CloseConnection(code=code, reason=message.get("reason") or ""))
                )
        elif kind in ("websocket.http.response.start", "websocket.http.response.body"):
            if self.ws is not None:
                raise RuntimeError("the websocket was already accepted")
            # The refusal is an HTTP reply on this connection, as any other.
            await self.denial.send({**message, "type": kind.removeprefix("websocket.")})
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on a websocket")
