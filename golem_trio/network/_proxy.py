"""Local proxies into the services of a VPN: :class:`LocalHttpProxy` and :class:`SocketProxy`
(docs/networks.md).

Both listen on a local TCP port (loopback by default) and carry each accepted connection into
the network, to a *running* instance of a cluster, through the daemon's TCP websocket
(:class:`~._stream.VpnStream`). Instances are taken in turn (round robin), among those running
at that moment, so a proxy follows restarts and scaling without being told. A connection that
cannot be opened to one instance is tried on the next running one; when none is running, the
HTTP proxy answers ``503 Service Unavailable``, and ``502 Bad Gateway`` when no instance could
be reached; the socket proxy closes the connection.

Both are async context managers: ``async with LocalHttpProxy(cluster, 8080) as proxy:`` serves
until the block ends, and leaving it closes the listener and every connection under way.
Buffers are bounded: bytes are copied in chunks of at most :data:`CHUNK` bytes, one chunk in
flight per direction; an HTTP request's head may be at most :data:`MAX_HEAD` bytes; at most
``max_connections`` connections are carried at once (others wait to be accepted).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

import trio

from .._errors import ConfigurationError, check_count, check_seconds
from ._errors import NetworkClosed, NetworkError, VpnConnectionError
from ._network import NetworkNode
from ._stream import VpnStream

__all__ = [
    "CHUNK",
    "MAX_HEAD",
    "LocalHttpProxy",
    "ProxyStats",
    "SocketProxy",
    "VpnService",
    "VpnServiceGroup",
]

logger = logging.getLogger("golem_trio.network.proxy")

#: Most bytes copied at once, per direction.
CHUNK = 65536
#: Most bytes of an HTTP request's or response's head (request line and headers).
MAX_HEAD = 65536


class VpnService(Protocol):
    """What a proxy needs of an instance (a :class:`~golem_trio.Service` is one)."""

    @property
    def network_node(self) -> NetworkNode | None: ...

    @property
    def is_running(self) -> bool: ...


class VpnServiceGroup(Protocol):
    """What a proxy needs of a cluster (a :class:`~golem_trio.Cluster` is one)."""

    @property
    def instances(self) -> Sequence[VpnService]: ...


class ProxyStats:
    """What a proxy did: connections accepted, carried to an instance, refused for want of
    a running instance (503), failed to reach one (502)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.carried = 0
        self.unavailable = 0
        self.unreachable = 0

    def __repr__(self) -> str:
        return (
            f"ProxyStats(accepted={self.accepted}, carried={self.carried}, "
            f"unavailable={self.unavailable}, unreachable={self.unreachable})"
        )


class _Picker:
    """Running instances with a network node, in turn."""

    def __init__(self, target: VpnServiceGroup | VpnService) -> None:
        self._target = target
        self._turn = 0

    def order(self) -> list[VpnService]:
        """The running instances, starting with the one whose turn it is."""
        target = self._target
        if hasattr(target, "instances"):
            services: Sequence[VpnService] = target.instances
        else:
            services = [target]
        running = [s for s in services if s.is_running and s.network_node is not None]
        if not running:
            return []
        start = self._turn % len(running)
        self._turn += 1
        return running[start:] + running[:start]


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 65536


