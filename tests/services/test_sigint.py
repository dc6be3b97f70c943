"""Ctrl-C end to end: ``sigint_app.py`` runs in a subprocess on a served LocalNet (real clock)
and gets SIGINT at seeded random moments; every run must end, soon, with a clean ledger.

Phases (where the first SIGINT lands, timed from the app's stdout lines):

* ``startup``: soon after ``BOOT``, while the app imports and opens the LocalNet. The signal
  lands before the engine exists: the app's own ``KeyboardInterrupt`` (stage ``boot`` or
  ``localnet``); it still writes a result line and exits 0.
* ``entering``: soon after ``NET``, while ``Golem`` is entered (the daemon client, the
  allocation, the signal watcher) and ``run_service`` is called. Stage ``localnet`` or
  ``engine``; the ledger is checked either way.
* ``ready``: right after ``READY`` (``run_service`` returned; instances are negotiating).
* ``starting``: while the instances get their agreements, deploy and run ``start``.
* ``running``: after ``RUNNING`` (every instance runs its loop).
* ``double``: a first SIGINT after ``READY`` or ``RUNNING``, a second one shortly after (the
  engine hurries: it may skip the invoice wait, never the termination of agreements).

From ``ready`` on the engine owns SIGINT, so the app must report stage ``engine`` with a
checked ledger. Accepted exit code: 0 in every phase (the app exits 3 for violated invariants
and 4 for any other outcome, such as an exception other than ``KeyboardInterrupt`` leaving
the engine block). The only timing assertion is the hang bound.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

APP = Path(__file__).with_name("sigint_app.py")
REPO = Path(__file__).resolve().parents[2]
#: Longest a run may take from its first signal to its exit; generous for a busy machine.
HANG_BOUND_S = 30.0
#: Longest the app may take to print the line a run waits for.
STARTUP_BOUND_S = 60.0
#: Subprocesses at once (the machine has two cores).
CONCURRENCY = 2


@attrs.frozen
class Plan:
    """One run: wait for ``anchor`` on stdout, sleep ``delay``, SIGINT; maybe SIGINT again."""

    seed: int
    instances: int
    anchor: str
    delay: float
    second_after: float | None = None


@attrs.define
class Outcome:
    plan: Plan
    returncode: int | None = None
    hung: bool = False
    lines: list[str] = attrs.Factory(list)
    stderr: str = ""
    signalled: bool = False
    #: Seconds from the first signal to the process' exit.
    exit_after: float | None = None

    @property
    def report(self) -> dict[str, Any] | None:
        for line in reversed(self.lines):
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
        return None

    def describe(self) -> str:
        return (
            f"{self.plan}: returncode={self.returncode} hung={self.hung} "
            f"exit_after={self.exit_after}\n  stdout: {self.lines}\n"
            f"  stderr (tail): {self.stderr[-3000:]}"
        )


def _plans(phase: str, runs: int) -> list[Plan]:
    rng = random.Random(f"sigint-{phase}")
    plans = []
    for _ in range(runs):
        seed = rng.randrange(1_000_000)
        instances = rng.randint(1, 3)
        if phase == "startup":
            plans.append(Plan(seed, instances, "BOOT", rng.uniform(0.0, 0.7)))
        elif phase == "entering":
            plans.append(Plan(seed, instances, "NET", rng.uniform(0.0, 0.12)))
        elif phase == "ready":
            plans.append(Plan(seed, instances, "READY", rng.uniform(0.0, 0.02)))
        elif phase == "starting":
            plans.append(Plan(seed, instances, "READY", rng.uniform(0.02, 0.4)))
        elif phase == "running":
            plans.append(Plan(seed, instances, "RUNNING", rng.uniform(0.0, 1.0)))
        elif phase == "double":
            anchor = rng.choice(["READY", "RUNNING"])
            delay, second = rng.uniform(0.0, 0.5), rng.uniform(0.0, 0.3)
            plans.append(Plan(seed, instances, anchor, delay, second))
        else:
            raise AssertionError(phase)
    return plans


PHASES = {"startup": 8, "entering": 10, "ready": 8, "starting": 8, "running": 10, "double": 12}
SUMMARY: dict[str, list[Outcome]] = {}


@pytest.fixture(scope="module", autouse=True)
def _summary(pytestconfig: pytest.Config) -> Iterator[None]:
    yield
    outcomes = [o for runs in SUMMARY.values() for o in runs]
    if not outcomes:
        return
    times = [o.exit_after for o in outcomes if o.exit_after is not None]
    lines = [
        f"sigint: {len(outcomes)} runs, "
        f"{sum(o.plan.second_after is not None for o in outcomes)} with a second SIGINT, "
        f"max signal-to-exit {max(times, default=math.nan):.2f} s"
    ]
    for phase, runs in SUMMARY.items():
        stages: dict[str, int] = {}
        for o in runs:
            stage = str((o.report or {}).get("stage"))
            stages[stage] = stages.get(stage, 0) + 1
        worst = max((o.exit_after or 0.0 for o in runs), default=0.0)
        lines.append(f"  {phase}: {len(runs)} runs, stages {stages}, max {worst:.2f} s")
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    return env


async def _run(plan: Plan) -> Outcome:
    outcome = Outcome(plan)
    command = [
        sys.executable,
        str(APP),
        "--seed",
        str(plan.seed),
        "--instances",
        str(plan.instances),
    ]
    proc = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=REPO
    )
    seen = {name: trio.Event() for name in ("BOOT", "NET", "READY", "RUNNING")}
    stderr = bytearray()

    async def read_stdout() -> None:
        assert proc.stdout is not None
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").strip()
                outcome.lines.append(line)
                if line in seen:
                    seen[line].set()
        if buffer.strip():
            outcome.lines.append(buffer.decode(errors="replace").strip())
        for event in seen.values():  # the process is gone: stop waiting for anything
            event.set()

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for chunk in proc.stderr:
            stderr.extend(chunk)

    def interrupt() -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stdout)
            nursery.start_soon(read_stderr)
            with trio.move_on_after(STARTUP_BOUND_S):
                await seen[plan.anchor].wait()
            await trio.sleep(plan.delay)
            signalled_at = trio.current_time()
            outcome.signalled = proc.returncode is None
            interrupt()
            if plan.second_after is not None:
                await trio.sleep(plan.second_after)
                interrupt()
            with trio.move_on_after(HANG_BOUND_S) as bound:
                await proc.wait()
            if bound.cancelled_caught:
                outcome.hung = True
                proc.kill()
                await proc.wait()
            outcome.exit_after = trio.current_time() - signalled_at
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await proc.wait()
    outcome.returncode = proc.returncode
    outcome.stderr = stderr.decode(errors="replace")
    return outcome


def _problems(outcome: Outcome, phase: str) -> list[str]:
    """Why a run is not acceptable (empty: it is)."""
    found = []
    if outcome.hung:
        found.append(f"no exit within {HANG_BOUND_S} s of the signal")
    if not outcome.signalled:
        found.append("the app exited before it was signalled")
    if outcome.returncode != 0:
        found.append(f"exit code {outcome.returncode}, expected 0")
    report = outcome.report
    if report is None:
        found.append("no result line")
        return found
    if report.get("result") != "ok" or report.get("problems"):
        found.append(f"result {report.get('result')}: {report.get('problems')}")
    if report.get("error"):
        found.append(f"error: {report['error']}")
    if report.get("interrupted") is not True:
        found.append("the app did not see a KeyboardInterrupt")
    if phase not in ("startup", "entering") and (
        report.get("stage") != "engine" or not report.get("checked")
    ):
        found.append(f"stage {report.get('stage')} (checked={report.get('checked')})")
    if report.get("stage") == "engine" and not report.get("checked"):
        found.append("the ledger was not checked")
    return found


@pytest.mark.parametrize("phase", list(PHASES))
async def test_sigint_leaves_nothing_open(phase: str) -> None:
    plans = _plans(phase, PHASES[phase])
    outcomes: list[Outcome] = []
    limiter = trio.CapacityLimiter(CONCURRENCY)

    async def one(plan: Plan) -> None:
        async with limiter:
            outcomes.append(await _run(plan))

    async with trio.open_nursery() as nursery:
        for plan in plans:
            nursery.start_soon(one, plan)
    SUMMARY[phase] = outcomes

    assert len(outcomes) == len(plans)
    failures = []
    for outcome in outcomes:
        problems = _problems(outcome, phase)
        if problems:
            failures.append("; ".join(problems) + "\n" + outcome.describe())
    assert not failures, f"{len(failures)}/{len(outcomes)} runs failed:\n\n" + "\n\n".join(failures)
