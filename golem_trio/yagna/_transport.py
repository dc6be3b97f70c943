"""HTTP/1.1 to the daemon over plain TCP: lean framing on trio streams, with a connection pool
whose cost per request does not grow with the connections it holds.

httpx's own transport scans every connection of its pool, and every request queued in it,
each time a request starts or a reply is released. A cluster of hundreds of instances keeps
hundreds of long polls open at once, so that bookkeeping grew to a fifth of the requestor's
CPU (quadratic in the cluster's size). This pool is a stack of idle connections per origin:
a request takes the most recently used one (checked: not idle past ``keepalive_expiry``, not
closed by the daemon meanwhile) or opens a new one; a reply read to its end gives its
connection back; anything else (an error, a cancellation, a reply cut short, a daemon that
asked to close) closes it.

The framing is the client's own (:func:`_request_bytes`, :func:`_parse_head` and the body
readers of :meth:`Http11Transport._reply`): requests with ``Content-Length`` bodies; replies
with a body by ``Content-Length``, in chunks (extensions and trailers skipped) or up to the end
of the connection, informational (1xx) replies skipped. That is all a daemon's replies need,
and it costs a fraction of h11's general state machine per call.

Only plain HTTP: the daemon's API is ``http://`` (``HttpLayer`` keeps httpx's transport for
``https://``, and for event streams and websockets). Failures surface as httpx's exceptions,
as httpx's transport raises them, so the layer above treats both transports alike:
``ConnectError``/``ConnectTimeout`` (nothing was sent), ``WriteError``/``WriteTimeout``,
``ReadError``/``ReadTimeout``, ``RemoteProtocolError`` (the daemon closed the connection or
broke the protocol).
"""

from __future__ import annotations

import math
import re
import select
import time
from typing import Final

import attrs
import httpx2
import trio

__all__ = ["BodyTooLarge", "Call", "DeadlinePassed", "Http11Transport"]

