"""The same scenario through yapapi (the reference Python SDK), side by side.

yapapi runs on asyncio and pins old libraries, so it runs in a virtualenv of its own (made
with pip on first use, under the user's cache folder), as a separate process: an app written
against yapapi's API (:data:`APP`) that runs the scenario's service on a LocalNet served on
loopback, on the wall clock, and reports what its engine does as JSON lines. This side fires
the same faults on the same time axis and reads the same ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from golem_trio._errors import GolemError
from golem_trio.events import (
    DebitNoteAccepted,
    InvoiceAccepted,
    ServiceStateChanged,
)
from golem_trio.localnet import ledger
from golem_trio.testing import check_invariants

from ._runner import (
    Column,
    EmulatorSurface,
    FaultDriver,
    Recorder,
    figures_of,
    open_scenario_net,
)
from ._scenario import Scenario

__all__ = ["YAPAPI_VERSION", "YapapiUnavailable", "run_yapapi_column", "yapapi_venv"]

YAPAPI_VERSION = "0.13.1"
#: Longest the one-time ``pip install`` may take (s).
_INSTALL_TIMEOUT = 900.0
#: How long yapapi may take to wind down after the scenario's end (s).
_WIND_DOWN = 300.0


class YapapiUnavailable(GolemError):
    """yapapi's virtualenv could not be made or used; the message says why."""


def yapapi_venv() -> Path:
    """Where yapapi's virtualenv lives: ``$GOLEM_TRIO_YAPAPI_VENV``, else
    ``$XDG_CACHE_HOME/golem-trio/yapapi-VERSION`` (``~/.cache`` by default)."""
    override = os.environ.get("GOLEM_TRIO_YAPAPI_VENV")
    if override:
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "golem-trio" / f"yapapi-{YAPAPI_VERSION}"


def _has_yapapi(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('yapapi'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == YAPAPI_VERSION


def ensure_yapapi() -> Path:
    """The Python of yapapi's virtualenv, made first if need be (``python -m venv``, then
    ``pip install yapapi==VERSION``); synchronous and slow the first time."""
    venv = yapapi_venv()
    python = venv / "bin" / "python"
    if _has_yapapi(python):
        return python
    staging = venv.with_name(venv.name + ".partial")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(staging)],
        [
            str(staging / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            f"yapapi=={YAPAPI_VERSION}",
        ],
    ]
    try:
        staging.parent.mkdir(parents=True, exist_ok=True)
        for step in steps:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT, check=False
            )
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise YapapiUnavailable(
                    f"cannot make yapapi's virtualenv at {venv}: {Path(step[0]).name} "
                    f"failed: {last}"
                )
        shutil.rmtree(venv, ignore_errors=True)
        staging.rename(venv)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise YapapiUnavailable(f"cannot make yapapi's virtualenv at {venv}: {exc}") from None
    # A virtualenv moved after it was made keeps working for `python -m ...`; check it.
    if not _has_yapapi(python):
        raise YapapiUnavailable(f"yapapi=={YAPAPI_VERSION} is not importable from {venv}")
    return python


async def run_yapapi_column(scenario: Scenario) -> Column:
    """Run ``scenario`` through yapapi on a served LocalNet, on the wall clock, and return
    its figures (``leaks.tasks`` is ``None``: another process's tasks are not seen).
    :class:`YapapiUnavailable` when yapapi's virtualenv cannot be made."""
    if scenario.service.kind not in ("idle", "echo"):
        raise YapapiUnavailable(
            f"yapapi runs the built-in services only, not {scenario.service.kind!r}"
        )
    python = await trio.to_thread.run_sync(ensure_yapapi)
    recorder = Recorder(target=scenario.service.instances)
    with tempfile.TemporaryDirectory(prefix="golem-trio-yapapi-") as scratch:
        folder = Path(scratch)
        (folder / "app.py").write_text(APP, encoding="utf-8")
        gftp = folder / "gftp"
        gftp.write_text(GFTP, encoding="utf-8")
        gftp.chmod(0o755)
        async with open_scenario_net(scenario, fixed_epoch=False, serve=True) as net:
            assert net.url is not None
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")},
                "YAGNA_API_URL": net.url,
                "YAGNA_APPKEY": net.app_key,
                "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}",
                "BENCH_SCENARIO": json.dumps(
                    {
                        "instances": scenario.service.instances,
                        "kind": scenario.service.kind,
                        "every": scenario.service.every,
                        "budget": str(scenario.budget),
                        "duration": scenario.duration,
                    }
                ),
                "PYTHONUNBUFFERED": "1",
            }
            async with trio.open_nursery() as nursery:
                command = [str(python), str(folder / "app.py")]
                process = await nursery.start(
                    partial(
                        trio.run_process,
                        command,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        check=False,
                    )
                )
                assert process.stdout is not None
                driver = FaultDriver(scenario, EmulatorSurface(net), list, recorder)
                follower = _Follower(recorder, driver)
                follower.driver.targets = follower.targets
                with trio.fail_after(scenario.duration + _WIND_DOWN + 120):
                    await follower.follow(process.stdout, nursery)
                follower.driver.end_windows()
            book = ledger(net)
    unpaid: list[tuple[str, Decimal | None]] = [
        (invoice["agreementId"], Decimal(invoice["amount"]))
        for invoice in book["invoices"]
        if invoice.get("honest") is not False and invoice["status"] not in ("ACCEPTED", "SETTLED")
    ]
    recorder.refused = sum(
        1 for doc in [*book["debitNotes"], *book["invoices"]] if doc["rejectRequests"]
    )
    column = figures_of(
        recorder,
        scenario,
        book,
        unpaid=unpaid,
        leftover_tasks=None,
        invariant_problems=check_invariants(book, budget=scenario.budget),
        implementation=f"yapapi {YAPAPI_VERSION}",
    )
    return attrs.evolve(column, clock="wall")


