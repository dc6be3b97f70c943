"""The built-in services a scenario may name: ``idle`` and ``echo``."""

from __future__ import annotations

import trio

from golem_trio.market import Payload, vm
from golem_trio.services import Service

__all__ = ["BENCH_IMAGE", "EchoService", "IdleService"]

#: The image the built-in services ask for (LocalNet's runtimes run any image).
BENCH_IMAGE = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


class IdleService(Service):
    """Deployed and started by the default ``start``; ``run`` only waits."""

    @staticmethod
    async def get_payload() -> Payload | None:
        return await vm.repo(image_hash=BENCH_IMAGE, min_mem_gib=0.5, min_storage_gib=2.0)

    async def run(self) -> None:
        await trio.sleep_forever()


class EchoService(IdleService):
    """Runs ``/bin/echo`` every ``every`` seconds: a command failure stops the instance."""

    def __init__(self, every: float = 30.0) -> None:
        super().__init__()
        self.every = every

    async def run(self) -> None:
        while True:
            await trio.sleep(self.every)
            self._ctx.run("/bin/echo", "alive")
            await self._ctx.commit()
