"""Requests per second and latency through ``LocalHttpProxy`` on LocalNet.

Three instances of the HTTP service example (``examples/http_service``) run in bubblewrap
sandboxes on a served LocalNet; the proxy forwards each request through LocalNet's TCP
websocket to one of them, in turn. Clients send ``GET`` requests (one connection each, as the
proxy closes every connection after its response) at several concurrency levels; the same
load sent straight to one sandbox's loopback port is the baseline without the proxy and the
websocket. Prints a Markdown table.

    .venv/bin/python benchmarks/bench_http_proxy.py [--seconds 5] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import trio

from golem_trio import Golem
from golem_trio.localnet import (
    ImageStore,
    ProviderPopulation,
    discover_images,
    local_runtime_factory,
    open_localnet,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "http_service"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_service", EXAMPLE / "http_service.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def get(port: int) -> float:
    """One ``GET /`` on a fresh connection; its latency in seconds (raises on a bad answer)."""
    started = time.perf_counter()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        answer = bytearray()
        # Both the proxy and the server close the connection after the response.
        while chunk := await stream.receive_some(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/1.") or b" 200 " not in answer[:16]:
        raise RuntimeError(f"bad answer: {bytes(answer[:80])!r}")
    return time.perf_counter() - started


async def load(port: int, concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = trio.current_time() + seconds

    async def client() -> None:
        while trio.current_time() < deadline:
            latencies.append(await get(port))

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(client)
    return latencies


def row(target: str, concurrency: int, latencies: list[float], seconds: float) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    rate = len(ordered) / seconds
    return f"| {target} | {concurrency} | {len(ordered)} | {rate:.0f} | {p50:.1f} | {p99:.1f} |"


async def main(seconds: float, levels: Sequence[int]) -> None:
    example = load_example()
    store = ImageStore()
    await trio.to_thread.run_sync(discover_images, store, [EXAMPLE])
    population = ProviderPopulation(count=4, seed=1)
    rows = []
    async with open_localnet(population, runtime=local_runtime_factory(store), serve=True) as net:
        async with Golem(budget=5.0, localnet=net, handle_signals=False) as golem:
            async with example.http_cluster(golem, instances=3) as (cluster, proxy):
                first = cluster.instances[0].instance.activity_id
                runtime = net.activity.activities[first].runtime
                direct = runtime.vpn_endpoint(80)[1]
                await load(proxy.port, 2, 0.5)  # warm up
                for concurrency in levels:
                    latencies = await load(proxy.port, concurrency, seconds)
                    rows.append(
                        row("LocalHttpProxy (3 instances)", concurrency, latencies, seconds)
                    )
                for concurrency in levels:
                    latencies = await load(direct, concurrency, seconds)
                    rows.append(row("one sandbox, direct", concurrency, latencies, seconds))
                stats = proxy.stats
    print(f"{seconds:.0f} s per row; every request on a connection of its own\n")
    print("| target | concurrency | requests | requests/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print(f"\nproxy: {stats}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    options = parser.parse_args()
    trio.run(main, options.seconds, options.concurrency)
    sys.exit(0)