class _Proxy:
    """The listener and the connections of one proxy."""

    def __init__(
        self,
        target: VpnServiceGroup | VpnService,
        remote_port: int,
        port: int,
        *,
        address: str,
        max_connections: int,
        connect_timeout: float,
    ) -> None:
        if not _is_port(remote_port) or remote_port == 0:
            raise ConfigurationError("remote_port", f"must be a TCP port, got {remote_port!r}")
        if not _is_port(port):
            raise ConfigurationError("port", f"must be a TCP port (0: any free one), got {port!r}")
        check_count("max_connections", max_connections, minimum=1)
        check_seconds("connect_timeout", connect_timeout)
        self._picker = _Picker(target)
        self.remote_port = remote_port
        self.address = address
        self.port = port
        self.connect_timeout = connect_timeout
        self.stats = ProxyStats()
        self._limit = trio.Semaphore(max_connections)
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> _Proxy:
        if self._stack is not None:
            raise RuntimeError("this proxy is running already")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            listeners = await nursery.start(self._run)
        except BaseException as exc:
            # The stack holds the nursery, entered before any new scope could be: it cannot be
            # closed inside a shielded one. Its tasks end as soon as it is cancelled.
            if not await stack.__aexit__(type(exc), exc, exc.__traceback__):  # noqa: ASYNC102
                raise
            raise  # pragma: no cover (a nursery does not swallow errors)
        self.port = listeners[0].socket.getsockname()[1]
        self._stack, self._nursery = stack, nursery
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, nursery = self._stack, self._nursery
        self._stack = self._nursery = None
        if stack is None or nursery is None:
            await trio.lowlevel.checkpoint()  # noqa: ASYNC102 (nothing to close)
            return None
        # Cancelled, the nursery's tasks (the listener, every connection) end at once, closing
        # their streams; it cannot be closed inside a new (shielded) scope, as it was entered
        # before any such scope.
        nursery.cancel_scope.cancel()
        return await stack.__aexit__(exc_type, exc, tb)  # noqa: ASYNC102

    async def _run(
        self, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.address)
        async with trio.open_nursery() as nursery:
            task_status.started(listeners)
            for listener in listeners:
                nursery.start_soon(self._accept, listener)

    async def _accept(self, listener: trio.SocketListener) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                await self._limit.acquire()
                try:
                    stream = await listener.accept()
                except BaseException:
                    self._limit.release()
                    raise
                self.stats.accepted += 1
                nursery.start_soon(self._carry, stream)

    async def _carry(self, client: trio.SocketStream) -> None:
        await trio.lowlevel.checkpoint()
        try:
            async with client:
                await self._handle(client)
        except (trio.BrokenResourceError, trio.ClosedResourceError, NetworkError, OSError) as exc:
            # One connection's trouble ends that connection only.
            logger.debug("proxy connection ended: %s", exc)
        finally:
            self._limit.release()

    async def _handle(self, client: trio.SocketStream) -> None:
        raise NotImplementedError

    async def _connect(self) -> VpnStream | int:
        """A connection to the next running instance that answers; else 503 when none is
        running (``stats.unavailable``), 502 when none could be reached
        (``stats.unreachable``)."""
        await trio.lowlevel.checkpoint()
        order = self._picker.order()
        if not order:
            self.stats.unavailable += 1
            return 503
        for service in order:
            node = service.network_node
            if node is None:
                continue
            try:
                return await node.network.open_tcp_stream(
                    node.ip, self.remote_port, connect_timeout=self.connect_timeout
                )
            except (VpnConnectionError, NetworkClosed) as exc:
                logger.info("proxy: %s:%d unreachable: %s", node.ip, self.remote_port, exc)
        self.stats.unreachable += 1
        return 502


