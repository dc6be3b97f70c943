#!/usr/bin/env python3
"""HTTP servers on a VPN, behind a local HTTP proxy.

Three instances of a tiny HTTP server (``image/run/http_server.py``, standard library only)
join one VPN network; ``LocalHttpProxy`` serves a local port and forwards each request to a
running instance, in turn. Each instance answers with its identity, so consecutive requests
show the three of them; when an instance stops, the others answer until it is replaced.

With no ``YAGNA_APPKEY`` set, it runs on the embedded LocalNet, whose local runtime serves
the image folder for its image hash.

    python examples/http_service/http_service.py --port 8080 --running-time 60
    curl http://127.0.0.1:8080/
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import trio

from golem_trio import (
    Cluster,
    Golem,
    LocalHttpProxy,
    Restart,
    RestartPolicy,
    Service,
    log_summary,
)
from golem_trio.market import Payload, vm

#: The image this service runs (``image/golem-image.json`` stands for it).
IMAGE_HASH = "cbc5077f936f1a0789d40693b96fa1148b1aed33345a1ffe344adbdc"
SERVER = "/golem/run/http_server.py"


class HttpService(Service):
    """One HTTP server; ``name`` is how it introduces itself."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @staticmethod
    async def get_payload() -> Payload:
        return await vm.repo(image_hash=IMAGE_HASH, capabilities=[vm.VM_CAPS_VPN])

    async def start(self):
        # Deploy (with the network's configuration) and start, then the server.
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        script.run(SERVER, "--detach", "--name", self.name, "--provider", self.provider_name or "")
        yield script


@contextlib.asynccontextmanager
async def http_cluster(
    golem: Golem, *, instances: int = 3, port: int = 0, start_within: float = 120.0
) -> AsyncIterator[tuple[Cluster[HttpService], LocalHttpProxy]]:
    """A network, ``instances`` HTTP servers on it (restarted elsewhere when they fail) and
    a proxy on ``port`` (0: any free one), all running; everything stops at the block's end."""
    async with await golem.create_network("192.168.0.0/24") as network:
        cluster = await golem.run_service(
            HttpService,
            instance_params=[{"name": f"http-{i}"} for i in range(instances)],
            network=network,
            expiration=datetime.now(UTC) + timedelta(minutes=30),
            restart=RestartPolicy(Restart.ON_FAILURE, max_restarts=10, backoff=0.5),
        )
        try:
            with trio.fail_after(start_within):
                await cluster.wait_running()
            async with LocalHttpProxy(cluster, port) as proxy:
                yield cluster, proxy
        finally:
            await cluster.stop()


async def main(port: int, running_time: float) -> None:
    async with Golem(budget=1.0, event_consumer=log_summary()) as golem:
        async with http_cluster(golem, port=port) as (cluster, proxy):
            for service in cluster.instances:
                node = service.network_node
                print(f"{service.name}: {node.ip if node else '?'} on {service.provider_name}")
            print(f"serving http://127.0.0.1:{proxy.port}/ for {running_time:.0f} s", flush=True)
            await trio.sleep(running_time)
            print(f"proxy: {proxy.stats}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="HTTP servers on a VPN behind a local proxy")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--running-time", type=float, default=60.0)
    options = parser.parse_args()
    try:
        trio.run(main, options.port, options.running_time)
    except KeyboardInterrupt:
        sys.exit(130)
