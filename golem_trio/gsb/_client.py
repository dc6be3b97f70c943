"""A trio client of the Golem Service Bus: one connection to a router, calls, and services."""

from __future__ import annotations

import inspect
import math
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias

import attrs
import trio

from ._errors import GsbCallError, GsbClosed, GsbError, GsbProtocolError, GsbRegisterError
from ._wire import (
    CallReply,
    CallRequest,
    Hello,
    Packet,
    Ping,
    Pong,
    RegisterReply,
    RegisterRequest,
    ReplyType,
    UnregisterReply,
    UnregisterRequest,
    decode_payload,
    encode_frame,
    encode_payload,
    read_frames,
)

__all__ = ["CLIENT_VERSION", "CLOSE_BOUND", "GsbBus", "Handler", "open_gsb"]

#: The ``ya-service-bus`` version announced in ``Hello``.
CLIENT_VERSION: Final = "0.7.3"
#: Seconds that closing the connection may take when the caller is being cancelled.
CLOSE_BOUND: Final = 5.0


#: ``handler(component, caller, payload)``: awaitable result, or an async iterator of items.
Handler: TypeAlias = Callable[[str, str, Any], "Awaitable[Any] | AsyncIterator[Any]"]


@attrs.define(eq=False)
class _ControlWaiter:
    kind: type[RegisterReply] | type[UnregisterReply]
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: RegisterReply | UnregisterReply | None = None
    abandoned: bool = False


