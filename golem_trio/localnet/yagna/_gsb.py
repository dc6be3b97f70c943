"""A trio client of the Golem Service Bus (GSB), the message bus inside a yagna daemon.

The bus speaks ``ya-sb-proto`` over a unix socket (``unix:/path``) or TCP
(``tcp://host:port``): every frame is a 4-byte big-endian length followed by one protobuf
``Packet``. The protobuf messages are encoded and decoded here by hand (only varints and
length-delimited fields occur). Call payloads are serde-style flexbuffers; the daemon may
zlib-compress them (its hybrid net switches compression on for the whole process), so a
payload that starts with a zlib header is inflated first, and payloads are always sent
uncompressed (the daemon falls back to raw flexbuffers when inflating fails).

Usage::

    async with open_gsb("unix:/tmp/yagna/yagna.sock", name="my-service") as bus:
        ids = await bus.call("/local/identity/List", {})
        bus.serve("/public/my-service", handler)
        await bus.register("/public/my-service")

A handler is ``handler(component, caller, payload)``. Either it is a coroutine function whose
result is the reply payload, or it returns an async iterator whose items are sent as partial
replies (a streamed reply), followed by an empty final reply.
"""

from __future__ import annotations

import inspect
import math
import os
import struct
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias

import attrs
import trio
from flatbuffers import flexbuffers  # type: ignore[import-untyped]

__all__ = [
    "MAX_FRAME",
    "CallReply",
    "CallRequest",
    "GsbBus",
    "GsbCallError",
    "GsbClosed",
    "GsbError",
    "GsbProtocolError",
    "GsbRegisterError",
    "Handler",
    "Hello",
    "Packet",
    "Ping",
    "Pong",
    "RegisterReply",
    "RegisterRequest",
    "ReplyType",
    "UnknownPacket",
    "UnregisterReply",
    "UnregisterRequest",
    "decode_packet",
    "decode_payload",
    "decode_varint",
    "encode_frame",
    "encode_packet",
    "encode_payload",
    "encode_varint",
    "open_gsb",
    "read_frames",
]

#: Largest frame accepted (bytes after the length prefix).
MAX_FRAME: Final = 64 * 1024 * 1024
#: The ``ya-service-bus`` version announced in ``Hello``.
CLIENT_VERSION: Final = "0.7.3"
#: Seconds that closing the connection may take when the caller is being cancelled.
CLOSE_BOUND: Final = 5.0

_HEADER = struct.Struct(">I")
_UINT64 = (1 << 64) - 1


# --- errors ---------------------------------------------------------------------------------------


class GsbError(Exception):
    """Base class of every error raised by this module."""


class GsbProtocolError(GsbError):
    """Bytes that are not a valid frame, packet or payload."""


class GsbClosed(GsbError):
    """The connection to the bus is closed (or broke); no reply will come."""


class GsbRegisterError(GsbError):
    """The router refused a register or unregister request.

    Attributes:
        code: the router's reply code (400 bad request, 404 not registered, 409 conflict).
        service_id: the service address concerned.
    """

    def __init__(self, service_id: str, code: int, message: str) -> None:
        super().__init__(f"{service_id}: code {code}" + (f": {message}" if message else ""))
        self.service_id = service_id
        self.code = code
        self.message = message


class GsbCallError(GsbError):
    """A call answered with a non-zero reply code.

    Attributes:
        address: the called address.
        code: 400 (bad request, e.g. no such service) or 500 (service failure).
        message: the reply data as text (the bus sends the error's description).
    """

    def __init__(self, address: str, code: int, message: str) -> None:
        super().__init__(f"GSB call {address} failed with code {code}: {message}")
        self.address = address
        self.code = code
        self.message = message


