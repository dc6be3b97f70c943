"""File transfer throughput: gftp over a real yagna daemon's service bus against loopback HTTP.

A real daemon (PyPI ``golem-node``) is started offline on loopback. This process plays the
requestor: it offers a file (an upload, which the provider fetches) and opens a receipt (a
download, into which the provider sends the file back), first with :class:`GftpStorage` on
the daemon's bus, then with :class:`HttpStorage`. A child process plays the provider's
exe-unit: ``gftp_fetch``/``gftp_deliver`` through ``/net/<node id>/gftp/...`` (as a real
exe-unit calls), or an HTTP ``GET``/``PUT``. So ``time.process_time()`` of this process is
the requestor's CPU alone. Every transfer is checked against the file's SHA3-256. Prints a
Markdown table.

    .venv/bin/python benchmarks/bench_transfers.py [--mib 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
import trio

from golem_trio.gsb import gftp_deliver, gftp_fetch, open_gsb
from golem_trio.localnet.yagna import YagnaNode
from golem_trio.work import open_gftp_storage, open_http_storage

MIB = 1024 * 1024
BLOCK = MIB


# --- the provider's side (a child process) --------------------------------------------------


async def provider(
    kind: str, direction: str, url: str, path: Path, gsb_url: str, name: str
) -> None:
    """Fetch ``url`` into ``path`` (``up``: the requestor's upload) or send ``path`` to
    ``url`` (``down``: the requestor's download), over ``kind`` (gftp or http)."""
    if kind == "gftp":
        async with open_gsb(gsb_url, name=name) as bus:
            if direction == "up":
                async with await trio.open_file(path, "wb") as out:
                    await gftp_fetch(bus, url, out.write)
            else:
                async with await trio.open_file(path, "rb") as source:
                    await gftp_deliver(bus, url, source.read)
        return
    async with httpx2.AsyncClient(trust_env=False, timeout=120) as client:
        if direction == "up":
            async with (
                client.stream("GET", url) as response,
                await trio.open_file(path, "wb") as out,
            ):
                response.raise_for_status()
                async for chunk in response.aiter_bytes():
                    await out.write(chunk)
        else:
            size = (await trio.Path(path).stat()).st_size
            async with await trio.open_file(path, "rb") as source:

                async def body() -> object:
                    while block := await source.read(BLOCK):
                        yield block

                response = await client.put(
                    url, content=body(), headers={"Content-Length": str(size)}
                )
                response.raise_for_status()


# --- the requestor's side -------------------------------------------------------------------


def make_file(path: Path, mib: int) -> str:
    digest = hashlib.sha3_256()
    with path.open("wb") as out:
        for _ in range(mib):
            block = os.urandom(BLOCK)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha3_of(path: Path) -> str:
    digest = hashlib.sha3_256()
    with path.open("rb") as file:
        while block := file.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


async def run_provider(kind: str, direction: str, url: str, path: Path, node: YagnaNode) -> None:
    command = [
        sys.executable,
        __file__,
        "--provider",
        kind,
        direction,
        url,
        str(path),
        node.gsb_url,
        node.provider_id,
    ]
    result = await trio.run_process(command, capture_stderr=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the provider failed: {result.stderr.decode()[-2000:]}")


async def measure(action: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds of ``action``."""
    wall, cpu = time.perf_counter(), time.process_time()
    await action()
    return time.perf_counter() - wall, time.process_time() - cpu


async def bench(node: YagnaNode, folder: Path, mib: int, rounds: int) -> list[tuple[str, ...]]:
    source = folder / "source.bin"
    expected = await trio.to_thread.run_sync(make_file, source, mib)
    rows: list[tuple[str, ...]] = []
    for kind in ("gftp", "http"):
        for direction in ("up", "down"):
            walls: list[float] = []
            cpus: list[float] = []
            for round_ in range(rounds):
                fetched = folder / f"{kind}-{direction}-{round_}.bin"
                if kind == "gftp":
                    storage_cm = open_gftp_storage(node.gsb_url, node.requestor_id)
                else:
                    storage_cm = open_http_storage()
                async with storage_cm as storage:
                    if direction == "up":
                        if kind == "gftp":
                            url = await storage.publish_file(source)  # type: ignore[union-attr, misc]
                        else:
                            url = storage.publish_file(source)  # type: ignore[assignment]
                        wall, cpu = await measure(
                            lambda: run_provider(kind, "up", url, fetched, node)  # noqa: B023
                        )
                        check = fetched
                    else:
                        if kind == "gftp":
                            receipt = await storage.receive(None, path=fetched)  # type: ignore[union-attr, misc]
                        else:
                            receipt = storage.receive(None, path=fetched)  # type: ignore[assignment]

                        async def download() -> None:
                            await run_provider(kind, "down", receipt.url, source, node)  # noqa: B023
                            await receipt.wait()  # noqa: B023

                        wall, cpu = await measure(download)
                        check = fetched
                got = await trio.to_thread.run_sync(sha3_of, check)
                if got != expected:
                    raise RuntimeError(f"{kind} {direction}: the content does not match")
                walls.append(wall)
                cpus.append(cpu)
                check.unlink()
            best = min(walls)
            rows.append(
                (
                    kind,
                    "upload (provider fetches)"
                    if direction == "up"
                    else "download (provider sends)",
                    f"{mib}",
                    f"{mib / best:.1f}",
                    f"{1000 * min(cpus) / mib:.2f}",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=50, help="file size in MiB (default 50)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, best kept")
    parser.add_argument("--provider", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.provider:
        kind, direction, url, path, gsb_url, name = args.provider
        trio.run(provider, kind, direction, url, Path(path), gsb_url, name)
        return
    with tempfile.TemporaryDirectory(prefix="bench-transfers-") as tmp, YagnaNode.start() as node:
        rows = trio.run(bench, node, Path(tmp), args.mib, args.rounds)
    print(f"File transfers of {args.mib} MiB on this machine (best of {args.rounds}):\n")
    print("| transfer | direction | MiB | MiB/s | requestor CPU ms per MiB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
