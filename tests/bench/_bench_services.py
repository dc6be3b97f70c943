"""A user's own service, named in a scenario as ``_bench_services:Ticker``."""

from __future__ import annotations

from typing import Any

import trio

from golem_trio import Service, vm


class Ticker(Service):
    @staticmethod
    async def get_payload() -> Any:
        return await vm.repo(image_hash="8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488")

    async def run(self) -> None:
        while True:
            self._ctx.run("/bin/sh", "-c", "echo tick && sleep 1")
            await self._ctx.commit()
            await trio.sleep(10)


NOT_A_SERVICE = object()