# --- protobuf varints and fields ------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Encode an unsigned varint; a negative value is written as its 64-bit two's complement
    (as protobuf does for negative ``int32``/``int64``)."""
    if value < 0:
        value &= _UINT64
    if value > _UINT64:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; returns ``(value, next position)``.

    Raises:
        GsbProtocolError: the varint is truncated or longer than 10 bytes.
    """
    result = 0
    shift = 0
    for i in range(pos, min(len(buf), pos + 10)):
        byte = buf[i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _UINT64, i + 1
        shift += 7
    if len(buf) - pos >= 10:
        raise GsbProtocolError(f"varint longer than 10 bytes at offset {pos}")
    raise GsbProtocolError(f"truncated varint at offset {pos}")


def _int32(value: int) -> int:
    """A decoded varint read as a (possibly negative) int32/int64 field."""
    return value - (1 << 64) if value >= 1 << 63 else value


_Fields: TypeAlias = dict[int, "int | bytes"]


def _parse_fields(buf: bytes) -> _Fields:
    """The fields of one protobuf message: number -> varint value or raw bytes (last wins)."""
    fields: _Fields = {}
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise GsbProtocolError("field number 0")
        if wire == 0:
            value, pos = decode_varint(buf, pos)
            fields[number] = value
        elif wire == 2:
            length, pos = decode_varint(buf, pos)
            if length > len(buf) - pos:
                raise GsbProtocolError(f"field {number}: length {length} past the end")
            fields[number] = bytes(buf[pos : pos + length])
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if size > len(buf) - pos:
                raise GsbProtocolError(f"field {number}: truncated fixed-size value")
            fields[number] = bytes(buf[pos : pos + size])
            pos += size
        else:
            raise GsbProtocolError(f"field {number}: unsupported wire type {wire}")
    return fields


def _field_bytes(fields: _Fields, number: int) -> bytes:
    value = fields.get(number, b"")
    if not isinstance(value, bytes):
        raise GsbProtocolError(f"field {number}: expected a length-delimited value")
    return value


def _field_str(fields: _Fields, number: int) -> str:
    try:
        return _field_bytes(fields, number).decode()
    except UnicodeDecodeError as exc:
        raise GsbProtocolError(f"field {number}: invalid UTF-8") from exc


def _field_int(fields: _Fields, number: int) -> int:
    value = fields.get(number, 0)
    if not isinstance(value, int):
        raise GsbProtocolError(f"field {number}: expected a varint")
    return _int32(value)


def _bytes_field(number: int, value: bytes | str) -> bytes:
    """A length-delimited field; empty values are omitted (proto3 defaults)."""
    data = value.encode() if isinstance(value, str) else value
    if not data:
        return b""
    return encode_varint(number << 3 | 2) + encode_varint(len(data)) + data


def _int_field(number: int, value: int) -> bytes:
    if not value:
        return b""
    return encode_varint(number << 3) + encode_varint(value)


# --- packets --------------------------------------------------------------------------------------


class ReplyType:
    """``CallReply.reply_type``: a whole reply (or the end of a stream), or one stream item."""

    FULL: Final = 0
    PARTIAL: Final = 1


@attrs.frozen
class Hello:
    name: str = ""
    version: str = ""
    instance_id: bytes = b""


@attrs.frozen
class RegisterRequest:
    service_id: str


@attrs.frozen
class RegisterReply:
    code: int = 0
    message: str = ""


@attrs.frozen
class UnregisterRequest:
    service_id: str


@attrs.frozen
class UnregisterReply:
    code: int = 0


@attrs.frozen
class CallRequest:
    caller: str
    address: str
    request_id: str
    data: bytes = b""
    no_reply: bool = False


@attrs.frozen
class CallReply:
    request_id: str
    code: int = 0
    reply_type: int = ReplyType.FULL
    data: bytes = b""


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Pong:
    pass


@attrs.frozen
class UnknownPacket:
    """A packet this client does not handle (subscribe, broadcast, ...): kept raw."""

    kind: int
    body: bytes


Packet: TypeAlias = (
    Hello
    | RegisterRequest
    | RegisterReply
    | UnregisterRequest
    | UnregisterReply
    | CallRequest
    | CallReply
    | Ping
    | Pong
    | UnknownPacket
)

_HELLO, _REG_REQ, _REG_REP, _UNREG_REQ, _UNREG_REP, _CALL_REQ, _CALL_REP = range(1, 8)
_PING, _PONG = 14, 15


def _packet_body(packet: Packet) -> tuple[int, bytes]:
    match packet:
        case Hello(name, version, instance_id):
            body = _bytes_field(1, name) + _bytes_field(2, version) + _bytes_field(3, instance_id)
            return _HELLO, body
        case RegisterRequest(service_id):
            return _REG_REQ, _bytes_field(1, service_id)
        case RegisterReply(code, message):
            return _REG_REP, _int_field(1, code) + _bytes_field(2, message)
        case UnregisterRequest(service_id):
            return _UNREG_REQ, _bytes_field(1, service_id)
        case UnregisterReply(code):
            return _UNREG_REP, _int_field(1, code)
        case CallRequest(caller, address, request_id, data, no_reply):
            body = (
                _bytes_field(1, caller)
                + _bytes_field(2, address)
                + _bytes_field(3, request_id)
                + _bytes_field(4, data)
                + _int_field(5, int(no_reply))
            )
            return _CALL_REQ, body
        case CallReply(request_id, code, reply_type, data):
            body = (
                _bytes_field(1, request_id)
                + _int_field(2, code)
                + _int_field(3, reply_type)
                + _bytes_field(4, data)
            )
            return _CALL_REP, body
        case Ping():
            return _PING, b""
        case Pong():
            return _PONG, b""
        case UnknownPacket(kind, body):
            return kind, body
    raise TypeError(f"not a GSB packet: {packet!r}")


def encode_packet(packet: Packet) -> bytes:
    """The protobuf ``Packet`` (a oneof) holding ``packet``, without the length prefix.

    An empty message (``Ping``, ``Pong``) is still written, as a zero-length field, so the
    oneof is set.
    """
    kind, body = _packet_body(packet)
    return encode_varint(kind << 3 | 2) + encode_varint(len(body)) + body


def encode_frame(packet: Packet) -> bytes:
    """``packet`` as one frame: a 4-byte big-endian length, then the protobuf ``Packet``."""
    data = encode_packet(packet)
    if len(data) > MAX_FRAME:
        raise GsbProtocolError(f"packet of {len(data)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(data)) + data


def decode_packet(data: bytes) -> Packet:
    """Decode one protobuf ``Packet``.

    Raises:
        GsbProtocolError: malformed protobuf, no packet set, or a field of the wrong kind.
    """
    outer = _parse_fields(data)
    if not outer:
        raise GsbProtocolError("empty packet (no oneof field set)")
    if len(outer) != 1:
        raise GsbProtocolError(f"packet with several oneof fields: {sorted(outer)}")
    ((kind, body),) = outer.items()
    if not isinstance(body, bytes):
        raise GsbProtocolError(f"packet field {kind}: expected a message")
    fields = _parse_fields(body)
    if kind == _HELLO:
        return Hello(_field_str(fields, 1), _field_str(fields, 2), _field_bytes(fields, 3))
    if kind == _REG_REQ:
        return RegisterRequest(_field_str(fields, 1))
    if kind == _REG_REP:
        return RegisterReply(_field_int(fields, 1), _field_str(fields, 2))
    if kind == _UNREG_REQ:
        return UnregisterRequest(_field_str(fields, 1))
    if kind == _UNREG_REP:
        return UnregisterReply(_field_int(fields, 1))
    if kind == _CALL_REQ:
        return CallRequest(
            _field_str(fields, 1),
            _field_str(fields, 2),
            _field_str(fields, 3),
            _field_bytes(fields, 4),
            bool(_field_int(fields, 5)),
        )
    if kind == _CALL_REP:
        return CallReply(
            _field_str(fields, 1),
            _field_int(fields, 2),
            _field_int(fields, 3),
            _field_bytes(fields, 4),
        )
    if kind == _PING:
        return Ping()
    if kind == _PONG:
        return Pong()
    return UnknownPacket(kind, body)


def read_frames(buffer: bytearray) -> list[Packet]:
    """Take every complete frame off the front of ``buffer`` and decode it.

    Incomplete data stays in ``buffer`` for the next call.

    Raises:
        GsbProtocolError: a frame longer than :data:`MAX_FRAME`, or a malformed packet.
    """
    packets: list[Packet] = []
    while len(buffer) >= _HEADER.size:
        (length,) = _HEADER.unpack_from(buffer)
        if length > MAX_FRAME:
            raise GsbProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
        if len(buffer) < _HEADER.size + length:
            break
        data = bytes(buffer[_HEADER.size : _HEADER.size + length])
        del buffer[: _HEADER.size + length]
        packets.append(decode_packet(data))
    return packets


# --- payloads -------------------------------------------------------------------------------------


def encode_payload(value: Any) -> bytes:
    """Serialize a payload as flexbuffers (uncompressed)."""
    try:
        data: bytes = bytes(flexbuffers.Dumps(value))
    except Exception as exc:  # the encoder raises assorted errors on unsupported values
        raise GsbProtocolError(f"cannot encode payload: {exc}") from exc
    return data


def decode_payload(data: bytes) -> Any:
    """Deserialize a flexbuffers payload; one that starts with a zlib header is inflated
    first (falling back to the raw bytes when inflating fails, as the daemon does).

    Raises:
        GsbProtocolError: the bytes are not flexbuffers.
    """
    raw = bytes(data)
    if len(raw) >= 2 and raw[0] == 0x78:
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            raw = bytes(data)
    if len(raw) < 3:
        raise GsbProtocolError(f"payload too short for flexbuffers: {raw!r}")
    try:
        return flexbuffers.Loads(raw)
    except Exception as exc:  # the decoder raises assorted errors on malformed data
        raise GsbProtocolError(f"malformed flexbuffers payload: {exc}") from exc


# --- the client -----------------------------------------------------------------------------------

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
