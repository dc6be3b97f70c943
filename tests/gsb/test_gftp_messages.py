"""gftp's messages, addresses and URLs (``golem_trio.gsb``), without a daemon: what the calls
carry through the bus's flexbuffers, and how the provider's half reads the replies."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_trio.gsb import (
    GFTP_CHUNK_SIZE,
    GetChunk,
    GetMetadata,
    GftpChunk,
    GftpError,
    GftpMetadata,
    UploadChunk,
    UploadFinished,
    decode_gftp_request,
    decode_payload,
    encode_payload,
    gftp_digest,
    gftp_err,
    gftp_remote_address,
    gftp_service_id,
    gftp_url,
    parse_gftp_url,
)

counts = st.integers(min_value=0, max_value=(1 << 63) - 1)
node_ids = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
names = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
    min_size=1,
    max_size=65,
)


def through_the_bus(payload: Any) -> Any:
    """What the receiving side decodes from ``payload``, as the bus carries it."""
    return decode_payload(encode_payload(payload))


@given(offset=counts, size=counts)
def test_get_chunk_round_trips(offset: int, size: int) -> None:
    message = GetChunk(offset, size)
    assert decode_gftp_request("GetChunk", through_the_bus(message.payload())) == message


@given(offset=counts, content=st.binary(max_size=3 * GFTP_CHUNK_SIZE))
def test_upload_chunk_round_trips_with_its_bytes(offset: int, content: bytes) -> None:
    message = UploadChunk(GftpChunk(offset, content))
    assert decode_gftp_request("UploadChunk", through_the_bus(message.payload())) == message


@given(digest=st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex))
def test_upload_finished_round_trips(digest: str | None) -> None:
    message = UploadFinished(digest)
    assert decode_gftp_request("UploadFinished", through_the_bus(message.payload())) == message


@given(size=counts)
def test_metadata_round_trips_in_camel_case(size: int) -> None:
    carried = through_the_bus(GftpMetadata(size).payload())
    assert carried == {"fileSize": size}
    assert GftpMetadata.from_payload(carried) == GftpMetadata(size)


def test_get_metadata_carries_nothing_and_any_payload_is_taken() -> None:
    assert decode_gftp_request("GetMetadata", through_the_bus(GetMetadata().payload())) == (
        GetMetadata()
    )
    assert decode_gftp_request("GetMetadata", None) == GetMetadata()


@pytest.mark.parametrize(
    ("component", "payload"),
    [
        ("GetChunk", {"offset": -1, "size": 10}),
        ("GetChunk", {"offset": 0}),
        ("GetChunk", {"offset": True, "size": 1}),
        ("UploadChunk", {"chunk": {"offset": 0, "content": "text, not bytes"}}),
        ("UploadChunk", {"chunk": None}),
        ("UploadFinished", {"hash": 5}),
        ("Delete", {}),
    ],
)
def test_malformed_requests_are_refused(component: str, payload: Any) -> None:
    with pytest.raises(ValueError, match=component if component != "UploadChunk" else "chunk"):
        decode_gftp_request(component, payload)


@given(node=node_ids, name=names)
def test_urls_and_addresses_name_the_node_and_the_file(node: str, name: str) -> None:
    url = gftp_url(node, name)
    assert url == f"gftp://{node}/{name}"
    assert parse_gftp_url(url) == (node, name)
    assert gftp_service_id(name) == f"/public/gftp/{name}"
    # Another node reaches the service through its daemon: /public becomes /net/<node>.
    remote = gftp_remote_address(node, name)
    assert remote == f"/net/{node}{gftp_service_id(name)[len('/public') :]}"


@pytest.mark.parametrize(
    "url",
    [
        "http://0x" + "1" * 40 + "/abc",
        "gftp://0x123/abc",
        "gftp://0x" + "1" * 40,
        "gftp://0x" + "1" * 40 + "/",
        "gftp://0x" + "1" * 40 + "/a/b",
        "gftp://0x" + "1" * 40 + "/../x",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(GftpError) as caught:
        parse_gftp_url(url)
    assert caught.value.kind == "protocol"


def test_errors_are_serde_variants() -> None:
    assert through_the_bus(gftp_err("ReadError", "no such offset")) == {
        "Err": {"ReadError": "no such offset"}
    }
    assert through_the_bus(gftp_err("IntegrityError")) == {"Err": "IntegrityError"}


@given(st.binary(max_size=5000))
def test_the_digest_is_sha3_256_in_lower_case_hex(data: bytes) -> None:
    digest = gftp_digest()
    digest.update(data)
    assert digest.hexdigest() == hashlib.sha3_256(data).hexdigest()
    assert digest.hexdigest() == digest.hexdigest().lower()
    assert len(digest.hexdigest()) == 64