#: Bytes asked of the socket per read.
_READ_SIZE: Final = 65536
#: Longest reply head (status line and headers) accepted, bytes.
_MAX_HEAD: Final = 64 * 1024
#: Longest chunk-size or trailer line accepted, bytes; most trailer lines accepted.
_MAX_LINE: Final = 4096
_MAX_TRAILERS: Final = 100
#: What no header value may hold: it would end the line early.
_BREAKS: Final = re.compile(rb"[\r\n\0]")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: A header name (RFC 9110's token), sent or received.
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_Origin = tuple[str, int]


class BodyTooLarge(Exception):
    """A reply body over the cap :meth:`Http11Transport.fetch` was given (``size``: what the
    reply announced, or what was read when it passed the cap)."""

    def __init__(self, size: int, *, announced: bool) -> None:
        super().__init__(size)
        self.size = size
        self.announced = announced


class DeadlinePassed(Exception):
    """The exchange did not end within the overall deadline :meth:`Http11Transport.fetch`
    was given."""


class _Timer:
    """The one cancel scope of an exchange: its deadline is the current phase's (writing the
    request, the next read of the reply) or the exchange's overall end, whichever comes first
    (a new connection's own connect timeout is inside it). One scope whose deadline moves
    costs less than a scope per phase (trio keeps every deadline a scope ever had in a heap
    until it prunes it)."""

    __slots__ = ("end", "phase", "read", "scope", "write")

    def __init__(self, call: Call, end: float) -> None:
        self.end = end
        self.write = call.write
        self.read = call.read
        self.scope = trio.CancelScope(deadline=end)
        self.phase: type[httpx2.TimeoutException] = httpx2.WriteTimeout

    def writing(self) -> None:
        """The request is being written: it has the call's write timeout from now."""
        self._start(httpx2.WriteTimeout, self.write)

    def reading(self) -> None:
        """A read of the reply starts: it has the call's read timeout from now."""
        self._start(httpx2.ReadTimeout, self.read)

    def _start(self, phase: type[httpx2.TimeoutException], seconds: float) -> None:
        self.phase = phase
        self.scope.deadline = min(self.end, trio.current_time() + seconds)

    def passed(self) -> BaseException:
        """What to raise once the scope caught its deadline."""
        if self.scope.deadline >= self.end:
            return DeadlinePassed()
        if self.phase is httpx2.WriteTimeout:
            return httpx2.WriteTimeout("the request could not be sent in time")
        return httpx2.ReadTimeout("no answer in time")


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
    """One TCP connection and what has arrived on it but was not read yet."""

    __slots__ = ("buffer", "idle_since", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
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

    async def send(self, data: bytes, timer: _Timer) -> None:
        """Send ``data`` within the call's write timeout (the caller's ``timer`` scope bounds
        it)."""
        timer.writing()
        try:
            await self.stream.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpx2.WriteError(f"sending the request failed: {exc}") from exc

    async def fill(self, timer: _Timer) -> bool:
        """Read once (within the call's read timeout from now, the caller's ``timer`` scope bounding
        it) into the buffer; ``False`` at the end of the stream."""
        timer.reading()
        try:
            data = await self.stream.receive_some(_READ_SIZE)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpx2.ReadError(f"reading the reply failed: {exc}") from exc
        self.buffer += data
        return bool(data)

    def take_line(self, limit: int) -> bytes | None:
        """The next line (without its CRLF) if it is in, at most ``limit`` bytes long."""
        end = self.buffer.find(b"\r\n", 0, limit + 2)
        if end < 0:
            if len(self.buffer) > limit + 1:
                raise httpx2.RemoteProtocolError("a line of the reply is too long")
            return None
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def take(self, size: int) -> bytes | None:
        """The next ``size`` bytes if they are in."""
        if len(self.buffer) < size:
            return None
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def take_head(self) -> _Head | None:
        """The reply head if it is in (see :func:`_parse_head`)."""
        end = self.buffer.find(b"\r\n\r\n", 0, _MAX_HEAD + 4)
        if end < 0:
            if len(self.buffer) > _MAX_HEAD + 3:
                raise httpx2.RemoteProtocolError("the reply head is too long")
            return None
        head = _parse_head(bytes(self.buffer[:end]))
        del self.buffer[: end + 4]
        return head

    async def more(self, timer: _Timer) -> None:
        """Read once more; the daemon closing the connection here breaks the reply."""
        if not await self.fill(timer):
            raise httpx2.RemoteProtocolError("the daemon closed the connection mid-reply")


@attrs.frozen
class _Head:
    """A reply's status line and the headers that frame its body."""

    status: int
    #: ``Content-Length`` (``None``: none given).
    length: int | None
    chunked: bool
    #: Whether the connection may carry another request after this reply.
    keep_alive: bool


def _request_bytes(call: Call) -> bytes:
    """The request as sent: request line, headers, blank line and body, in one piece."""
    parts = [call.method, b" ", call.target, b" HTTP/1.1\r\n"]
    for name, value in call.headers:
        if not _TOKEN.fullmatch(name) or _BREAKS.search(value):
            raise ValueError(f"header {name!r} cannot be sent as it is")
        parts += (name, b": ", value, b"\r\n")
    parts += (b"\r\n", call.content)
    return b"".join(parts)


def _parse_head(head: bytes) -> _Head:
    """A reply head (status line and headers, without the blank line); raises httpx's
    ``RemoteProtocolError`` for anything that is not an HTTP/1.x reply head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or not (len(code) == 3 and code.isdigit())
        or rest[3:4] not in (b"", b" ")
    ):
        raise httpx2.RemoteProtocolError(f"not an HTTP/1.1 reply: {lines[0][:80]!r}")
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise httpx2.RemoteProtocolError(f"a malformed header line: {line[:80]!r}")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            values = {v.strip() for v in value.split(b",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise httpx2.RemoteProtocolError(f"a bad Content-Length: {value[:40]!r}")
            given = int(next(iter(values)))
            if length is not None and given != length:
                raise httpx2.RemoteProtocolError("two different Content-Length headers")
            length = given
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked" or chunked:
                raise httpx2.RemoteProtocolError(f"unsupported Transfer-Encoding: {value[:40]!r}")
            chunked = True
        elif name == b"connection" and b"close" in (
            token.strip().lower() for token in value.split(b",")
        ):
            keep_alive = False
    if chunked:
        length = None
    return _Head(int(code), length, chunked, keep_alive)


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

    async def fetch(self, call: Call, cap: int, deadline: float = math.inf) -> tuple[int, bytes]:
        """Send ``call`` and read its whole reply: its status and body, all within
        ``deadline`` seconds (opening a connection included). Raises
        :class:`DeadlinePassed` past that, :class:`BodyTooLarge` for a body over ``cap``
        bytes, announced or read, and httpx's transport errors (see the module's notes)."""
        request = _request_bytes(call)
        timer = _Timer(call, trio.current_time() + deadline)
        with timer.scope:
            connection = await self._open(call.origin, call.connect)
            try:
                await connection.send(request, timer)
                status, body, reusable = await self._reply(connection, timer, call, cap)
            except BaseException:
                connection.close()
                raise
        if timer.scope.cancelled_caught:
            raise timer.passed()
        if reusable and not connection.buffer:
            self._release(call.origin, connection)
        else:
            connection.close()
        return status, body

    async def _reply(
        self, connection: _Connection, timer: _Timer, call: Call, cap: int
    ) -> tuple[int, bytes, bool]:
        """The reply's status and body, and whether the connection may carry another call."""
        await trio.lowlevel.checkpoint()
        head: _Head | None = None
        while head is None:
            head = connection.take_head()
            if head is None:
                if not await connection.fill(timer):
                    if connection.buffer:
                        raise httpx2.RemoteProtocolError(
                            "the daemon closed the connection mid-reply"
                        )
                    raise httpx2.RemoteProtocolError(
                        "the daemon closed the connection without a reply"
                    )
            elif head.status == 101:
                raise httpx2.RemoteProtocolError("the daemon switched protocols")
            elif 100 <= head.status < 200:
                head = None  # informational: the reply follows
        if call.method == b"HEAD" or head.status in (204, 304):
            return head.status, b"", head.keep_alive
        if head.chunked:
            return head.status, await self._chunks(connection, timer, cap), head.keep_alive
        if head.length is not None:
            if head.length > cap:
                raise BodyTooLarge(head.length, announced=True)
            while (body := connection.take(head.length)) is None:
                await connection.more(timer)
            return head.status, body, head.keep_alive
        # Neither: the body ends with the connection.
        while await connection.fill(timer):
            if len(connection.buffer) > cap:
                raise BodyTooLarge(len(connection.buffer), announced=False)
        body = bytes(connection.buffer)
        connection.buffer.clear()
        return head.status, body, False

    async def _chunks(self, connection: _Connection, timer: _Timer, cap: int) -> bytes:
        """A chunked body, trailers skipped."""
        await trio.lowlevel.checkpoint()
        chunks: list[bytes] = []
        size = 0
        ended = False
        while not ended:
            while (line := connection.take_line(_MAX_LINE)) is None:
                await connection.more(timer)
            token = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(token):
                raise httpx2.RemoteProtocolError(f"a bad chunk size: {line[:40]!r}")
            chunk = int(token, 16)
            if chunk == 0:
                ended = True
                continue
            size += chunk
            if size > cap:
                raise BodyTooLarge(size, announced=False)
            while (data := connection.take(chunk + 2)) is None:
                await connection.more(timer)
            if data[-2:] != b"\r\n":
                raise httpx2.RemoteProtocolError("a chunk does not end where it said")
            chunks.append(data[:-2])
        # Trailers, if any, up to the blank line.
        for _ in range(_MAX_TRAILERS + 1):
            while (line := connection.take_line(_MAX_LINE)) is None:
                await connection.more(timer)
            if not line:
                return b"".join(chunks)
        raise httpx2.RemoteProtocolError("too many trailers")

    async def _open(self, origin: _Origin, connect_timeout: float) -> _Connection:
        """An idle connection to ``origin``, or a new one (a checkpoint either way)."""
        if self._closed:
            raise httpx2.ConnectError("the transport is closed")
        connection = self._take(origin)
        if connection is None:
            return await self._connect(origin, connect_timeout)
        try:
            await trio.lowlevel.checkpoint()
        except BaseException:
            connection.close()
            raise
        return connection

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
        if self._closed:
            connection.close()
            return
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
