#!/usr/bin/env python3
"""The smallest service: ``start`` launches a loop that writes the date to a file every
second, and ``run`` reads the file back every few seconds.

    python examples/hello_service.py
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import trio

from golem_trio import Golem, Service, enable_default_logger
from golem_trio.market import vm

DATE_OUTPUT_PATH = "/golem/work/date.txt"
REFRESH_INTERVAL_SEC = 2


class DateService(Service):
    @staticmethod
    async def get_payload():
        return await vm.repo(
            image_hash="d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376",
        )

    async def start(self):
        async for script in super().start():  # deploy and start the activity
            yield script
        script = self._ctx.new_script()
        script.run(
            "/bin/sh",
            "-c",
            f"while true; do date > {DATE_OUTPUT_PATH}; sleep {REFRESH_INTERVAL_SEC}; done &",
        )
        yield script

    async def run(self):
        while True:
            await trio.sleep(REFRESH_INTERVAL_SEC)
            script = self._ctx.new_script()
            future = script.run("/bin/cat", DATE_OUTPUT_PATH)
            yield script
            result = (await future).stdout
            print(f"{self.provider_name}: {result.strip() if result else result}", flush=True)


async def main(running_time: float) -> None:
    async with Golem(budget=1.0) as golem:
        cluster = await golem.run_service(
            DateService,
            num_instances=1,
            expiration=datetime.now(UTC) + timedelta(minutes=15),
        )
        with trio.fail_after(120):
            await cluster.wait_running()
        await trio.sleep(running_time)
        await cluster.stop()


if __name__ == "__main__":
    enable_default_logger()
    try:
        trio.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
    except KeyboardInterrupt:
        sys.exit(130)
