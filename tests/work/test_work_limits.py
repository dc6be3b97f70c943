"""Limits of transfers and streams: a download's size cap (a typed error, no partial file),
a bounded stream output, one PUT per download URL, ``forget()`` aborting a PUT in flight, a
read timeout, and one log line for a client that disconnects."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
import trio
from _work_support import open_work

from golem_trio.localnet.providers import (
    CommandOutcome,
    RuntimeContext,
    RuntimeFailure,
    ScriptedRuntime,
)
from golem_trio.work import (
    DEFAULT_FILE_DOWNLOAD_LIMIT,
    STREAM_OUTPUT_LIMIT,
    CommandExecutionError,
    CommandNotRun,
    DownloadTooLarge,
    ReceiveFailed,
    Script,
    TransferTooLarge,
    WorkContext,
    open_http_storage,
)
from golem_trio.work._script import _StreamFollower
from golem_trio.yagna import RuntimeEvent, StdErr, StdOut

# --- download_file's size limit -------------------------------------------------------------


class PuttingRuntime(ScriptedRuntime):
    """A scripted runtime whose downloads PUT ``size`` bytes to the destination URL, as an
    exe-unit does (a refused PUT fails the command)."""

    def __init__(self, size: int, chunked: bool) -> None:
        super().__init__()
        self.size = size
        self.chunked = chunked

    async def transfer(self, source: str, destination: str) -> CommandOutcome:
        if not destination.startswith("http"):
            return await super().transfer(source, destination)
        body = b"x" * self.size

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1000):
                await trio.sleep(0.01)
                yield body[start : start + 1000]

        async with httpx2.AsyncClient(trust_env=False) as client:
            try:
                reply = await client.put(destination, content=chunks() if self.chunked else body)
            except httpx2.HTTPError as exc:  # the storage may answer before the body is sent
                raise RuntimeFailure(f"PUT failed: {exc}") from exc
        if reply.status_code >= 400:
            raise RuntimeFailure(f"PUT {reply.status_code}: {reply.text.strip()}")
        return CommandOutcome()


def putting(size: int, *, chunked: bool = False) -> Any:
    def make(context: RuntimeContext) -> PuttingRuntime:
        return PuttingRuntime(size, chunked)

    return make


async def ready(ctx: WorkContext) -> None:
    script = ctx.new_script()
    script.deploy()
    script.start()
    await script


def test_download_file_has_a_documented_default_limit() -> None:
    assert DEFAULT_FILE_DOWNLOAD_LIMIT == 1024**3
    default = inspect.signature(Script.download_file).parameters["limit"].default
    assert default == DEFAULT_FILE_DOWNLOAD_LIMIT


async def test_a_download_over_its_limit_is_a_typed_error_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out" / "big.bin"
    async with open_http_storage() as storage, open_work(putting(5000), storage=storage) as work:
        with trio.fail_after(30):
            await ready(work.ctx)
            script = work.ctx.new_script()
            handle = script.download_file("/golem/output/big.bin", target, limit=1000)
            after = script.run("/bin/echo", "never")
            with pytest.raises(DownloadTooLarge) as caught:
                await script
            assert isinstance(caught.value, CommandExecutionError)
            assert caught.value.limit == 1000
            assert "limit of 1000 bytes" in str(caught.value)
            with pytest.raises(DownloadTooLarge):
                await handle
            with pytest.raises(CommandNotRun):
                await after
            # Within its limit, the same download lands.
            fits = work.ctx.new_script()
            fits.download_file("/golem/output/big.bin", target, limit=5000)
            await fits
    assert target.read_bytes() == b"x" * 5000
    assert os.listdir(target.parent) == ["big.bin"]


async def test_a_refused_streamed_download_leaves_nothing_behind(tmp_path: Path) -> None:
    """Without a declared length the file is refused part way, once it passed the limit."""
    target = tmp_path / "out" / "big.bin"
    runtime = putting(5000, chunked=True)
    async with open_http_storage() as storage, open_work(runtime, storage=storage) as work:
        with trio.fail_after(30):
            await ready(work.ctx)
            script = work.ctx.new_script()
            script.download_file("/golem/output/big.bin", target, limit=2500)
            with pytest.raises(DownloadTooLarge):
                await script
    assert os.listdir(target.parent) == []  # no file, no partial file either


# --- the stream's output is bounded ---------------------------------------------------------


def fake_target(events: list[RuntimeEvent]) -> Any:
    """A script target whose daemon streams ``events`` for any batch."""

    class Stream:
        def __init__(self) -> None:
            self._events = iter(events)

        def __aiter__(self) -> Stream:
            return self

        async def __anext__(self) -> RuntimeEvent:
            await trio.lowlevel.checkpoint()
            try:
                return next(self._events)
            except StopIteration:
                raise StopAsyncIteration from None

    @contextlib.asynccontextmanager
    async def open_exec_stream(activity_id: str, batch_id: str) -> AsyncIterator[Stream]:
        await trio.lowlevel.checkpoint()
        yield Stream()

    activity = SimpleNamespace(open_exec_stream=open_exec_stream)
    return SimpleNamespace(
        ctx=SimpleNamespace(
            yagna=SimpleNamespace(activity=activity), activity_id="a1", agreement_id="g1"
        )
    )


def chunk(index: int, text: str, *, stderr: bool = False) -> RuntimeEvent:
    kind = StdErr(text) if stderr else StdOut(text)
    return RuntimeEvent("b1", index, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), kind)


async def test_stream_output_keeps_the_newest_within_the_cap() -> None:
    assert STREAM_OUTPUT_LIMIT == 1024 * 1024
    piece = 1000
    count = 3 * STREAM_OUTPUT_LIMIT // piece  # three times the cap
    events = [chunk(0, f"{i:09d}" + "." * (piece - 9)) for i in range(count)]
    events.append(chunk(0, "err", stderr=True))
    follower = _StreamFollower()
    with trio.fail_after(60):
        await follower.run(fake_target(events), "b1")
    out = follower.output(0)
    assert out is not None
    assert len(out) == STREAM_OUTPUT_LIMIT
    # The newest kept, the oldest dropped.
    assert out.endswith(f"{count - 1:09d}" + "." * (piece - 9))
    assert sum(len(c) for c in follower.stdout[0]) == STREAM_OUTPUT_LIMIT
    assert follower.output(0, stderr=True) == "err"


async def test_a_stream_cap_can_be_set_and_cuts_inside_a_chunk() -> None:
    follower = _StreamFollower(limit=10)
    events = [chunk(2, "abcdef"), chunk(2, "ghijkl"), chunk(2, "mn")]
    await follower.run(fake_target(events), "b1")
    assert follower.output(2) == "efghijklmn"


# --- the storage: one PUT per URL, forget() aborts, read timeout, disconnects ---------------


async def slow_body(first: bytes, then_wait: float, rest: bytes = b"") -> AsyncIterator[bytes]:
    yield first
    await trio.sleep(then_wait)
    if rest:
        yield rest


async def test_a_second_put_to_a_download_url_gets_409_while_the_first_runs() -> None:
    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        receipt = storage.receive(100)
        replies: dict[str, int] = {}

        async def first() -> None:
            reply = await client.put(receipt.url, content=slow_body(b"first ", 1.0, b"body"))
            replies["first"] = reply.status_code

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                await trio.sleep(0.3)  # the first PUT has started and is still sending
                second = await client.put(receipt.url, content=b"second body")
                replies["second"] = second.status_code
            assert replies == {"first": 204, "second": 409}
            assert await receipt.wait() == b"first body"


async def wait_for_partial_file(folder: Path) -> None:
    """Until the storage has started writing a download there."""

    def partial() -> bool:
        return folder.is_dir() and any(folder.glob(".*.part"))

    for _ in range(200):
        if await trio.to_thread.run_sync(partial):
            return
        await trio.sleep(0.05)
    raise AssertionError("the PUT did not start")


async def test_forget_aborts_a_put_in_flight_and_removes_its_partial_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out" / "file.bin"
    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        receipt = storage.receive(path=target)
        outcome: list[object] = []

        async def put() -> None:
            try:
                reply = await client.put(receipt.url, content=slow_body(b"x" * 100, 30, b"y"))
                outcome.append(reply.status_code)
            except httpx2.HTTPError as exc:
                outcome.append(exc)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(put)
                await wait_for_partial_file(target.parent)
                storage.forget(receipt)
                with pytest.raises(ReceiveFailed, match="aborted"):
                    await receipt.wait()
                await trio.sleep(0.5)  # the server's side of the PUT has ended
                nursery.cancel_scope.cancel()
    assert not target.exists()
    assert os.listdir(target.parent) == []


async def test_a_stalled_put_is_given_up_after_the_read_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="golem_trio.work.storage")
    target = tmp_path / "stalled.bin"
    async with open_http_storage(read_timeout=0.5) as storage:
        assert storage.read_timeout == 0.5
        receipt = storage.receive(path=target)
        async with httpx2.AsyncClient(trust_env=False) as client, trio.open_nursery() as nursery:

            async def put() -> None:
                with contextlib.suppress(httpx2.HTTPError):
                    await client.put(receipt.url, content=slow_body(b"x", 30, b"y"))

            nursery.start_soon(put)
            with trio.fail_after(5):
                with pytest.raises(ReceiveFailed, match=r"no bytes for 0\.5 s"):
                    await receipt.wait()
            nursery.cancel_scope.cancel()
    assert not target.exists()
    assert os.listdir(tmp_path) == []
    lines = [r for r in caplog.records if r.name == "golem_trio.work.storage"]
    assert [r.levelno for r in lines if r.levelno >= logging.WARNING] == [logging.WARNING]
    assert all(r.exc_info is None for r in lines)


async def test_a_client_that_disconnects_is_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_http_storage() as storage:
        for receipt in (storage.receive(1000), storage.receive(path=tmp_path / "f.bin")):
            host_port = storage.base_url.removeprefix("http://")
            host, port = host_port.rsplit(":", 1)
            path = receipt.url.removeprefix(storage.base_url)
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with sock:
                await sock.connect((host, int(port)))
                head = f"PUT {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Length: 1000\r\n\r\n"
                await sock.send(head.encode() + b"only ten b")
                await trio.sleep(0.2)
            with trio.fail_after(5), pytest.raises(ReceiveFailed, match="disconnected"):
                await receipt.wait()
        await trio.sleep(0.2)
    assert os.listdir(tmp_path) == []
    mine = [r for r in caplog.records if r.name.startswith("golem_trio")]
    assert [r.getMessage() for r in mine if r.levelno >= logging.WARNING] == [
        f"a transfer to {storage.base_url} broke off: the client disconnected"
    ] * 2
    assert all(r.exc_info is None for r in caplog.records), "a traceback was logged"


async def test_a_put_over_the_limit_is_a_typed_error() -> None:
    async with open_http_storage() as storage, httpx2.AsyncClient(trust_env=False) as client:
        receipt = storage.receive(4)
        with trio.fail_after(10):
            assert (await client.put(receipt.url, content=b"12345")).status_code == 413
            with pytest.raises(TransferTooLarge) as caught:
                await receipt.wait()
    assert caught.value.limit == 4
