"""A TCP connection into a VPN, as a trio :class:`~trio.abc.Stream`.

The daemon carries a TCP connection to ``ip:port`` inside a VPN over a websocket
(``/net-api/v1/net/{id}/tcp/{ip}/{port}``): every binary message is a piece of the byte
stream. :class:`VpnStream` speaks RFC 6455 itself (``wsproto`` for the framing) over one
:func:`trio.open_tcp_stream`, so it needs no background task: it is an ordinary trio stream
that any task may close, which the proxies rely on (``docs/networks.md``).

Buffers are bounded: a receive reads from the socket only when nothing is buffered, so at most
one socket read (:data:`READ_CHUNK`) waits in memory; a send is framed in messages of at most
:data:`MESSAGE_CHUNK` bytes.
"""

from __future__ import annotations

import urllib.parse

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ._errors import VpnConnectionError

__all__ = ["MESSAGE_CHUNK", "READ_CHUNK", "VpnStream", "open_vpn_stream"]

#: Most bytes read from the socket at once.
READ_CHUNK = 65536
#: Most bytes sent in one websocket message (as the daemon's own clients write them).
MESSAGE_CHUNK = 65536
#: Most bytes of a refused upgrade's reply that are read (for the error message).
REFUSAL_LIMIT = 4096
#: Seconds the closing handshake may take before the socket is closed regardless.
CLOSE_GRACE = 2.0


