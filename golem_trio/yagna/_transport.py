"""HTTP/1.1 to the daemon over plain TCP: h11 on trio streams, with a connection pool whose
cost per request does not grow with the connections it holds.

httpx's own transport scans every connection of its pool, and every request queued in it,
each time a request starts or a reply is released. A cluster of hundreds of instances keeps
hundreds of long polls open at once, so that bookkeeping grew to a fifth of the requestor's
CPU (quadratic in the cluster's size). This pool is a stack of idle connections per origin:
a request takes the most recently used one (checked: not idle past ``keepalive_expiry``, not
closed by the daemon meanwhile) or opens a new one; a reply read to its end gives its
connection back; anything else (an error, a cancellation, a reply cut short, a daemon that
asked to close) closes it.

Only plain HTTP: the daemon's API is ``http://`` (``HttpLayer`` keeps httpx's transport for
``https://``, and for event streams and websockets). Failures surface as httpx's exceptions,
as httpx's transport raises them, so the layer above treats both transports alike:
``ConnectError``/``ConnectTimeout`` (nothing was sent), ``WriteError``/``WriteTimeout``,
``ReadError``/``ReadTimeout``, ``RemoteProtocolError`` (the daemon closed the connection or
broke the protocol).
"""

from __future__ import annotations

import select
import time
from typing import Final

import attrs
import h11
import httpx2
import trio

__all__ = ["BodyTooLarge", "Call", "Http11Transport"]

#: Bytes asked of the socket per read.
_READ_SIZE: Final = 65536
#: Longest reply head (status line and headers) accepted, bytes.
_MAX_HEAD: Final = 64 * 1024

_Origin = tuple[str, int]


class BodyTooLarge(Exception):
    """A reply body over the cap :meth:`Http11Transport.fetch` was given (``size``: what the
    reply announced, or what was read when it passed the cap)."""

    def __init__(self, size: int, *, announced: bool) -> None:
        super().__init__(size)
        self.size = size
        self.announced = announced


@attrs.frozen
class Call:
    """One request as :meth:`Http11Transport.fetch` sends it: the ``origin`` (host, port),
    ``target`` (path and query, encoded), every header (``Host`` included) and the body, with
    the timeouts (s) of connecting, writing the request and each read of the reply."""

    method: bytes
    origin: tuple[str, int]
    target: bytes
    headers: list[tuple[bytes, bytes]]
    content: bytes
    connect: float
    write: float
    read: float


