"""gftp on the real daemon's bus: :class:`golem_trio.work.GftpStorage` serving the requestor's
side, :func:`golem_trio.gsb.gftp_fetch` and :func:`golem_trio.gsb.gftp_deliver` playing the
provider's, through the addresses a provider's exe-unit calls (``/net/<node id>/gftp/...``).
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from golem_trio.gsb import (
    GFTP_CHUNK_SIZE,
    GftpChunk,
    GftpError,
    GftpIntegrityError,
    GsbBus,
    GsbCallError,
    UploadChunk,
    UploadFinished,
    gftp_deliver,
    gftp_fetch,
    gftp_remote_address,
    gftp_service_id,
    open_gsb,
    parse_gftp_url,
)
from golem_trio.localnet.yagna import YagnaNode
from golem_trio.work import (
    GftpStorage,
    ReceiveFailed,
    TransferCorrupted,
    TransferTooLarge,
    open_gftp_storage,
)

DEADLINE = 60.0


@asynccontextmanager
async def requestor_and_provider(
    node: YagnaNode, *, read_timeout: float = 30.0
) -> AsyncIterator[tuple[GftpStorage, GsbBus]]:
    """A gftp storage for the requestor's node, and a bus connection playing a provider's
    exe-unit (named as the provider, as the backend's exe-units are)."""
    async with (
        open_gftp_storage(node.gsb_url, node.requestor_id, read_timeout=read_timeout) as storage,
        open_gsb(node.gsb_url, name=node.provider_id) as provider,
    ):
        yield storage, provider


async def is_bound(bus: GsbBus, url: str) -> bool:
    """Whether the daemon routes calls to ``url``'s service: asked on ``/public`` (where an
    unbound service is refused with 400) and through ``/net`` as an exe-unit asks (where the
    daemon answers an empty reply instead); both must agree."""
    node, name = parse_gftp_url(url)
    code = 0
    try:
        await bus.call(f"{gftp_service_id(name)}/GetMetadata", {})
    except GsbCallError as exc:
        code = exc.code
    assert code in (0, 400)
    public = code == 0
    through_net = await bus.call(f"{gftp_remote_address(node, name)}/GetMetadata", {})
    assert (through_net is not None) == public
    return public


async def fetch(bus: GsbBus, url: str, **kwargs: int) -> bytes:
    parts: list[bytes] = []

    async def keep(data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        parts.append(data)

    await gftp_fetch(bus, url, keep, **kwargs)
    return b"".join(parts)


def reader(data: bytes) -> object:
    view = memoryview(data)
    offset = 0

    async def read(n: int) -> bytes:
        nonlocal offset
        await trio.lowlevel.checkpoint()
        piece = bytes(view[offset : offset + n])
        offset += len(piece)
        return piece

    return read


async def unbound_soon(bus: GsbBus, url: str) -> bool:
    """Whether ``url``'s service is unbound within 10 s (it may be unbound just after the
    reply that ended its transfer)."""
    with trio.move_on_after(10):
        while True:
            if not await is_bound(bus, url):
                return True
            await trio.sleep(0.02)
    return False


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_on_one_node_the_net_address_of_an_identity_reaches_the_local_service(
    yagna_node: YagnaNode,
) -> None:
    """A provider's exe-unit calls ``/net/<requestor>/gftp/<name>``. With requestor and
    provider as identities of one daemon, the daemon routes that (and ``/transfer/net/...``)
    to the local ``/public/gftp/<name>``; the service sees the daemon's default identity
    (the requestor here) as the caller, whoever sent it."""
    callers: list[str] = []
    name = "routing" + os.urandom(8).hex()

    async def answer(component: str, caller: str, payload: object) -> object:
        await trio.lowlevel.checkpoint()
        callers.append(caller)
        return {"Ok": {"fileSize": 7}}

    with trio.fail_after(DEADLINE):
        async with (
            open_gsb(yagna_node.gsb_url, name="requestor-side") as requestor,
            open_gsb(yagna_node.gsb_url, name=yagna_node.provider_id) as provider,
        ):
            requestor.serve(gftp_service_id(name), answer)
            await requestor.register(gftp_service_id(name))
            for prefix in ("/net", "/transfer/net"):
                address = f"{prefix}/{yagna_node.requestor_id}/gftp/{name}/GetMetadata"
                assert await provider.call(address, {}) == {"Ok": {"fileSize": 7}}
            assert callers == [yagna_node.requestor_id, yagna_node.requestor_id]
            # Unbound, the service is refused on /public (400), but through /net the daemon
            # answers with an empty reply, which the provider's side must treat as a failure.
            await requestor.unregister(gftp_service_id(name))
            with pytest.raises(GsbCallError) as refused:
                await provider.call(f"{gftp_service_id(name)}/GetMetadata", {})
            assert refused.value.code == 400
            address = f"/net/{yagna_node.requestor_id}/gftp/{name}/GetMetadata"
            assert await provider.call(address, {}) is None
            with pytest.raises(GftpError, match="empty reply"):
                await fetch(provider, f"gftp://{yagna_node.requestor_id}/{name}")


async def test_a_published_file_is_served_in_chunks_hash_named_and_unbound_after(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    progress: list[tuple[int, int | None]] = []
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            url = await storage.publish_file(source, progress=lambda d, t: progress.append((d, t)))
            node, name = parse_gftp_url(url)
            assert node == yagna_node.requestor_id
            assert name == hashlib.sha3_256(data).hexdigest()
            assert storage.bound == {gftp_service_id(name)}
            assert await fetch(provider, url) == data
            # Progress: about every MiB, and once at the end with done == total.
            assert progress[-1] == (len(data), len(data))
            assert [d for d, _ in progress] == sorted(d for d, _ in progress)
            assert len(progress) >= 3
            await storage.unpublish(url)
            assert storage.bound == frozenset()
            assert not await is_bound(provider, url)


async def test_the_same_content_is_bound_once_until_both_let_go(yagna_node: YagnaNode) -> None:
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            first = await storage.publish_bytes(b"twice")
            second = await storage.publish_bytes(b"twice")
            assert first == second
            await storage.unpublish(first)
            assert await fetch(provider, second) == b"twice"
            await storage.unpublish(second)
            assert not await is_bound(provider, second)


async def test_a_fetch_checks_the_content_against_the_name(yagna_node: YagnaNode) -> None:
    """A service whose content is not what its name says is caught by the fetch."""
    name = hashlib.sha3_256(b"promised").hexdigest()

    async def lie(component: str, caller: str, payload: object) -> object:
        await trio.lowlevel.checkpoint()
        if component == "GetMetadata":
            return {"Ok": {"fileSize": 8}}
        return {"Ok": GftpChunk(0, b"received").payload()}

    with trio.fail_after(DEADLINE):
        async with (
            open_gsb(yagna_node.gsb_url, name="liar") as liar,
            open_gsb(yagna_node.gsb_url, name=yagna_node.provider_id) as provider,
        ):
            liar.serve(gftp_service_id(name), lie)
            await liar.register(gftp_service_id(name))
            with pytest.raises(GftpIntegrityError):
                await fetch(provider, f"gftp://{yagna_node.requestor_id}/{name}")
            with pytest.raises(GftpError, match="more than the limit"):
                await fetch(provider, f"gftp://{yagna_node.requestor_id}/{name}", max_bytes=7)


async def test_a_delivered_file_is_hash_checked_renamed_into_place_and_unbound(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    data = os.urandom(2 * GFTP_CHUNK_SIZE + 17)
    target = tmp_path / "out" / "result.bin"
    progress: list[tuple[int, int | None]] = []
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            receipt = await storage.receive(
                len(data), path=target, progress=lambda d, t: progress.append((d, t))
            )
            assert len(parse_gftp_url(receipt.url)[1]) == 65
            assert await gftp_deliver(provider, receipt.url, reader(data)) == len(data)  # type: ignore[arg-type]
            assert await receipt.wait() is None
            assert target.read_bytes() == data
            assert receipt.size == len(data)
            assert progress[-1] == (len(data), len(data))
            assert leftovers(target.parent) == ["result.bin"]
            assert await unbound_soon(provider, receipt.url)
            assert storage.bound == frozenset()
            await storage.forget(receipt)
            assert await receipt.wait() is None


async def test_bytes_kept_in_memory(yagna_node: YagnaNode) -> None:
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            receipt = await storage.receive(100)
            await gftp_deliver(provider, receipt.url, reader(b"in memory"))  # type: ignore[arg-type]
            assert await receipt.wait() == b"in memory"
            empty = await storage.receive(0)
            await gftp_deliver(provider, empty.url, reader(b""))  # type: ignore[arg-type]
            assert await empty.wait() == b""


async def test_a_wrong_hash_fails_the_receipt_and_leaves_no_file(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    target = tmp_path / "bad.bin"
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            receipt = await storage.receive(None, path=target)
            _node, name = parse_gftp_url(receipt.url)
            address = gftp_remote_address(yagna_node.requestor_id, name)
            chunk = UploadChunk(GftpChunk(0, b"what was sent"))
            assert await provider.call(f"{address}/UploadChunk", chunk.payload()) == {"Ok": None}
            wrong = UploadFinished(hashlib.sha3_256(b"something else").hexdigest())
            reply = await provider.call(f"{address}/UploadFinished", wrong.payload())
            assert reply == {"Err": "IntegrityError"}
            with pytest.raises(TransferCorrupted):
                await receipt.wait()
            assert leftovers(tmp_path) == []
            assert await unbound_soon(provider, receipt.url)


async def test_past_the_limit_fails_as_too_large_and_keeps_nothing(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    target = tmp_path / "big.bin"
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            receipt = await storage.receive(GFTP_CHUNK_SIZE + 10, path=target)
            with pytest.raises(GftpError, match="WriteError"):
                await gftp_deliver(provider, receipt.url, reader(os.urandom(2 * GFTP_CHUNK_SIZE)))  # type: ignore[arg-type]
            with pytest.raises(TransferTooLarge) as caught:
                await receipt.wait()
            assert caught.value.limit == GFTP_CHUNK_SIZE + 10
            assert leftovers(tmp_path) == []


async def test_one_sender_per_receipt(yagna_node: YagnaNode) -> None:
    """The first caller owns a receipt; another one is refused (called on ``/public``
    directly, where the service sees each connection's own name)."""
    with trio.fail_after(DEADLINE):
        async with (
            requestor_and_provider(yagna_node) as (storage, first),
            open_gsb(yagna_node.gsb_url, name="another-provider") as second,
        ):
            receipt = await storage.receive(100)
            service = gftp_service_id(parse_gftp_url(receipt.url)[1])
            chunk = UploadChunk(GftpChunk(0, b"mine")).payload()
            assert await first.call(f"{service}/UploadChunk", chunk) == {"Ok": None}
            refused = await second.call(f"{service}/UploadChunk", chunk)
            assert refused == {"Err": {"WriteError": "another node is uploading here"}}
            assert not receipt.done


async def test_forget_aborts_an_upload_removes_the_partial_file_and_unbinds(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    target = tmp_path / "partial.bin"
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            receipt = await storage.receive(None, path=target)
            _node, name = parse_gftp_url(receipt.url)
            address = gftp_remote_address(yagna_node.requestor_id, name)
            chunk = UploadChunk(GftpChunk(0, os.urandom(1000))).payload()
            await provider.call(f"{address}/UploadChunk", chunk)
            assert len(leftovers(tmp_path)) == 1  # the partial file, beside the target
            await storage.forget(receipt)
            with pytest.raises(ReceiveFailed, match="aborted"):
                await receipt.wait()
            assert leftovers(tmp_path) == []
            assert storage.bound == frozenset()
            assert not await is_bound(provider, receipt.url)


async def test_a_sender_that_goes_quiet_fails_the_receipt(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    target = tmp_path / "stalled.bin"
    with trio.fail_after(DEADLINE):
        async with requestor_and_provider(yagna_node, read_timeout=0.5) as (storage, provider):
            receipt = await storage.receive(None, path=target)
            _node, name = parse_gftp_url(receipt.url)
            address = gftp_remote_address(yagna_node.requestor_id, name)
            await provider.call(f"{address}/UploadChunk", UploadChunk(GftpChunk(0, b"x")).payload())
            with pytest.raises(ReceiveFailed, match=r"no chunk for 0\.5 s"):
                await receipt.wait()
            assert leftovers(tmp_path) == []
            assert await unbound_soon(provider, receipt.url)


async def test_closing_the_storage_unbinds_everything(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with open_gsb(yagna_node.gsb_url, name=yagna_node.provider_id) as provider:
            async with open_gftp_storage(yagna_node.gsb_url, yagna_node.requestor_id) as storage:
                published = await storage.publish_bytes(b"left behind")
                receipt = await storage.receive(None, path=tmp_path / "never.bin")
                _node, name = parse_gftp_url(receipt.url)
                address = gftp_remote_address(yagna_node.requestor_id, name)
                await provider.call(
                    f"{address}/UploadChunk", UploadChunk(GftpChunk(0, b"x")).payload()
                )
            assert not await is_bound(provider, published)
            assert not await is_bound(provider, receipt.url)
            assert leftovers(tmp_path) == []
            with pytest.raises(ReceiveFailed):
                await receipt.wait()


async def test_fifty_mib_round_trip_in_bounded_memory(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    """50 MiB out and back through the daemon, from and to files: hashes checked on both
    legs, progress reported, and the requestor's side never holds the file in memory."""
    size = 50 * 1024 * 1024
    source, back = tmp_path / "source.bin", tmp_path / "back.bin"
    with source.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    fetched = hashlib.sha3_256()
    served: list[int] = []
    received: list[int] = []
    with trio.fail_after(4 * DEADLINE):
        async with requestor_and_provider(yagna_node) as (storage, provider):
            tracemalloc.start()
            try:
                url = await storage.publish_file(source, progress=lambda d, t: served.append(d))

                async def digest(data: bytes) -> None:
                    await trio.lowlevel.checkpoint()
                    fetched.update(data)

                assert await gftp_fetch(provider, url, digest) == size
                receipt = await storage.receive(
                    size, path=back, progress=lambda d, t: received.append(d)
                )
                with source.open("rb") as file:

                    async def read(n: int) -> bytes:
                        return await trio.to_thread.run_sync(file.read, n)

                    await gftp_deliver(provider, receipt.url, read)
                await receipt.wait()
                _current, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            await storage.unpublish(url)
            await storage.forget(receipt)
    assert fetched.hexdigest() == parse_gftp_url(url)[1]
    assert hashlib.sha3_256(back.read_bytes()).hexdigest() == fetched.hexdigest()
    assert served[-1] == size
    assert len(served) >= 50
    assert received[-1] == size
    assert len(received) >= 50
    # Both legs together stay far below the file's size (the test's own reads included).
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"
