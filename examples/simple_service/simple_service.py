#!/usr/bin/env python3
"""The SimpleService from "How can I host services in Golem network?", on golem-trio.

The class below is the guide's, with only its imports changed and ``asyncio.sleep`` replaced
by ``trio.sleep``. Its image (``image/``) simulates observations and produces statistics and
PNG plots; with no ``YAGNA_APPKEY`` set, it runs on the embedded LocalNet, which serves that
image for the guide's image hash.

    python examples/simple_service/simple_service.py --running-time 40
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import string
import sys
from datetime import datetime, timedelta, timezone

import trio

from golem_trio import Golem, Service, enable_default_logger, log_event_repr, log_summary
from golem_trio.market import vm

NUM_INSTANCES = 2


class SimpleService(Service):
    STATS_PATH = "/golem/out/stats"
    PLOT_INFO_PATH = "/golem/out/plot"
    SIMPLE_SERVICE = "/golem/run/simple_service.py"

    @staticmethod
    async def get_payload():
        return await vm.repo(
            image_hash="8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488",
            min_mem_gib=0.5,
            min_storage_gib=2.0,
        )

    async def start(self):
        self._ctx.run("/golem/run/simulate_observations_ctl.py", "--start")
        yield self._ctx.commit()

    async def run(self):
        while True:
            await trio.sleep(10)
            self._ctx.run(self.SIMPLE_SERVICE, "--stats")  # idx 0
            self._ctx.run(self.SIMPLE_SERVICE, "--plot", "dist")  # idx 1

            future_results = yield self._ctx.commit()
            results = await future_results
            stats = results[0].stdout.strip()
            plot = results[1].stdout.strip().strip('"')

            plot_filename = "".join(random.choice(string.ascii_letters) for _ in range(10)) + ".png"

            self._ctx.download_file(
                plot, str(pathlib.Path(__file__).resolve().parent / plot_filename)
            )

            steps = self._ctx.commit()
            yield steps

    async def shutdown(self):
        self._ctx.run("/golem/run/simulate_observations_ctl.py", "--stop")
        yield self._ctx.commit()


# --- the app around the guide's class ---------------------------------------------------------


def show_results(event: object) -> None:
    """Print what the instances measure and download (read from the engine's events)."""
    name = type(event).__name__
    if name == "CommandExecuted" and getattr(event, "success", False):
        command = str(getattr(event, "command", ""))
        if command.endswith("--stats"):
            stats = json.loads(str(getattr(event, "stdout", "") or "{}"))
            shown = ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()
            )
            print(f"stats ({event.activity_id[:8]}): {shown}", flush=True)  # type: ignore[attr-defined]
    elif name == "DownloadFinished":
        print(f"plot downloaded: {getattr(event, 'path', '')}", flush=True)


async def main(subnet_tag: str, driver: str | None, network: str | None, running_time: float):
    summary = log_summary(log_event_repr)

    def consumer(event: object) -> None:
        summary(event)
        show_results(event)

    async with Golem(
        budget=1.0,
        subnet_tag=subnet_tag,
        driver=driver,
        network=network,
        event_consumer=consumer,
    ) as golem:
        cluster = await golem.run_service(
            SimpleService,
            num_instances=NUM_INSTANCES,
            expiration=datetime.now(timezone.utc) + timedelta(minutes=15),
        )
        with trio.fail_after(180):
            await cluster.wait_running()
        print(f"{cluster}: all running, for {running_time:.0f} s", flush=True)
        with trio.move_on_after(running_time):
            while True:
                await trio.sleep(5)
                print("instances:", [f"{s.provider_name}: {s.state.value}" for s in cluster])
        print("stopping the cluster", flush=True)
        await cluster.stop()
        print("instances:", [f"{s.provider_name}: {s.state.value}" for s in cluster])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnet-tag", default="public")
    parser.add_argument("--payment-driver", "--driver", default=None)
    parser.add_argument("--payment-network", "--network", default=None)
    parser.add_argument("--running-time", type=float, default=40.0)
    args = parser.parse_args()
    enable_default_logger()
    try:
        trio.run(
            main, args.subnet_tag, args.payment_driver, args.payment_network, args.running_time
        )
    except KeyboardInterrupt:
        print("interrupted; everything was cleaned up", file=sys.stderr)
        sys.exit(130)