class _Connection:
    """One TCP connection and its HTTP/1.1 state."""

    __slots__ = ("h11", "idle_since", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0

    def close(self) -> None:
        """Close at once (no checkpoint): a connection in doubt is never reused."""
        self.stream.socket.close()

    def closed_by_peer(self) -> bool:
        """Whether the daemon closed (or wrote on) this idle connection: readable means either,
        and either makes it unusable."""
        fileno = self.stream.socket.fileno()
        if fileno < 0:
            return True
        readable, _, _ = select.select([fileno], [], [], 0)
        return bool(readable)

    async def send(self, data: bytes, write_timeout: float) -> None:
        scope = trio.CancelScope(deadline=trio.current_time() + write_timeout)
        try:
            with scope:
                await self.stream.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpx2.WriteError(f"sending the request failed: {exc}") from exc
        if scope.cancelled_caught:
            raise httpx2.WriteTimeout("the request could not be sent in time")

    def buffered_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next event from what has arrived (``h11.NEED_DATA`` if more must come)."""
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx2.RemoteProtocolError(str(exc)) from exc

    async def next_event(self, read_timeout: float) -> h11.Event | type[h11.PAUSED]:
        """The next event, reading until it is in (each read within ``read_timeout``).
        Always reads once: call it when :meth:`buffered_event` said ``NEED_DATA``."""
        while True:
            data = b""
            scope = trio.CancelScope(deadline=trio.current_time() + read_timeout)
            try:
                with scope:
                    data = await self.stream.receive_some(_READ_SIZE)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise httpx2.ReadError(f"reading the reply failed: {exc}") from exc
            if scope.cancelled_caught:
                raise httpx2.ReadTimeout("no answer in time")
            if not data and self.h11.their_state is h11.SEND_RESPONSE:
                raise httpx2.RemoteProtocolError("the daemon closed the connection without a reply")
            try:
                self.h11.receive_data(data)
            except RuntimeError as exc:  # data after the end of the stream
                raise httpx2.RemoteProtocolError(str(exc)) from exc
            event = self.buffered_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]

    async def event(self, read_timeout: float) -> h11.Event | type[h11.PAUSED]:
        """The next event; a checkpoint whether or not it had arrived already."""
        event = self.buffered_event()
        if event is h11.NEED_DATA:
            return await self.next_event(read_timeout)
        await trio.lowlevel.checkpoint()
        return event  # type: ignore[return-value]


class Http11Transport:
    """The connection pool and HTTP/1.1 exchange of the client's calls to a plain-HTTP daemon
    (see the module's notes); :meth:`fetch` sends one :class:`Call`.

    ``max_idle``: idle connections kept per origin (more are closed as they come back);
    ``keepalive_expiry``: seconds an idle connection stays usable (below the daemon's own
    keep-alive timeout, so a connection is not reused just as the daemon closes it).
    """

    def __init__(self, *, max_idle: int, keepalive_expiry: float = 4.0) -> None:
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    async def fetch(self, call: Call, cap: int) -> tuple[int, bytes]:
        """Send ``call`` and read its whole reply: its status and body. Raises
        :class:`BodyTooLarge` for a body over ``cap`` bytes, announced or read, and httpx's
        transport errors (see the module's notes)."""
        connection = await self._open(call.origin, call.connect)
        try:
            head = h11.Request(method=call.method, target=call.target, headers=call.headers)
            reply = await self._exchange(connection, head, call.content, call.write, call.read)
            for name, value in reply.headers:
                if name == b"content-length" and int(value) > cap:
                    raise BodyTooLarge(int(value), announced=True)
            chunks: list[bytes] = []
            size = 0
            while True:
                event = await connection.event(call.read)
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > cap:
                        raise BodyTooLarge(size, announced=False)
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # pragma: no cover - h11 yields only Data then EndOfMessage here
                    raise httpx2.RemoteProtocolError(f"unexpected {type(event).__name__}")
        except BaseException:
            connection.close()
            raise
        self._release(call.origin, connection)
        return reply.status_code, b"".join(chunks)

    async def _open(self, origin: _Origin, connect_timeout: float) -> _Connection:
        """An idle connection to ``origin``, or a new one (a checkpoint either way)."""
        if self._closed:
            raise httpx2.ConnectError("the transport is closed")
        connection = self._take(origin)
        if connection is None:
            return await self._connect(origin, connect_timeout)
        await trio.lowlevel.checkpoint()
        return connection

    async def _exchange(
        self,
        connection: _Connection,
        head: h11.Request,
        content: bytes,
        write_timeout: float,
        read_timeout: float,
    ) -> h11.Response:
        state = connection.h11
        # The whole request in one write: head, body and end of message.
        data = state.send(head) or b""
        if content:
            data += state.send(h11.Data(data=content)) or b""
        data += state.send(h11.EndOfMessage()) or b""
        await connection.send(data, write_timeout)
        while True:
            event = await connection.event(read_timeout)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):  # pragma: no cover
                raise httpx2.RemoteProtocolError(f"unexpected {type(event).__name__}")

    def _take(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since <= self._expiry and not connection.closed_by_peer():
                return connection
            connection.close()
        return None

    async def _connect(self, origin: _Origin, connect_timeout: float) -> _Connection:
        host, port = origin
        try:
            with trio.fail_after(connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
        except trio.TooSlowError as exc:
            raise httpx2.ConnectTimeout(f"no connection to {host}:{port} in time") from exc
        except OSError as exc:
            raise httpx2.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return _Connection(stream)

    def _release(self, origin: _Origin, connection: _Connection) -> None:
        state = connection.h11
        if self._closed or state.our_state is not h11.DONE or state.their_state is not h11.DONE:
            connection.close()
            return
        state.start_next_cycle()
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self._max_idle:
            # The oldest goes: the newest is the likeliest to be reused before it expires.
            idle.pop(0).close()
        connection.idle_since = time.monotonic()
        idle.append(connection)

    @property
    def idle_connections(self) -> int:
        """Idle connections held (all origins)."""
        return sum(len(idle) for idle in self._idle.values())

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        await trio.lowlevel.checkpoint()
