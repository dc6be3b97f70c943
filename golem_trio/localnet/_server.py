"""LocalNet's HTTP server: the emulated daemon's ASGI app served over HTTP/1.1 on trio, with
h11 framing and wsproto websockets.

A served LocalNet answers every request of every requestor it hosts, so its cost per request
bounds how large a network one machine can emulate. Hypercorn's trio worker spent more CPU per
request than the emulated daemon itself (its protocol layers, a task and channels per request);
this server does what LocalNet needs and nothing else:

* HTTP/1.1 with keep-alive and pipelining, one task per connection; the request body is read
  whole before the app runs (at most :data:`MAX_BODY` bytes: 413 beyond), the reply is sent as
  the app gives it (``Content-Length`` when the app sets one, chunked otherwise, which event
  streams need);
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
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import unquote

import h11
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


def _is_upgrade(request: h11.Request) -> bool:
    """Whether ``request`` asks for a websocket."""
    for name, value in request.headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return True
    return False


class _Disconnected(OSError):
    """The client is gone (a ``send()`` to it raises this ``OSError``)."""


def _only_disconnects(exc: BaseException) -> bool:
    """Whether ``exc`` says only that the client left (alone or grouped)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_disconnects(inner) for inner in exc.exceptions)
    return isinstance(exc, _Disconnected | ClientDisconnect)


class _Connection:
    def __init__(self, app: AsgiApp, stream: trio.SocketStream) -> None:
        self.app = app
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        sock = stream.socket
        self.server = _address(sock.getsockname())
        self.client = _address(sock.getpeername())

    async def _receive(self, wait: float) -> bool:
        """Read once into h11 (within ``wait`` s; a client gone reads as the end of its
        stream); ``False`` when nothing came in time."""
        with trio.move_on_after(wait):
            self.h11.receive_data(await self._read())
            return True
        return False

    async def _next_event(self, wait: float) -> Any:
        """The next h11 event; ``None`` when the client said nothing for ``wait`` s. A
        checkpoint either way."""
        event = self.h11.next_event()
        if event is not h11.NEED_DATA:
            await trio.lowlevel.checkpoint()
            return event
        while True:
            if not await self._receive(wait):
                return None
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event

    async def run(self) -> None:
        while True:
            try:
                request = await self._next_event(IDLE_TIMEOUT)
                if not isinstance(request, h11.Request):
                    return  # idle too long, closed, or nothing an HTTP client sends
                if _is_upgrade(request):
                    await _WebSocket(self, request).run()
                    return
                body = await self._body()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, str(exc))
                return
            if body is None:
                await self._refuse(413, f"request body over {MAX_BODY} bytes")
                return
            await self._respond(request, body)
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()

    async def _body(self) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        with trio.fail_after(REQUEST_TIMEOUT):
            while True:
                event = await self._next_event(math.inf)
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_BODY:
                        return None
                    parts.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(parts)
                else:
                    raise h11.RemoteProtocolError("the request ended early", 400)

    async def _send(self, event: h11.Event) -> None:
        """Send ``event`` (a checkpoint even when it makes no bytes)."""
        await self._write(self.h11.send(event) or b"")

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
            self.h11.receive_data(data)
            data = await self._read()

    async def _read(self) -> bytes:
        """The client's next bytes (``b""``: it is gone)."""
        try:
            return await self.stream.receive_some(_READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.lowlevel.checkpoint()
            return b""

    async def _send_with(self, head: bytes, event: h11.Event) -> None:
        """Send ``head`` (bytes h11 made already) and ``event`` in one write."""
        await self._write(head + (self.h11.send(event) or b""))

    async def _refuse(self, status: int, why: str) -> None:
        logger.info("refused a request from %s:%s: %s", *self.client, why)
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            await trio.lowlevel.checkpoint()
            return
        body = why.encode()
        headers = [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        try:
            await self._send(h11.Response(status_code=status, headers=headers))
            await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())
        except (h11.LocalProtocolError, _Disconnected):
            await trio.lowlevel.checkpoint()

    def _scope(self, request: h11.Request, kind: str) -> Scope:
        target = bytes(request.target)
        raw_path, _, query = target.partition(b"?")
        scope: Scope = {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "http" if kind == "http" else "ws",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(name, value) for name, value in request.headers],
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

    async def _respond(self, request: h11.Request, body: bytes) -> None:
        reply = _Reply(self)
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
                self.h11.send_failed()
                return
            logger.exception("LocalNet's app failed on %s %s", request.method, request.target)
            if not reply.started:
                await self._refuse(500, "Internal Server Error")
                return
            await trio.lowlevel.checkpoint()
        if not reply.finished.is_set():
            # The app ended without finishing its reply: the connection cannot go on.
            self.h11.send_failed()


class _Reply:
    """The ASGI ``send`` of one HTTP request."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.started = False
        self.finished = trio.Event()
        #: The head of a reply of known length, held to go out with its body in one write.
        self.head = b""

    async def send(self, message: AsgiMessage) -> None:
        kind = message["type"]
        connection = self.connection
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("the reply was already started")
            self.started = True
            headers = list(message.get("headers", ()))
            head = connection.h11.send(h11.Response(status_code=message["status"], headers=headers))
            if any(name.lower() == b"content-length" for name, _ in headers):
                # Its body follows at once: one write for both.
                self.head = head or b""
                await trio.lowlevel.checkpoint()
            else:
                # A stream may be slow to send its first part: its head goes now.
                await connection._write(head or b"")
        elif kind == "http.response.body":
            if not self.started or self.finished.is_set():
                raise RuntimeError("a reply body outside a reply")
            data = message.get("body", b"")
            head, self.head = self.head, b""
            part = (connection.h11.send(h11.Data(data=data)) or b"") if data else b""
            if message.get("more_body", False):
                await connection._write(head + part)
            else:
                # The last part and the end of the message in one write.
                await connection._send_with(head + part, h11.EndOfMessage())
                self.finished.set()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on an HTTP request")


class _WebSocket:
    """One websocket: the upgrade request, then frames both ways (wsproto)."""

    def __init__(self, connection: _Connection, request: h11.Request) -> None:
        self.connection = connection
        self.request = request
        self.ws: WsConnection | None = None
        #: The HTTP reply refusing the upgrade, when the app sends one.
        self.denial = _Reply(connection)
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
            headers = [(name, value) for name, value in self.request.headers]
            handshake.initiate_upgrade_connection(headers, bytes(self.request.target))
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
            trailing, _closed = connection.h11.trailing_data
            self.nursery.start_soon(self._pump, ws, bytes(trailing))
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
