"""The transfer storage over real loopback sockets, driven with plain HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import pytest
import trio

from golem_trio.work import ReceiveFailed, open_http_storage


async def test_published_bytes_and_files_are_served(tmp_path: Path) -> None:
    file = tmp_path / "input.txt"
    file.write_bytes(b"file content\n")
    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        assert storage.base_url.startswith("http://127.0.0.1:")
        blob_url = storage.publish_bytes(b"\x00\x01blob")
        file_url = storage.publish_file(file)
        assert blob_url != file_url
        assert len(blob_url.rsplit("/", 1)[1]) >= 40
        with trio.fail_after(10):
            assert (await client.get(blob_url)).content == b"\x00\x01blob"
            assert (await client.get(file_url)).content == b"file content\n"
            storage.unpublish(blob_url)
            assert (await client.get(blob_url)).status_code == 404


async def test_unknown_tokens_are_not_found() -> None:
    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        with trio.fail_after(10):
            assert (await client.get(f"{storage.base_url}/nope")).status_code == 404
            reply = await client.put(f"{storage.base_url}/nope", content=b"x")
            assert reply.status_code == 404
            # A receipt's URL cannot be fetched, and a published one cannot be written.
            receipt = storage.receive(10)
            assert (await client.get(receipt.url)).status_code == 404
            url = storage.publish_bytes(b"x")
            assert (await client.put(url, content=b"y")).status_code == 404


async def test_a_put_is_received_into_memory_once() -> None:
    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        receipt = storage.receive(100)
        assert not receipt.done
        with trio.fail_after(10):
            reply = await client.put(receipt.url, content=b"result bytes")
            assert reply.status_code in (200, 204)
            assert await receipt.wait() == b"result bytes"
            assert (await client.put(receipt.url, content=b"again")).status_code == 409
            storage.forget(receipt)
            assert (await client.put(receipt.url, content=b"x")).status_code == 404


async def test_a_put_is_streamed_into_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.bin"
    payload = bytes(range(256)) * 1000

    async def chunks() -> object:
        for start in range(0, len(payload), 4096):
            await trio.lowlevel.checkpoint()
            yield payload[start : start + 4096]

    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        receipt = storage.receive(path=target)
        with trio.fail_after(10):
            reply = await client.put(receipt.url, content=chunks())  # type: ignore[arg-type]
            assert reply.status_code in (200, 204)
            assert await receipt.wait() is None
    assert target.read_bytes() == payload
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.bin"]


@pytest.mark.parametrize("declared", [True, False])
async def test_the_limit_is_enforced(tmp_path: Path, declared: bool) -> None:
    async def body() -> object:
        await trio.lowlevel.checkpoint()
        yield b"x" * 60
        yield b"x" * 60

    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        receipt = storage.receive(100)
        to_file = storage.receive(100, path=tmp_path / "big")
        with trio.fail_after(10):
            for target in (receipt, to_file):
                content = b"x" * 120 if declared else body()
                reply = await client.put(target.url, content=content)  # type: ignore[arg-type]
                assert reply.status_code == 413
                with pytest.raises(ReceiveFailed, match="limit of 100"):
                    await target.wait()
            exact = storage.receive(3)
            assert (await client.put(exact.url, content=b"abc")).status_code in (200, 204)
            assert await exact.wait() == b"abc"
    assert await trio.to_thread.run_sync(os.listdir, tmp_path) == []


async def test_the_server_stops_with_the_block() -> None:
    async with open_http_storage() as storage:
        url = storage.publish_bytes(b"x")
    async with httpx2.AsyncClient(trust_env=False) as client:
        with trio.fail_after(10), pytest.raises(httpx2.ConnectError):
            await client.get(url)
