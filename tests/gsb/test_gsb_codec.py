"""The GSB wire codec (``golem_trio.gsb``): varints, packets, frames, payloads."""

from __future__ import annotations

import pathlib
import struct
import tempfile
import zlib
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from golem_trio.gsb import (
    MAX_FRAME,
    CallReply,
    CallRequest,
    GsbError,
    GsbProtocolError,
    Hello,
    Packet,
    Ping,
    Pong,
    RegisterReply,
    RegisterRequest,
    ReplyType,
    UnknownPacket,
    UnregisterReply,
    UnregisterRequest,
    decode_packet,
    decode_payload,
    decode_varint,
    encode_frame,
    encode_packet,
    encode_payload,
    encode_varint,
    open_gsb,
    read_frames,
)

texts = st.text(max_size=40)
blobs = st.binary(max_size=64)
codes = st.sampled_from([0, 400, 404, 409, 500])

packets: st.SearchStrategy[Packet] = st.one_of(
    st.builds(Hello, texts, texts, blobs),
    st.builds(RegisterRequest, texts),
    st.builds(RegisterReply, codes, texts),
    st.builds(UnregisterRequest, texts),
    st.builds(UnregisterReply, codes),
    st.builds(CallRequest, texts, texts, texts, blobs, st.booleans()),
    st.builds(CallReply, texts, codes, st.sampled_from([ReplyType.FULL, ReplyType.PARTIAL]), blobs),
    st.just(Ping()),
    st.just(Pong()),
    st.builds(UnknownPacket, st.sampled_from([8, 9, 12, 13]), st.just(b"")),
)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_varint_round_trip(value: int) -> None:
    data = encode_varint(value)
    assert len(data) <= 10
    assert decode_varint(data + b"\x01") == (value, len(data))


@given(st.integers(min_value=-(1 << 31), max_value=-1))
def test_negative_varints_are_64_bit_twos_complement(value: int) -> None:
    data = encode_varint(value)
    assert len(data) == 10
    assert decode_varint(data)[0] == value + (1 << 64)


def test_known_varints() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(300) == b"\xac\x02"
    with pytest.raises(GsbProtocolError, match="truncated"):
        decode_varint(b"\xac")
    with pytest.raises(GsbProtocolError, match="longer than 10"):
        decode_varint(b"\xff" * 11)


@given(packets)
def test_packet_round_trip(packet: Packet) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@given(st.lists(packets, max_size=5), st.integers(min_value=1, max_value=7))
def test_frames_split_anywhere(items: list[Packet], step: int) -> None:
    wire = b"".join(encode_frame(p) for p in items)
    buffer = bytearray()
    got: list[Packet] = []
    for i in range(0, len(wire), step):
        buffer += wire[i : i + step]
        got += read_frames(buffer)
    assert got == items
    assert buffer == bytearray()


def test_known_bytes() -> None:
    # Ping is a oneof field 14 holding an empty message.
    assert encode_frame(Ping()) == b"\x00\x00\x00\x02\x72\x00"
    # register_request(2) { service_id(1): "/a" }
    assert encode_packet(RegisterRequest("/a")) == b"\x12\x04\x0a\x02/a"
    # call_reply(7) { request_id: "r", code: 500, reply_type: 1 }
    reply = CallReply("r", 500, ReplyType.PARTIAL)
    assert decode_packet(b"\x3a\x08\x0a\x01r\x10\xf4\x03\x18\x01") == reply


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty packet"),
        (b"\x12", "truncated varint"),
        (b"\x12\x05\x0a", "past the end"),
        (b"\x13", "wire type 3"),
        (b"\x08\x01", "expected a message"),
        (b"\x12\x02\x08\x01", "expected a length-delimited"),
        (b"\x72\x00\x7a\x00", "several oneof"),
        (b"\x12\x03\x0a\x01\xff", "invalid UTF-8"),
    ],
)
def test_malformed_packets(data: bytes, message: str) -> None:
    with pytest.raises(GsbProtocolError, match=message):
        decode_packet(data)


def test_oversized_frame() -> None:
    with pytest.raises(GsbProtocolError, match="exceeds"):
        read_frames(bytearray(struct.pack(">I", MAX_FRAME + 1)))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 62), max_value=1 << 62)
    # flexbuffers packs a float that rounds to the float32 range as float32 and then fails.
    | st.floats(allow_nan=False, min_value=-1e38, max_value=1e38)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        # Map keys are C strings in flexbuffers; the bus only uses ASCII field names.
        | st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,9}", fullmatch=True), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@given(json_values)
def test_payload_round_trip(value: Any) -> None:
    data = encode_payload(value)
    assert decode_payload(data) == value
    assert decode_payload(zlib.compress(data)) == value


def test_payload_shapes() -> None:
    reply = {"Ok": [{"index": 0, "result": "Ok", "stdout": None, "isBatchFinished": True}]}
    assert decode_payload(zlib.compress(encode_payload(reply), 6)) == reply
    with pytest.raises(GsbProtocolError):
        decode_payload(b"\x01")
    with pytest.raises(GsbProtocolError, match="cannot encode"):
        encode_payload({"\u00e9": 1})


async def _fake_router(path: str, reply: bytes, task_status: trio.TaskStatus[None]) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(path)
    sock.listen(1)
    async with trio.SocketListener(sock) as listener:
        task_status.started()
        stream = await listener.accept()
        async with stream:
            await stream.receive_some(4096)  # the client's hello
            await stream.send_all(reply)
            await trio.sleep_forever()


@pytest.mark.parametrize(
    "reply",
    [
        struct.pack(">I", 3) + b"\x13\x00\x00",  # bad wire type
        struct.pack(">I", MAX_FRAME + 10),  # oversized
    ],
)
async def test_a_malformed_frame_ends_the_connection_with_an_error(reply: bytes) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = str(pathlib.Path(tmp) / "bus.sock")
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(_fake_router, path, reply)
                with pytest.raises(GsbProtocolError):
                    async with open_gsb(f"unix:{path}", name="test") as bus:
                        await bus.call("/local/x/Y", {})
                nursery.cancel_scope.cancel()


async def test_bad_urls() -> None:
    with pytest.raises(GsbError, match="bad GSB URL"):
        async with open_gsb("http://127.0.0.1:1"):
            pass
    with pytest.raises(GsbError, match="bad GSB URL"):
        async with open_gsb("tcp://127.0.0.1"):
            pass