class _Follower:
    """Reads the app's JSON lines into a recorder; starts the faults when the app asked for
    its service and stops them when the scenario ended."""

    def __init__(self, recorder: Recorder, driver: FaultDriver) -> None:
        self.recorder = recorder
        self.driver = driver
        #: Running instances: instance id -> agreement id.
        self.running: dict[str, str] = {}
        self.faults = trio.CancelScope()

    def targets(self) -> list[tuple[str, str]]:
        # Not an instance a fault hit already: yapapi may still report it running.
        return [
            (agreement, instance)
            for instance, agreement in self.running.items()
            if instance in self.recorder.running
        ]

    async def follow(self, stdout: trio.abc.ReceiveStream, nursery: trio.Nursery) -> None:
        buffer = b""
        async for chunk in stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if isinstance(message, dict):
                        self.apply(message, nursery)
        self.faults.cancel()

    async def _drive(self) -> None:
        with self.faults:
            await self.driver.run()

    def apply(self, message: dict[str, Any], nursery: trio.Nursery) -> None:
        kind = message.get("ev")
        recorder = self.recorder
        if kind == "started":
            recorder.start()
            nursery.start_soon(self._drive)
        elif kind == "ended":
            self.faults.cancel()
            self.driver.end_windows()
        elif kind == "state":
            instance = f"y{message['i']}"
            if message["new"] == "running":
                self.running[instance] = str(message["agreement"])
            else:
                self.running.pop(instance, None)
            recorder(
                ServiceStateChanged(
                    cluster_id="yapapi",
                    instance_id=instance,
                    service_class="BenchService",
                    old=str(message["old"]),
                    new=str(message["new"]),
                    trigger="",
                    reason=None,
                    provider_id=None,
                    provider_name=None,
                )
            )
        elif kind == "note":
            amount = Decimal(str(message["amount"]))
            recorder(
                DebitNoteAccepted(
                    debit_note_id="",
                    agreement_id=str(message["agreement"]),
                    activity_id=None,
                    amount=amount,
                    increase=amount,
                )
            )
        elif kind == "invoice":
            recorder(
                InvoiceAccepted(
                    invoice_id="",
                    agreement_id=str(message["agreement"]),
                    amount=Decimal(str(message["amount"])),
                )
            )


#: The yapapi app: the scenario's service written against yapapi's API. It reports its
#: engine's events as JSON lines on standard output. Run by yapapi's own interpreter.
APP = r"""
import asyncio
import json
import os
import sys
from dataclasses import dataclass

from yapapi import Golem
from yapapi import events
from yapapi.payload import Payload
from yapapi.props.base import constraint, prop
from yapapi.services import Service

SCENARIO = json.loads(os.environ["BENCH_SCENARIO"])
INSTANCES = {}


def emit(**message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


@dataclass
class BenchPayload(Payload):
    runtime: str = constraint("golem.runtime.name", default="vm")
    min_mem_gib: float = constraint("golem.inf.mem.gib", operator=">=", default=0.5)
    min_storage_gib: float = constraint("golem.inf.storage.gib", operator=">=", default=2.0)
    package_url: str = prop(
        "golem.srv.comp.task_package",
        default="hash:sha3:8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
        ":http://127.0.0.1:9/bench.gvmi",
    )
    package_format: str = prop("golem.srv.comp.vm.package_format", default="gvmkit-squash")


class BenchService(Service):
    @staticmethod
    async def get_payload():
        return BenchPayload()

    async def run(self):
        if SCENARIO["kind"] != "echo":
            await asyncio.Future()
        while True:
            await asyncio.sleep(SCENARIO["every"])
            script = self._ctx.new_script()
            script.run("/bin/echo", "alive")
            yield script


def on_event(event):
    if isinstance(event, events.ServiceStateChanged):
        index = INSTANCES.setdefault(id(event.service), len(INSTANCES))
        emit(ev="state", i=index, old=event.old.value, new=event.new.value,
             agreement=event.agreement.id)
    elif isinstance(event, events.DebitNoteAccepted):
        emit(ev="note", agreement=event.agreement.id, amount=str(event.amount))
    elif isinstance(event, events.InvoiceAccepted):
        emit(ev="invoice", agreement=event.agreement.id, amount=str(event.amount))


async def main():
    async with Golem(
        budget=float(SCENARIO["budget"]),
        subnet_tag="public",
        payment_driver="erc20",
        payment_network="holesky",
    ) as golem:
        golem.add_event_consumer(on_event)
        emit(ev="started")
        cluster = await golem.run_service(BenchService, num_instances=SCENARIO["instances"])
        await asyncio.sleep(SCENARIO["duration"])
        emit(ev="ended")
        cluster.stop()
    emit(ev="closed")


asyncio.run(main())
"""

#: A stand-in for the ``gftp`` binary yapapi's engine starts: it answers ``version`` and
#: ``shutdown`` (the services here move no files).
GFTP = r"""#!/usr/bin/env python3
import json
import sys

if sys.argv[1:] != ["server"]:
    sys.exit(2)
for line in sys.stdin:
    if not line.strip():
        continue
    request = json.loads(line)
    reply = {"jsonrpc": "2.0", "id": request.get("id")}
    if request.get("method") == "version":
        reply["result"] = "0.7.3 (golem-trio bench stand-in)"
    elif request.get("method") == "shutdown":
        reply["result"] = "ok"
        print(json.dumps(reply), flush=True)
        break
    else:
        reply["error"] = {"code": -32601, "message": "not supported"}
    print(json.dumps(reply), flush=True)
"""
