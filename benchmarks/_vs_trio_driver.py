"""The golem-trio side of ``bench_vs_yapapi.py``: N idle service instances (deploy, start,
one ``echo``, then ``run`` idles) against the daemon of ``YAGNA_API_URL`` / ``YAGNA_APPKEY``;
prints JSON lines (``_vs_common.emit``) at each step: engine started, all running, the idle
window, stop asked, engine exited.

    .venv/bin/python benchmarks/_vs_trio_driver.py N IDLE_SECONDS
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio
from _vs_common import emit

from golem_trio import Golem, Service, vm

#: The budget (GLM): the benchmark sets a small one for real daemons, funded on a local chain.
BUDGET = float(os.environ.get("BENCH_BUDGET", 10**6))
RUNNING_TIMEOUT = 1200.0


class IdleService(Service):
    @staticmethod
    async def get_payload() -> Any:
        return await vm.repo(
            # A loopback url given with the hash, as the yapapi driver's: no registry lookup.
            image_hash="0" * 56,
            image_url="http://127.0.0.1:9/localnet-bench-image.gvmi",
            min_mem_gib=0.5,
            min_storage_gib=2.0,
        )

    async def run(self) -> Any:
        script = self._ctx.new_script()
        script.run("/bin/echo", "idle")
        yield script
        await trio.sleep_forever()


async def main(n: int, idle: float) -> None:
    emit("begin")
    async with Golem(budget=BUDGET, handle_signals=False) as golem:
        emit("engine_started")
        cluster = await golem.run_service(IdleService, num_instances=n)
        with trio.fail_after(RUNNING_TIMEOUT):
            await cluster.wait_running(n)
        emit("running", n=n)
        await trio.sleep(2.0)  # the echoes end
        emit("idle_start")
        await trio.sleep(idle)
        emit("idle_end")
        emit("stop")
        await cluster.stop()
        emit("stopped")
    emit("exit")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), float(sys.argv[2]))
