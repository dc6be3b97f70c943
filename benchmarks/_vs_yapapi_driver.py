"""The yapapi side of ``bench_vs_yapapi.py``, run in yapapi's own virtualenv: N idle
service instances (deploy, start, one ``echo``, then ``run`` idles) against the daemon of
``YAGNA_API_URL`` / ``YAGNA_APPKEY``; prints the same JSON lines as ``_vs_trio_driver.py``.

    <yapapi venv>/bin/python benchmarks/_vs_yapapi_driver.py N IDLE_SECONDS
"""

import asyncio
import os
import sys
from dataclasses import dataclass

from _vs_common import emit
from yapapi import Golem
from yapapi.payload import Payload
from yapapi.props.base import constraint, prop
from yapapi.services import Service, ServiceState

#: The budget (GLM): the benchmark sets a small one for real daemons, funded on a local chain.
BUDGET = float(os.environ.get("BENCH_BUDGET", 10**6))
RUNNING_TIMEOUT = 1200.0


@dataclass
class LocalVmPayload(Payload):
    """A VM payload with explicit properties, so nothing is looked up in an image repository."""

    runtime: str = constraint("golem.runtime.name", default="vm")
    min_mem_gib: float = constraint("golem.inf.mem.gib", operator=">=", default=0.5)
    min_storage_gib: float = constraint("golem.inf.storage.gib", operator=">=", default=2.0)
    package_url: str = prop(
        "golem.srv.comp.task_package",
        default="hash:sha3:" + "0" * 56 + ":http://127.0.0.1:9/localnet-bench-image.gvmi",
    )
    package_format: str = prop("golem.srv.comp.vm.package_format", default="gvmkit-squash")


class IdleService(Service):
    @staticmethod
    async def get_payload():
        return LocalVmPayload()

    async def run(self):
        script = self._ctx.new_script()
        script.run("/bin/echo", "idle")
        yield script
        await asyncio.Future()  # idle until stopped


async def main(n: int, idle: float) -> None:
    emit("begin")
    async with Golem(
        budget=BUDGET, subnet_tag="public", payment_driver="erc20", payment_network="holesky"
    ) as golem:
        emit("engine_started")
        cluster = await golem.run_service(IdleService, num_instances=n)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RUNNING_TIMEOUT
        while sum(i.state == ServiceState.running for i in cluster.instances) < n:
            if loop.time() > deadline:
                raise TimeoutError(f"not all {n} instances running")
            await asyncio.sleep(0.05)
        emit("running", n=n)
        await asyncio.sleep(2.0)  # the echoes end
        emit("idle_start")
        await asyncio.sleep(idle)
        emit("idle_end")
        emit("stop")
        cluster.stop()
        emit("stopped")
    emit("exit")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
