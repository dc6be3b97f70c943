"""The GSB wire format: frames, protobuf packets and flexbuffers payloads, without I/O.

Every frame is a 4-byte big-endian length followed by one protobuf ``Packet``; the protobuf
messages are encoded and decoded here by hand (only varints and length-delimited fields occur).
Call payloads are serde-style flexbuffers; the daemon may zlib-compress them (its hybrid net
switches compression on for the whole process), so a payload that starts with a zlib header is
inflated first, and payloads are always sent uncompressed (the daemon falls back to raw
flexbuffers when inflating fails).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Final, TypeAlias

import attrs
from flatbuffers import flexbuffers  # type: ignore[import-untyped]

from ._errors import GsbProtocolError

__all__ = [
    "MAX_FRAME",
    "CallReply",
    "CallRequest",
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
    "read_frames",
]

#: Largest frame accepted (bytes after the length prefix).
MAX_FRAME: Final = 64 * 1024 * 1024

_HEADER = struct.Struct(">I")
_UINT64 = (1 << 64) - 1


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