def _redacted(url: str) -> str:
    """The URL without its query (which may carry a key)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def open_vpn_stream(url: str, app_key: str, *, connect_timeout: float = 10.0) -> VpnStream:
    """Connect to the daemon's TCP websocket at ``url`` (``ws://`` or ``wss://``) with the app
    key as ``Authorization: Bearer`` and return the stream.

    Raises :class:`VpnConnectionError`: ``status`` is the daemon's answer when it refused the
    upgrade (504: nothing listens there), ``None`` when the daemon could not be reached or
    did not answer within ``connect_timeout`` seconds.

    Cancellation: a checkpoint; if cancelled, no connection is left open.
    """
    parts = urllib.parse.urlsplit(url)
    target = _redacted(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise VpnConnectionError(target, "not a ws:// or wss:// URL")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    socket: trio.abc.Stream | None = None
    try:
        with trio.fail_after(connect_timeout):
            if secure:
                socket = await trio.open_ssl_over_tcp_stream(parts.hostname, port)
            else:
                socket = await trio.open_tcp_stream(parts.hostname, port)
            ws = WSConnection(ConnectionType.CLIENT)
            request = Request(
                host=parts.netloc,
                target=path,
                extra_headers=[(b"authorization", f"Bearer {app_key}".encode())],
            )
            await socket.send_all(ws.send(request))
            leftover, closed = await _handshake(socket, ws, target)
    except trio.TooSlowError:
        if socket is not None:
            await trio.aclose_forcefully(socket)
        raise VpnConnectionError(target, f"no answer within {connect_timeout} s") from None
    except OSError as exc:
        if socket is not None:
            await trio.aclose_forcefully(socket)
        raise VpnConnectionError(target, f"cannot reach the daemon: {exc}") from exc
    except BaseException:
        if socket is not None:
            await trio.aclose_forcefully(socket)
        raise
    stream = VpnStream(socket, ws, leftover)
    stream._eof = closed
    return stream


async def _handshake(
    socket: trio.abc.Stream, ws: WSConnection, target: str
) -> tuple[bytearray, bool]:
    """Read until the upgrade is accepted. Returns the message bytes that came along with the
    reply, and whether the service closed its end already."""
    await trio.lowlevel.checkpoint()
    refused: int | None = None
    accepted = closed = False
    body = bytearray()
    leftover = bytearray()
    while not accepted:
        try:
            data = await socket.receive_some(READ_CHUNK)
        except trio.BrokenResourceError as exc:
            raise VpnConnectionError(target, f"the daemon dropped the connection: {exc}") from exc
        if not data:
            if refused is not None:
                raise VpnConnectionError(target, _refusal(refused, body), refused)
            raise VpnConnectionError(target, "the daemon closed the connection")
        try:
            ws.receive_data(bytes(data))
            events = list(ws.events())
        except RemoteProtocolError as exc:
            raise VpnConnectionError(target, f"bad upgrade reply: {exc}") from exc
        for event in events:
            if isinstance(event, AcceptConnection):
                accepted = True
            elif isinstance(event, RejectConnection):
                refused = event.status_code
                if not event.has_body:
                    raise VpnConnectionError(target, _refusal(refused, body), refused)
            elif isinstance(event, RejectData):
                if len(body) < REFUSAL_LIMIT:
                    body += event.data[: REFUSAL_LIMIT - len(body)]
                if event.body_finished:
                    assert refused is not None
                    raise VpnConnectionError(target, _refusal(refused, body), refused)
            elif isinstance(event, BytesMessage):
                leftover += event.data
            elif isinstance(event, TextMessage):
                leftover += event.data.encode()
            elif isinstance(event, CloseConnection):
                closed = True
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    await socket.send_all(ws.send(event.response()))
    return leftover, closed


def _refusal(status: int, body: bytes | bytearray) -> str:
    text = body.decode("utf-8", "replace").strip()
    hint = " (nothing answers on that address and port)" if status == 504 else ""
    return f"the daemon refused the connection: HTTP {status}{hint}" + (f": {text}" if text else "")


class VpnStream(trio.abc.Stream):
    """A TCP connection into a VPN (see the module docs). Made by :func:`open_vpn_stream`.

    ``receive_some`` returns ``b""`` once the service closed its end (the websocket's close);
    ``send_all`` after that raises :class:`trio.BrokenResourceError`. ``aclose`` sends the
    websocket's close (within :data:`CLOSE_GRACE` seconds) and closes the socket; it is
    idempotent, and cancelled it still closes the socket.
    """

    def __init__(
        self, socket: trio.abc.Stream, ws: WSConnection, pending: bytes | bytearray = b""
    ) -> None:
        self._socket = socket
        self._ws = ws
        self._buffer = bytearray(pending)
        self._write = trio.Lock()
        self._receiving = False
        self._sending = False
        self._eof = False
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def _write_bytes(self, data: bytes) -> None:
        async with self._write:
            await self._socket.send_all(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            if self._ws.state is not ConnectionState.OPEN:
                raise trio.BrokenResourceError("the connection into the VPN was closed")
            view = memoryview(bytes(data))
            if not view:
                return
            for start in range(0, len(view), MESSAGE_CHUNK):
                piece = bytes(view[start : start + MESSAGE_CHUNK])
                await self._write_bytes(self._ws.send(BytesMessage(data=piece)))
        except LocalProtocolError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await self._socket.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._receiving = True
        try:
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            limit = max_bytes or READ_CHUNK
            while not self._buffer and not self._eof:
                await self._fill()
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            chunk = bytes(self._buffer[:limit])
            del self._buffer[:limit]
            return chunk
        finally:
            self._receiving = False

    async def _fill(self) -> None:
        """One socket read, its websocket events handled."""
        data = await self._socket.receive_some(READ_CHUNK)
        if not data:
            self._eof = True
            return
        try:
            self._ws.receive_data(bytes(data))
            events = list(self._ws.events())
        except RemoteProtocolError as exc:
            raise trio.BrokenResourceError(f"bad frame from the daemon: {exc}") from exc
        for event in events:
            if isinstance(event, BytesMessage):
                self._buffer += event.data
            elif isinstance(event, TextMessage):
                self._buffer += event.data.encode()
            elif isinstance(event, Ping):
                await self._write_bytes(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._eof = True
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._write_bytes(self._ws.send(event.response()))

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self._ws.state is ConnectionState.OPEN:
                with trio.move_on_after(CLOSE_GRACE):
                    await self._write_bytes(self._ws.send(CloseConnection(code=1000)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(self._socket)