class GsbBus:
    """One connection to a GSB router. Get it from :func:`open_gsb`.

    Incoming pings are answered; incoming calls go to the handler registered with
    :meth:`serve` under the longest matching prefix and run as background tasks of the
    connection.
    """

    def __init__(self, stream: trio.abc.Stream, name: str, nursery: trio.Nursery) -> None:
        self.name = name
        self.router_hello: Hello | None = None
        self._stream = stream
        self._nursery = nursery
        self._send_lock = trio.Lock()
        self._pending: dict[str, trio.MemorySendChannel[CallReply]] = {}
        self._control: deque[_ControlWaiter] = deque()
        self._handlers: dict[str, Handler] = {}
        self._failure: GsbError | None = None
        self._closed = trio.Event()

    def __repr__(self) -> str:
        return f"GsbBus(name={self.name!r}, closed={self._closed.is_set()})"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # --- sending ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed.is_set():
            raise GsbClosed("the GSB connection is closed")

    async def _send(self, packet: Packet, before: Callable[[], None] | None = None) -> None:
        frame = encode_frame(packet)
        async with self._send_lock:
            self._check_open()
            if before is not None:
                before()
            try:
                await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise self._fail(GsbClosed(f"the GSB connection broke: {exc}")) from exc

    # --- register --------------------------------------------------------------------------------

    async def _control_call(
        self, request: RegisterRequest | UnregisterRequest, kind: type[Any]
    ) -> RegisterReply | UnregisterReply:
        waiter = _ControlWaiter(kind)
        try:
            await self._send(request, before=lambda: self._control.append(waiter))
            await waiter.done.wait()
        finally:
            waiter.abandoned = not waiter.done.is_set()
        if waiter.reply is None:
            self._check_open()
            raise GsbClosed("the GSB connection closed before the router replied")
        return waiter.reply

    async def register(self, service_id: str) -> None:
        """Ask the router to route calls under ``service_id`` (e.g. ``/public/x``) here.

        Raises:
            GsbRegisterError: the router refused (400 invalid name, 409 already registered).
            GsbClosed: the connection is closed.

        Cancellation: a checkpoint; if cancelled after sending, the registration may still
        happen (the late reply is discarded).
        """
        reply = await self._control_call(RegisterRequest(service_id), RegisterReply)
        assert isinstance(reply, RegisterReply)
        if reply.code != 0:
            raise GsbRegisterError(service_id, reply.code, reply.message)

    async def unregister(self, service_id: str) -> None:
        """Withdraw ``service_id`` from the router and drop its handler (if any).

        Raises:
            GsbRegisterError: code 404, it was not registered.
            GsbClosed: the connection is closed.

        Cancellation: a checkpoint; if cancelled after sending, it may still be unregistered.
        """
        self._handlers.pop(service_id, None)
        reply = await self._control_call(UnregisterRequest(service_id), UnregisterReply)
        if reply.code != 0:
            raise GsbRegisterError(service_id, reply.code, "not registered")

    def serve(self, prefix: str, handler: Handler) -> None:
        """Handle incoming calls to ``prefix/<component>`` (and to ``prefix`` itself, with an
        empty component) with ``handler``. It does not register ``prefix`` with the router:
        call :meth:`register` for that."""
        self._handlers[prefix.rstrip("/")] = handler

    def unserve(self, prefix: str) -> None:
        """Stop handling calls under ``prefix`` (calls then get a 400 reply)."""
        self._handlers.pop(prefix.rstrip("/"), None)

    # --- calls -----------------------------------------------------------------------------------

    async def call_raw(self, address: str, data: bytes, *, caller: str | None = None) -> bytes:
        """Call ``address`` with raw payload bytes; the reply's raw bytes.

        Partial replies before the final one are dropped; an empty final reply after partial
        ones yields the last partial one.

        Raises:
            GsbCallError: the reply code is not 0.
            GsbClosed: the connection closed before the reply.

        Cancellation: a checkpoint; if cancelled, the call may still reach the service.
        """
        last = b""
        async with self._open_call(address, data, caller) as replies:
            while True:
                reply = await self._next_reply(address, replies)
                last = reply.data or last
                if reply.reply_type != ReplyType.PARTIAL:
                    return last

    async def call(self, address: str, payload: Any, *, caller: str | None = None) -> Any:
        """Call ``address`` (e.g. ``/local/identity/List``) with a flexbuffers ``payload``;
        the decoded reply (``None`` for an empty one).

        Daemon services answer a serde ``Result``: ``{"Ok": value}`` or ``{"Err": ...}``;
        that is returned as it is.

        Raises:
            GsbCallError: the reply code is not 0 (e.g. 400 "no such service").
            GsbProtocolError: the reply is not flexbuffers.
            GsbClosed: the connection closed before the reply.

        Cancellation: a checkpoint; if cancelled, the call may still reach the service.
        """
        data = await self.call_raw(address, encode_payload(payload), caller=caller)
        return decode_payload(data) if data else None

    @asynccontextmanager
    async def call_streaming(
        self, address: str, payload: Any, *, caller: str | None = None
    ) -> AsyncIterator[AsyncIterator[Any]]:
        """Call a streaming service. Use as ``async with bus.call_streaming(a, p) as items:``;
        the request is sent on entry, and ``items`` yields each decoded partial reply, then
        the final one if it is not empty.

        Raises:
            GsbCallError: a reply code is not 0 (raised by the iteration).
            GsbClosed: the connection closed before the end of the stream.

        Cancellation: a checkpoint on entry and at each item; leaving the block early
        abandons the stream.
        """
        async with self._open_call(address, encode_payload(payload), caller) as replies:
            yield _ReplyItems(self, address, replies)

    @asynccontextmanager
    async def _open_call(
        self, address: str, data: bytes, caller: str | None
    ) -> AsyncIterator[trio.MemoryReceiveChannel[CallReply]]:
        request_id, replies = await self._start_call(address, data, caller)
        try:
            yield replies
        finally:
            self._pending.pop(request_id, None)
            replies.close()

    async def _start_call(
        self, address: str, data: bytes, caller: str | None
    ) -> tuple[str, trio.MemoryReceiveChannel[CallReply]]:
        request_id = uuid.uuid4().hex
        send, receive = trio.open_memory_channel[CallReply](math.inf)
        request = CallRequest(caller or self.name, address, request_id, data)

        def enlist() -> None:
            self._pending[request_id] = send

        try:
            await self._send(request, before=enlist)
        except BaseException:
            self._pending.pop(request_id, None)
            receive.close()
            raise
        return request_id, receive

    async def _next_reply(
        self, address: str, replies: trio.MemoryReceiveChannel[CallReply]
    ) -> CallReply:
        try:
            reply = await replies.receive()
        except trio.EndOfChannel:
            self._check_open()
            raise GsbClosed(f"no reply to {address}: connection closed") from None
        if reply.code != 0:
            raise GsbCallError(address, reply.code, reply.data.decode(errors="replace"))
        return reply

    # --- receiving -------------------------------------------------------------------------------

    def _fail(self, error: GsbError) -> GsbError:
        """Record the connection's end and wake every waiter; returns ``error``."""
        if self._failure is None and not self._closed.is_set():
            self._failure = error
        self._shut()
        return self._failure if self._failure is not None else error

    def _shut(self) -> None:
        self._closed.set()
        for send in self._pending.values():
            send.close()
        self._pending.clear()
        while self._control:
            self._control.popleft().done.set()

    async def _receive(self) -> bytes | None:
        """The next chunk from the router; ``b""`` at its end, ``None`` if the stream broke."""
        try:
            return bytes(await self._stream.receive_some(65536))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(GsbClosed(f"the GSB connection broke: {exc}"))
        await trio.lowlevel.checkpoint()
        return None

    async def _read_loop(self) -> None:
        await trio.lowlevel.checkpoint()
        buffer = bytearray()
        while not self._closed.is_set():
            chunk = await self._receive()
            if chunk is None:
                break
            if not chunk:
                if buffer:
                    raise self._fail(GsbProtocolError("connection closed inside a frame"))
                self._fail(GsbClosed("the GSB router closed the connection"))
                break
            buffer += chunk
            try:
                packets = read_frames(buffer)
            except GsbProtocolError as exc:
                raise self._fail(exc) from None
            try:
                for packet in packets:
                    await self._dispatch(packet)
            except GsbClosed:
                break

    async def _dispatch(self, packet: Packet) -> None:
        match packet:
            case Ping():
                await self._send(Pong())
                return
            case Hello():
                self.router_hello = packet
            case CallReply(request_id=request_id):
                send = self._pending.get(request_id)
                if send is not None:
                    send.send_nowait(packet)
            case RegisterReply() | UnregisterReply():
                self._control_reply(packet)
            case CallRequest():
                self._nursery.start_soon(self._handle_call, packet)
            case _:
                pass  # pongs and packets this client does not use
        await trio.lowlevel.checkpoint()

    def _control_reply(self, reply: RegisterReply | UnregisterReply) -> None:
        if not self._control:
            raise self._fail(GsbProtocolError(f"unexpected {type(reply).__name__}"))
        waiter = self._control.popleft()
        if not isinstance(reply, waiter.kind):
            raise self._fail(
                GsbProtocolError(f"expected {waiter.kind.__name__}, got {type(reply).__name__}")
            )
        waiter.reply = reply
        waiter.done.set()

    def _find_handler(self, address: str) -> tuple[Handler, str] | None:
        best: str | None = None
        for prefix in self._handlers:
            if (address == prefix or address.startswith(prefix + "/")) and (
                best is None or len(prefix) > len(best)
            ):
                best = prefix
        if best is None:
            return None
        return self._handlers[best], address[len(best) + 1 :]

    async def _reply(self, request: CallRequest, reply: CallReply) -> None:
        if request.no_reply:
            await trio.lowlevel.checkpoint()
            return
        await self._send(reply)

    async def _handle_call(self, request: CallRequest) -> None:
        await trio.lowlevel.checkpoint()
        rid = request.request_id
        try:
            found = self._find_handler(request.address)
            if found is None:
                message = f"no handler for {request.address}".encode()
                await self._reply(request, CallReply(rid, 400, ReplyType.FULL, message))
                return
            handler, component = found
            try:
                payload = decode_payload(request.data) if request.data else None
                outcome = handler(component, request.caller, payload)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                if isinstance(outcome, AsyncIterator):
                    async for item in outcome:
                        data = encode_payload(item)
                        await self._reply(request, CallReply(rid, 0, ReplyType.PARTIAL, data))
                    await self._reply(request, CallReply(rid, 0, ReplyType.FULL))
                    return
                data = encode_payload(outcome)
            except GsbClosed:
                raise
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}".encode()
                await self._reply(request, CallReply(rid, 500, ReplyType.FULL, text))
                return
            await self._reply(request, CallReply(rid, 0, ReplyType.FULL, data))
        except GsbClosed:
            return  # nobody to answer any more

    async def wait_closed(self) -> None:
        """Wait until the connection ends.

        Raises:
            GsbProtocolError: it ended because the router sent malformed data.

        Cancellation: a checkpoint; safe to cancel.
        """
        await self._closed.wait()
        if isinstance(self._failure, GsbProtocolError):
            raise self._failure