async def _copy(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    """Copy until the source ends (or either side breaks)."""
    await trio.lowlevel.checkpoint()
    try:
        while data := await source.receive_some(CHUNK):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _both_ways(a: trio.abc.Stream, b: trio.abc.Stream) -> None:
    """Carry bytes both ways until one side ends; then both close."""
    async with trio.open_nursery() as nursery:

        async def one_way(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
            await _copy(source, sink)
            nursery.cancel_scope.cancel()

        nursery.start_soon(one_way, a, b)
        nursery.start_soon(one_way, b, a)


class SocketProxy(_Proxy):
    """Serve ``port`` on ``address`` (loopback; ``0``: any free port, then read ``port``) and
    carry each connection, as raw TCP, to ``remote_port`` of a running instance of
    ``target`` (a cluster, in turn, or one service).

    A connection stays with its instance; when that instance stops, the connection closes and
    the next one goes to another running instance. When either side ends its half of the
    connection, the whole connection closes (a websocket has no half-close). With no running
    instance, or none reachable, the connection is closed at once.

    Cancellation: entering checkpoints (the listener opens); leaving the block closes the
    listener and every connection.
    """

    def __init__(
        self,
        target: VpnServiceGroup | VpnService,
        remote_port: int,
        port: int = 0,
        *,
        address: str = "127.0.0.1",
        max_connections: int = 256,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            target,
            remote_port,
            port,
            address=address,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
        )

    async def __aenter__(self) -> SocketProxy:
        await super().__aenter__()
        return self

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream = await self._connect()
        if isinstance(upstream, int):
            return
        self.stats.carried += 1
        async with upstream:
            await _both_ways(client, upstream)


# --- HTTP ----------------------------------------------------------------------------------------


class _BadMessage(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class _Reader:
    """A stream with a bounded read-ahead buffer."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def head(self) -> bytes | None:
        """The head up to and including the blank line; ``None`` at a clean end of stream."""
        await trio.lowlevel.checkpoint()
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buffer[: end + 4])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > MAX_HEAD:
                raise _BadMessage(431, "request head too large")
            data = await self.stream.receive_some(CHUNK)
            if not data:
                if self.buffer:
                    raise _BadMessage(400, "the message ended inside its head")
                return None
            self.buffer += data

    async def copy(self, sink: trio.abc.SendStream, length: int | None) -> None:
        """Send ``length`` bytes (``None``: up to the end of stream) to ``sink``."""
        await trio.lowlevel.checkpoint()
        remaining = length
        while remaining is None or remaining > 0:
            data: bytes | bytearray
            if self.buffer:
                take = len(self.buffer) if remaining is None else min(remaining, len(self.buffer))
                data = bytes(self.buffer[:take])
                del self.buffer[:take]
            else:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                data = await self.stream.receive_some(want)
                if not data:
                    if remaining is None:
                        return
                    raise _BadMessage(400, "the body ended early")
            await sink.send_all(data)
            if remaining is not None:
                remaining -= len(data)


_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/1\.[01]\r\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9](?: [^\r\n]*)?\r\n")
#: Headers of one hop, dropped: the proxy closes every connection after one exchange, and
#: answers ``Expect: 100-continue`` itself.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"expect"})


def _rewrite(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The head with ``Connection: close`` instead of its connection headers, and the
    headers as parsed (lower-case names)."""
    lines = head[:-4].split(b"\r\n")
    start, header_lines = lines[0], lines[1:]
    headers: list[tuple[bytes, bytes]] = []
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _BadMessage(400, "malformed header line")
        headers.append((name.lower(), value.strip()))
    kept = [
        line
        for line, (name, _) in zip(header_lines, headers, strict=True)
        if name not in _HOP_BY_HOP
    ]
    return b"\r\n".join([start, *kept, b"Connection: close", b"", b""]), headers


def _body_length(headers: list[tuple[bytes, bytes]]) -> int:
    if any(name == b"transfer-encoding" for name, _ in headers):
        raise _BadMessage(411, "chunked request bodies are not carried; send Content-Length")
    lengths = {value for name, value in headers if name == b"content-length"}
    if not lengths:
        return 0
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise _BadMessage(400, "bad Content-Length")
    return int(next(iter(lengths)))


_REASONS = {
    400: "Bad Request",
    411: "Length Required",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _error_response(status: int, detail: str) -> bytes:
    body = f"{status} {_REASONS[status]}: {detail}\n".encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class LocalHttpProxy(_Proxy):
    """Serve ``port`` on ``address`` (loopback; ``0``: any free port, then read ``port``) and
    forward each HTTP/1.1 request to ``remote_port`` (80 by default) of a running instance of
    ``cluster``, in turn.

    Each request gets a connection of its own into the network, and every response ends its
    connection (``Connection: close`` both ways), so consecutive requests are spread over the
    instances. Request bodies need a ``Content-Length`` (chunked ones: 411); responses are
    streamed through. ``503`` when no instance is running, ``502`` when none could be reached
    or its answer was not HTTP, ``504`` when it did not answer within ``response_timeout``.

    Cancellation: entering checkpoints (the listener opens); leaving the block closes the
    listener and every connection.
    """

    def __init__(
        self,
        cluster: VpnServiceGroup | VpnService,
        port: int = 0,
        *,
        remote_port: int = 80,
        address: str = "127.0.0.1",
        max_connections: int = 256,
        connect_timeout: float = 10.0,
        response_timeout: float = 30.0,
        request_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            cluster,
            remote_port,
            port,
            address=address,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
        )
        check_seconds("response_timeout", response_timeout)
        check_seconds("request_timeout", request_timeout)
        self.response_timeout = response_timeout
        self.request_timeout = request_timeout

    async def __aenter__(self) -> LocalHttpProxy:
        await super().__aenter__()
        return self

    async def _handle(self, client: trio.SocketStream) -> None:
        await trio.lowlevel.checkpoint()
        reader = _Reader(client)
        try:
            with trio.fail_after(self.request_timeout):
                head = await reader.head()
                if head is None:
                    return
                if _REQUEST_LINE.match(head) is None:
                    raise _BadMessage(400, "not an HTTP/1 request")
                request, headers = _rewrite(head)
                length = _body_length(headers)
        except _BadMessage as bad:
            await client.send_all(_error_response(bad.status, str(bad)))
            return
        except trio.TooSlowError:
            return
        upstream = await self._connect()
        if isinstance(upstream, int):
            detail = "no instance is running" if upstream == 503 else "no instance could be reached"
            await client.send_all(_error_response(upstream, detail))
            return
        self.stats.carried += 1
        async with upstream:
            try:
                await upstream.send_all(request)
                if length and any(
                    name == b"expect" and value.lower() == b"100-continue"
                    for name, value in headers
                ):
                    # The client waits for this before it sends the body.
                    await client.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                await reader.copy(upstream, length)
            except _BadMessage as bad:
                await client.send_all(_error_response(bad.status, str(bad)))
                return
            answer = _Reader(upstream)
            try:
                with trio.fail_after(self.response_timeout):
                    response_head = await answer.head()
                if response_head is None:
                    raise _BadMessage(502, "the instance closed the connection without answering")
                if _STATUS_LINE.match(response_head) is None:
                    raise _BadMessage(502, "the instance did not answer in HTTP")
                response, _ = _rewrite(response_head)
            except _BadMessage as bad:
                await client.send_all(_error_response(502, str(bad)))
                return
            except trio.TooSlowError:
                await client.send_all(_error_response(504, "the instance did not answer in time"))
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await client.send_all(_error_response(502, "the connection to the instance broke"))
                return
            await client.send_all(response)
            try:
                await answer.copy(client, None)
            except (trio.BrokenResourceError, _BadMessage):
                return
