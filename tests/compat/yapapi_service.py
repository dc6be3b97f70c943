"""A small service app written against yapapi's documented API, run by ``test_yapapi.py``
in a separate virtualenv with yapapi installed (never in the project's own venv).

It reads ``YAGNA_APPKEY`` and ``YAGNA_API_URL`` like any yapapi app, runs one instance of
``EchoService`` whose ``run`` executes ``/bin/echo`` a few times and prints each stdout, waits
for the instance to end, and leaves the ``Golem`` block (which terminates the agreement and
settles the invoice). It prints ``STATE <name>`` on every state change it sees and exits 0
only when the service ran its commands and terminated.
"""

import asyncio
import os
import sys
from dataclasses import dataclass

from yapapi import Golem
from yapapi.events import CommandStdOut
from yapapi.log import enable_default_logger
from yapapi.payload import Payload
from yapapi.props.base import constraint, prop
from yapapi.script.capture import CaptureContext
from yapapi.services import Service, ServiceState

ROUNDS = int(os.environ.get("COMPAT_ROUNDS", "3"))
DEADLINE_S = float(os.environ.get("COMPAT_DEADLINE_S", "20"))
#: How outputs come back. ``default``: ``script.run`` as most apps call it (yapapi asks for a
#: streamed capture and polls the batch results); ``atEnd``: with an explicit capture of the
#: whole output at the end; ``stream``: ``Golem(stream_output=True)``, which follows each batch
#: on the exe-unit's event stream (SSE) and reports the output as ``CommandStdOut`` events.
CAPTURE = os.environ.get("COMPAT_CAPTURE", "default")
#: When set, ``start`` runs this shell script after deploy and start (as yapapi's examples do,
#: ``/bin/sh -c "echo started; date"``) and prints its stdout as ``START <line>``.
START_SCRIPT = os.environ.get("COMPAT_START_SCRIPT")
#: When set, yapapi's default logger writes INFO to stderr and DEBUG (API calls too) here.
LOG_FILE = os.environ.get("COMPAT_LOG_FILE")


@dataclass
class LocalVmPayload(Payload):
    """A VM payload with explicit properties, so nothing is looked up in an image repository."""

    runtime: str = constraint("golem.runtime.name", default="vm")
    min_mem_gib: float = constraint("golem.inf.mem.gib", operator=">=", default=0.5)
    min_storage_gib: float = constraint("golem.inf.storage.gib", operator=">=", default=2.0)
    package_url: str = prop(
        "golem.srv.comp.task_package",
        # A sha3-224 hash and a loopback url: the scripted runtime never downloads it.
        default="hash:sha3:" + "0" * 56 + ":http://127.0.0.1:9/localnet-compat-image.gvmi",
    )
    package_format: str = prop("golem.srv.comp.vm.package_format", default="gvmkit-squash")


#: The instance states seen, in order (printed as ``STATE <name>`` when they change).
SEEN = []


def see(state):
    if not SEEN or SEEN[-1] != state:
        SEEN.append(state)
        print(f"STATE {state}", flush=True)


class EchoService(Service):
    @staticmethod
    async def get_payload():
        return LocalVmPayload()

    async def start(self):
        async for script in super().start():
            yield script
        if START_SCRIPT:
            script = self._ctx.new_script()
            future = script.run("/bin/sh", "-c", START_SCRIPT)
            yield script
            for line in ((await future).stdout or "").splitlines():
                print(f"START {line}", flush=True)

    async def run(self):
        # yapapi calls run() in the running state; a run that is over before the next poll of
        # the state below would otherwise never be seen running.
        see(ServiceState.running.value)
        for n in range(ROUNDS):
            script = self._ctx.new_script()
            if CAPTURE == "atEnd":
                future = script.run(
                    "/bin/echo", f"compat-tick-{n}", stdout=CaptureContext.build(mode="all")
                )
            else:
                future = script.run("/bin/echo", f"compat-tick-{n}")
            yield script
            result = await future
            if CAPTURE != "stream":
                print(f"STDOUT {(result.stdout or '').strip()}", flush=True)
        print("RUN DONE", flush=True)


def print_streamed(event: CommandStdOut) -> None:
    print(f"STDOUT {event.output.strip()}", flush=True)


async def main() -> int:
    if LOG_FILE:
        enable_default_logger(
            log_file=LOG_FILE,
            debug_activity_api=True,
            debug_market_api=True,
            debug_payment_api=True,
        )
    async with Golem(
        budget=1.0,
        subnet_tag="public",
        payment_driver="erc20",
        payment_network="holesky",
        stream_output=CAPTURE == "stream",
    ) as golem:
        if CAPTURE == "stream":
            golem.add_event_consumer(print_streamed, [CommandStdOut])
        # yapapi's default expiration (3 hours): it offers a debit-note accept timeout and
        # no mid-agreement payments.
        cluster = await golem.run_service(EchoService, num_instances=1)
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while asyncio.get_running_loop().time() < deadline:
            for instance in cluster.instances:
                see(instance.state.value)
            if SEEN and SEEN[-1] == ServiceState.terminated.value:
                break
            await asyncio.sleep(0.2)
        cluster.stop()
    print("GOLEM CLOSED", flush=True)
    ok = ServiceState.running.value in SEEN and SEEN[-1] == ServiceState.terminated.value
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