class _ReplyItems:
    """The decoded items of a streamed reply (see :meth:`GsbBus.call_streaming`)."""

    def __init__(
        self, bus: GsbBus, address: str, replies: trio.MemoryReceiveChannel[CallReply]
    ) -> None:
        self._bus = bus
        self._address = address
        self._replies = replies
        self._done = False

    def __aiter__(self) -> _ReplyItems:
        return self

    async def __anext__(self) -> Any:
        while not self._done:
            reply = await self._bus._next_reply(self._address, self._replies)
            self._done = reply.reply_type != ReplyType.PARTIAL
            if reply.data:
                return decode_payload(reply.data)
        await trio.lowlevel.checkpoint()
        raise StopAsyncIteration


async def _connect(url: str) -> trio.abc.Stream:
    if url.startswith("unix:"):
        path = url[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        return await trio.open_unix_socket(os.fspath(path))
    if url.startswith("tcp://"):
        host, sep, port = url[len("tcp://") :].rstrip("/").rpartition(":")
        if not sep or not port.isdigit():
            raise GsbError(f"bad GSB URL {url!r}: expected tcp://host:port")
        return await trio.open_tcp_stream(host.strip("[]"), int(port))
    raise GsbError(f"bad GSB URL {url!r}: expected unix:/path or tcp://host:port")


def _only_gsb_error(group: BaseExceptionGroup[BaseException]) -> GsbError | None:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    # The reader and a waiting caller may both raise the same failure.
    unique = list({id(leaf): leaf for leaf in leaves}.values())
    if len(unique) == 1 and isinstance(unique[0], GsbError):
        return unique[0]
    return None


@asynccontextmanager
async def open_gsb(url: str, *, name: str = "golem-trio") -> AsyncIterator[GsbBus]:
    """Connect to the GSB router at ``url`` (``unix:/path`` or ``tcp://host:port``), say
    hello as ``name`` and yield the :class:`GsbBus`.

    On exit the connection is closed; services registered on it vanish with it. If the
    router sends a malformed frame, the block is cancelled and :class:`GsbProtocolError` is
    raised from it.

    Raises:
        GsbError: a bad URL.
        OSError: the router cannot be reached.
        GsbProtocolError: the router sent malformed data.

    Cancellation: connecting is a checkpoint; on exit, closing is shielded and bounded.
    """
    stream = await _connect(url)
    try:
        try:
            async with trio.open_nursery() as nursery:
                bus = GsbBus(stream, name, nursery)
                await bus._send(Hello(name, CLIENT_VERSION, uuid.uuid4().bytes))
                nursery.start_soon(bus._read_loop)
                try:
                    yield bus
                finally:
                    bus._shut()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = _only_gsb_error(group)
            if error is None:
                raise
            raise error from None
    finally:
        with trio.move_on_after(CLOSE_BOUND, shield=True):
            await stream.aclose()
