"""A small Golem app for the Ctrl-C tests (``test_sigint.py`` runs it in a subprocess).

    python tests/services/sigint_app.py --seed N --instances K

It serves a LocalNet on loopback (scripted runtime, real clock), runs a cluster of ``K``
instances of a service that runs short commands, and waits to be interrupted. Lines on stdout:

* ``BOOT``: the script runs; from here on any SIGINT ends in a result line.
* ``NET``: the LocalNet is open; the engine is entered next.
* ``READY``: ``run_service`` returned (the cluster is started; instances come up).
* ``RUNNING``: every instance is running.
* one JSON line, last: ``{"result": "ok" | "violations" | "error", "problems": [...],
  "waived": [...], "states": {...}, "interrupted": ..., "stage": ..., "checked": ...,
  "hurried": ..., "elapsed_after_signal": ..., "error": ...}`` (``error``: the traceback of
  anything but KeyboardInterrupt that left the engine block, if any).

``stage`` is where the app was when the interruption was caught: ``boot`` (before the LocalNet
was open), ``localnet`` (the LocalNet was open, the engine was not entered yet), ``engine``
(inside ``async with Golem``, where the engine owns SIGINT). The ledger is checked whenever the
LocalNet was open (``checked``). After a second SIGINT (``hurried``) the engine may skip the
invoice wait, so an honest invoice left unaccepted is reported under ``waived``, not as a
problem; everything else still counts.

Exit codes: 0 interrupted and every invariant holds; 3 invariants violated; 4 anything else
(not interrupted, another error, the app's own watchdog). Once the engine block is left, the
app ignores further signals, so that the report is always written.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from typing import Any

# Where the app is and when it saw the first and second signal (time.monotonic()).
_STATE: dict[str, Any] = {"stage": "boot", "signals": []}
WATCHDOG_S = 120.0
BUDGET = "1.0"


def _is_ki(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_ki(inner) for inner in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import datetime as dt
    import logging
    from collections import Counter

    import trio

    from golem_trio import Golem, Service, vm
    from golem_trio.localnet import (
        ProviderSpec,
        Reply,
        ledger,
        open_localnet,
        scripted_runtime_factory,
    )
    from golem_trio.services import Timeouts
    from golem_trio.testing import check_invariants

    image_hash = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"

    class _SignalNotes(logging.Handler):
        """Notes when the engine reports a signal (its "stopping" and "hurrying" lines)."""

        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if "SIG" in message and ("stopping" in message or "hurrying" in message):
                _STATE["signals"].append(time.monotonic())

    log = logging.getLogger("golem_trio")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(_SignalNotes())
    # The engine's log goes to stderr (the tests show it when a run fails); stdout stays quiet.
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(logging.Formatter("%(relativeCreated)d %(levelname)s %(message)s"))
    log.addHandler(to_stderr)

    class Echo(Service):
        @staticmethod
        async def get_payload() -> Any:
            return await vm.repo(image_hash=image_hash, min_mem_gib=0.5, min_storage_gib=2.0)

        async def start(self) -> Any:
            self._ctx.run("/bin/echo", "starting")
            yield self._ctx.commit()

        async def run(self) -> Any:
            i = 0
            while True:
                await trio.sleep(0.05)
                self._ctx.run("/bin/echo", f"tick {i}")
                results = yield self._ctx.commit()
                await results
                i += 1

        async def shutdown(self) -> Any:
            self._ctx.run("/bin/echo", "bye")
            yield self._ctx.commit()
            await trio.sleep(0.05)

    def echo(argv: list[str]) -> Reply:
        return Reply(stdout=" ".join(argv) + "\n", duration_s=0.02)

    specs = [ProviderSpec(name=f"p{i}") for i in range(max(3, args.instances + 1))]
    report: dict[str, Any] = {"interrupted": False, "checked": False, "problems": []}

    async def main() -> None:
        runtime = scripted_runtime_factory({"/bin/echo": echo}, deploy_s=0.3, start_s=0.1)
        async with open_localnet(specs, seed=args.seed, runtime=runtime, serve=True) as net:
            _STATE["stage"] = "localnet"
            print("NET", flush=True)
            golem: Golem | None = None
            try:
                with trio.fail_after(WATCHDOG_S):
                    golem = Golem(
                        budget=BUDGET,
                        localnet=net,
                        event_consumer=lambda event: None,
                        timeouts=Timeouts(shutdown=2, cleanup=5),
                        invoice_wait=5,
                    )
                    async with golem:
                        _STATE["stage"] = "engine"
                        cluster = await golem.run_service(
                            Echo,
                            num_instances=args.instances,
                            expiration=net.daemon.clock.now() + dt.timedelta(minutes=30),
                        )
                        print("READY", flush=True)
                        await cluster.wait_running()
                        print("RUNNING", flush=True)
                        await trio.sleep_forever()
            except* KeyboardInterrupt:
                _ignore_signals()
                report["interrupted"] = True
            except* Exception as group:
                # Reported (exit code 4) after the ledger is checked.
                _ignore_signals()
                report["error"] = "".join(traceback.format_exception(group))
            finally:
                _ignore_signals()
            report["stage"] = _STATE["stage"]
            report["checked"] = True
            report["problems"] = check_invariants(net, budget=BUDGET)
            book = ledger(net)
            states: dict[str, Any] = {
                "agreements": dict(Counter(a["state"] for a in book["agreements"])),
                "activities": dict(Counter(a["state"] for a in book["activities"])),
                "invoices": dict(Counter(str(i["status"]) for i in book["invoices"])),
            }
            if golem is not None:
                instances: Counter[str] = Counter()
                for cluster in golem.clusters:
                    for record in cluster.records:
                        instances[record.state.value] += 1
                        if not record.finished:
                            report["problems"].append(f"instance {record!r} is not finished")
                states["instances"] = dict(instances)
            report["states"] = states

    trio.run(main)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args()
    # Python leaves SIGINT ignored when the parent ignored it (a background job of a shell
    # without job control starts so, and its children inherit it); this app is there to be
    # interrupted, so it takes the usual KeyboardInterrupt handler back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print("BOOT", flush=True)
        report = _run(args)
    except BaseException as exc:
        _ignore_signals()
        if _is_ki(exc):
            report = {"interrupted": True, "checked": False, "problems": []}
        else:
            text = "".join(traceback.format_exception(exc))
            report = {"result": "error", "problems": [text], "interrupted": False}
        report["stage"] = _STATE["stage"]
    _ignore_signals()
    signals = _STATE["signals"]
    report["hurried"] = len(signals) >= 2
    report["elapsed_after_signal"] = round(time.monotonic() - signals[0], 3) if signals else None
    if "result" not in report:
        problems = report["problems"]
        waived = []
        if report["hurried"]:
            waived = [p for p in problems if p.startswith("honest invoice")]
            problems = [p for p in problems if p not in waived]
        report["problems"], report["waived"] = problems, waived
        if "error" in report or not report["interrupted"]:
            report["result"] = "error"
            if not report["interrupted"]:
                problems.append("the run ended without an interruption")
        else:
            report["result"] = "violations" if problems else "ok"
    print(json.dumps(report), flush=True)
    return {"ok": 0, "violations": 3}.get(report["result"], 4)


if __name__ == "__main__":
    sys.exit(main())
