#!/usr/bin/env python3
"""Golem services inside a Trio web server: one trio run holds the HTTP server (hypercorn's
trio worker with a starlette app) and the engine, which scales a cluster on request.

    python examples/scaling_server.py --port 8080
    curl localhost:8080/status
    curl -X POST localhost:8080/scale/3
    curl -X POST localhost:8080/scale/1

The server owns SIGINT/SIGTERM (``Golem(handle_signals=False)``): on a signal it stops
serving, stops the cluster (every agreement terminated, every invoice paid) and exits.
Without ``YAGNA_APPKEY`` the engine runs on the embedded LocalNet.
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from golem_trio import BatchError, Cluster, Golem, Service, enable_default_logger
from golem_trio.market import vm


class DateService(Service):
    """Each instance keeps the provider's date in a file and reads it back on request."""

    @staticmethod
    async def get_payload() -> Any:
        return await vm.repo(image_hash="d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376")

    async def start(self) -> None:
        script = self._ctx.new_script()
        script.deploy()
        script.start()
        script.run("/bin/sh", "-c", "while true; do date > /golem/work/date; sleep 1; done &")
        await script

    async def date(self) -> str | None:
        script = self._ctx.new_script(timeout=30)
        read = script.run("/bin/cat", "/golem/work/date")
        await script
        return (await read).stdout


def make_app(cluster: Cluster[DateService]) -> Starlette:
    async def status(request: Request) -> JSONResponse:
        await trio.lowlevel.checkpoint()
        return JSONResponse(
            {
                "states": {state.value: n for state, n in cluster.states().items()},
                "instances": [
                    {
                        "id": service.id,
                        "state": service.state.value,
                        "provider": service.provider_name,
                        "stop_reason": str(service.stop_reason) if service.stop_reason else None,
                    }
                    for service in cluster.instances
                ],
            }
        )

    async def scale(request: Request) -> JSONResponse:
        n = int(request.path_params["n"])
        if not 0 <= n <= 10:
            return JSONResponse({"error": "n must be between 0 and 10"}, status_code=400)
        await cluster.scale(n)  # returns once the surplus is stopped; new ones come up later
        return JSONResponse({"live": len(cluster.live_instances)})

    async def dates(request: Request) -> JSONResponse:
        running = [s for s in cluster.live_instances if s.state.value == "running"]
        results: dict[str, str | None] = {}
        for service in running:
            try:
                date = await service.date()
            except BatchError:  # it stopped meanwhile
                date = None
            results[service.provider_name or service.id] = date.strip() if date else None
        return JSONResponse(results)

    return Starlette(
        routes=[
            Route("/status", status),
            Route("/scale/{n:int}", scale, methods=["POST"]),
            Route("/dates", dates),
        ]
    )


async def main(port: int) -> None:
    async with Golem(budget=1.0, handle_signals=False) as golem:
        cluster = await golem.run_service(
            DateService, num_instances=1, expiration=datetime.now(UTC) + timedelta(minutes=30)
        )
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        stopping = trio.Event()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(
                    lambda task_status: serve(
                        make_app(cluster),
                        config,
                        shutdown_trigger=stopping.wait,
                        task_status=task_status,
                    )
                )
                print(f"serving on {binds[0]}", flush=True)
                async for signum in signals:
                    print(f"{signal.Signals(signum).name}: stopping", flush=True)
                    stopping.set()
                    break
        await cluster.stop()
        print("cluster stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    enable_default_logger()
    trio.run(main, args.port)
    sys.exit(0)
