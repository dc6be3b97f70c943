"""golem-trio and yapapi side by side: the same idle service at scale, each SDK in a process
of its own against a LocalNet served in another process.

The service: deploy, start, one ``/bin/echo``, then ``run`` idles. Per N (one agreement per
provider) and per run, a fresh LocalNet with N emulated providers (scripted runtime) is served
on loopback by ``_vs_localnet.py``, and one driver brings N instances up against it:
``_vs_trio_driver.py`` in this venv, ``_vs_yapapi_driver.py`` in yapapi's own venv (the one
the compat tests use, made if missing, with their ``gftp`` stand-in first on ``PATH``). The
runs alternate: golem-trio, yapapi, golem-trio, yapapi...

Every process reports its own CPU time (user + system, ``getrusage``), so the requestor's
CPU is measured alone and LocalNet's beside it. The drivers print JSON lines stamped with the
machine's monotonic clock, which this script collects:

* **time to all running**: ``run_service`` called -> N instances running;
* **requestor CPU to running**: the driver's CPU over that time, per instance;
* **requests per instance**: HTTP requests LocalNet served up to all running, per instance;
* **idle CPU**: the driver's CPU over ``--idle`` seconds with every instance running, per
  instance-minute;
* **stop -> all terminated**: the cluster's stop asked -> LocalNet sees every agreement
  terminated; **stop -> exit**: -> the driver's ``async with Golem`` block has exited
  (its invoices settled); **requestor CPU stop -> exit**: the driver's CPU over that time,
  per instance;
* **RSS per instance**: the driver's resident memory growth from the engine's start to all
  running, per instance;
* **LocalNet CPU per instance**: LocalNet's CPU from serving to the driver's exit (idle
  window included), per instance; and up to all running.

Ratios are yapapi's figure over golem-trio's (above 1: golem-trio is cheaper or faster).
With ``--real`` the same runs go against real yagna daemons (``open_yagna_localnet``, one node,
payments on a local chain) at N in 10 and 30 (``--real-sizes`` for others, 100 included);
there LocalNet's figures count only its Python process and no requests.

Timing: the default (N 10 and 100, one run each, 20 s idle) takes about two minutes on a
2-core machine; ``--sizes 10 100 300 1000`` about ten more (yapapi's bring-up of 1000
instances dominates).

    .venv/bin/python benchmarks/bench_vs_yapapi.py [--sizes 10 100 300 1000] [--runs 1]
        [--idle 20] [--real [--real-sizes 10 30 100]] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import trio

HERE = pathlib.Path(__file__).resolve().parent
# The yapapi virtualenv and gftp stand-in are the compat tests' (tests/compat/yapapi_venv.py).
sys.path.insert(0, str(HERE.parent / "tests"))

from compat.yapapi_venv import gftp_stub_dir, yapapi_python  # noqa: E402

SDKS = ("golem-trio", "yapapi")
#: Longest one run may take (s), LocalNet's start to its exit.
RUN_TIMEOUT = 1800.0
#: Longest LocalNet may take to start, and to see every agreement terminated after the exit.
READY_TIMEOUT = 300.0
SETTLE_TIMEOUT = 30.0
REAL_SIZES = (10, 30)
#: Budgets (GLM): LocalNet's emulator funds any; a real daemon's requestor has 1000 tGLM.
EMULATOR_BUDGET = 10**6
REAL_BUDGET = 100


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Lines:
    """JSON lines of a child process's standard output, by event, as they come."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.changed = trio.Event()
        self.closed = False

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        while chunk := await stream.receive_some():
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                self.events.setdefault(line["event"], []).append(line)
                self.changed.set()
                self.changed = trio.Event()
        self.closed = True
        self.changed.set()

    async def wait(self, event: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th line of ``event``; ``EOFError`` if the output ends first."""
        while len(self.events.get(event, ())) < count:
            if self.closed:
                raise EOFError(event)
            await self.changed.wait()
        return self.events[event][count - 1]

    def last(self, event: str) -> dict[str, Any]:
        return self.events[event][-1]


async def one_run(
    sdk: str, n: int, idle: float, backend: str, yapapi: pathlib.Path, gftp: pathlib.Path
) -> dict[str, Any]:
    server_lines, driver_lines = Lines(), Lines()
    server = await trio.lowlevel.open_process(
        [
            sys.executable,
            str(HERE / "_vs_localnet.py"),
            "--providers",
            str(n),
            "--backend",
            backend,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    driver: trio.Process | None = None
    stats = 0

    async def ask(command: str) -> None:
        assert server.stdin is not None
        await server.stdin.send_all(command.encode() + b"\n")

    async def stats_now() -> dict[str, Any]:
        nonlocal stats
        stats += 1
        await ask("stats")
        return await server_lines.wait("stats", stats)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_lines.read, server.stdout)
            with trio.fail_after(READY_TIMEOUT):
                ready = await server_lines.wait("ready")
            # The app key goes to the driver's environment only, never to the terminal.
            env = {k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")}
            env.update(
                YAGNA_APPKEY=ready["key"],
                YAGNA_API_URL=ready["url"],
                YAGNA_SUBNET="public",
                PATH=f"{gftp}{os.pathsep}{env.get('PATH', '')}",
                PYTHONUNBUFFERED="1",
                BENCH_BUDGET=str(REAL_BUDGET if backend == "yagna" else EMULATOR_BUDGET),
                PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
            )
            python = sys.executable if sdk == "golem-trio" else str(yapapi)
            script = "_vs_trio_driver.py" if sdk == "golem-trio" else "_vs_yapapi_driver.py"
            with tempfile.TemporaryFile() as driver_err:
                driver = await trio.lowlevel.open_process(
                    [python, str(HERE / script), str(n), str(idle)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=driver_err,
                    env=env,
                )
                assert driver.stdout is not None
                nursery.start_soon(driver_lines.read, driver.stdout)
                try:
                    with trio.fail_after(RUN_TIMEOUT):
                        await driver_lines.wait("running")
                        at_running = await stats_now()
                        await driver_lines.wait("stop")
                        await ask("watch")
                        await driver.wait()
                except EOFError:
                    await driver.wait()
                if driver.returncode != 0 or "exit" not in driver_lines.events:
                    driver_err.seek(0)
                    tail = driver_err.read()[-3000:].decode(errors="replace")
                    raise RuntimeError(f"{sdk} driver exited {driver.returncode}:\n{tail}")
            with trio.move_on_after(SETTLE_TIMEOUT):
                await server_lines.wait("all_terminated")
            at_end = await stats_now()
            await ask("quit")
            with trio.fail_after(60):
                await server.wait()
            nursery.cancel_scope.cancel()
    finally:
        for process in (driver, server):
            if process is not None and process.returncode is None:
                process.kill()

    d = driver_lines.last
    begin, started, running = d("begin"), d("engine_started"), d("running")
    idle_start, idle_end, stop, exited = d("idle_start"), d("idle_end"), d("stop"), d("exit")
    terminated = server_lines.events.get("all_terminated")
    row: dict[str, Any] = {
        "sdk": sdk,
        "n": n,
        "backend": backend,
        "running_s": running["t"] - started["t"],
        "cpu_to_running_ms": (running["cpu"] - started["cpu"]) * 1000 / n,
        "engine_start_s": started["t"] - begin["t"],
        "idle_ms_per_instance_min": (idle_end["cpu"] - idle_start["cpu"])
        * 1000
        / n
        * 60
        / (idle_end["t"] - idle_start["t"]),
        "stop_to_terminated_s": terminated[0]["t"] - stop["t"] if terminated else math.nan,
        "stop_to_exit_s": exited["t"] - stop["t"],
        "stop_cpu_ms": (exited["cpu"] - stop["cpu"]) * 1000 / n,
        "rss_kib": (running["rss"] - started["rss"]) / 1024 / n,
        "localnet_cpu_ms": (at_end["cpu"] - ready["cpu"]) * 1000 / n,
        "localnet_cpu_to_running_ms": (at_running["cpu"] - ready["cpu"]) * 1000 / n,
    }
    if "requests" in at_running:
        row["requests"] = at_running["requests"] / n
        row["requests_total"] = at_end["requests"] / n
        row["by_endpoint_to_running"] = at_running["by_endpoint"]
        row["by_endpoint_in_all"] = at_end["by_endpoint"]
    return row


#: (key, label, format, lower is better)
METRICS = [
    ("running_s", "time to all running (s)", "{:.2f}"),
    ("cpu_to_running_ms", "requestor CPU to running (ms/instance)", "{:.2f}"),
    ("requests", "requests to running (per instance)", "{:.1f}"),
    ("requests_total", "requests in all (per instance)", "{:.1f}"),
    ("idle_ms_per_instance_min", "idle CPU (ms per instance-minute)", "{:.2f}"),
    ("stop_to_terminated_s", "stop -> all agreements terminated (s)", "{:.2f}"),
    ("stop_to_exit_s", "stop -> engine exit (s)", "{:.2f}"),
    ("stop_cpu_ms", "requestor CPU stop -> exit (ms/instance)", "{:.2f}"),
    ("rss_kib", "RSS growth to running (KiB/instance)", "{:.1f}"),
    ("localnet_cpu_to_running_ms", "LocalNet CPU to running (ms/instance)", "{:.2f}"),
    ("localnet_cpu_ms", "LocalNet CPU in all (ms/instance)", "{:.2f}"),
]


def median(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    return statistics.median(values) if values else math.nan


def table(rows: list[dict[str, Any]], runs: int, idle: float) -> str:
    lines = [
        f"golem-trio vs yapapi 0.13.1: N idle services, each SDK and LocalNet in its own "
        f"process; median of {runs} run(s) each, interleaved; idle window {idle:g} s; "
        f"ratio = yapapi / golem-trio.",
        "",
        "| N | backend | figure | golem-trio | yapapi | ratio |",
        "|---:|---|---|---:|---:|---:|",
    ]
    keys = sorted({(r["backend"], r["n"]) for r in rows})
    for backend, n in keys:
        group = [r for r in rows if r["n"] == n and r["backend"] == backend]
        for key, label, fmt in METRICS:
            ours = median([r for r in group if r["sdk"] == "golem-trio"], key)
            theirs = median([r for r in group if r["sdk"] == "yapapi"], key)
            if math.isnan(ours) and math.isnan(theirs):
                continue
            ratio = f"x{theirs / ours:.2f}" if ours and not math.isnan(ours / theirs) else "n/a"
            cells = [fmt.format(v) if not math.isnan(v) else "n/a" for v in (ours, theirs)]
            lines.append(f"| {n} | {backend} | {label} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    yapapi = yapapi_python()
    plan = [("emulator", n) for n in args.sizes]
    if args.real:
        plan += [("yagna", n) for n in args.real_sizes]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-vs-yapapi-") as tmp:
        gftp = gftp_stub_dir(pathlib.Path(tmp) / "gftp-bin")
        for backend, n in plan:
            for run in range(args.runs):
                for sdk in args.sdks:
                    progress(f"N={n} {backend} run {run + 1}/{args.runs}: {sdk}")
                    try:
                        row = await one_run(sdk, n, args.idle, backend, yapapi, gftp)
                    except Exception as exc:
                        # One failed run leaves a gap in the table, not the others unprinted.
                        while isinstance(exc, ExceptionGroup):
                            exc = exc.exceptions[0]
                        progress(f"  failed: {type(exc).__name__}: {exc}")
                        continue
                    progress(
                        f"  running in {row['running_s']:.2f} s, "
                        f"{row['cpu_to_running_ms']:.2f} ms CPU/instance, "
                        f"exit {row['stop_to_exit_s']:.2f} s after stop"
                    )
                    rows.append(row)
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[10, 100], help="values of N (none: --real only)"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per SDK and N")
    parser.add_argument("--idle", type=float, default=20.0, help="idle window (s)")
    parser.add_argument(
        "--real-sizes",
        type=int,
        nargs="+",
        default=list(REAL_SIZES),
        help="values of N against real daemons (default: 10 30; 100 takes a few minutes more)",
    )
    parser.add_argument(
        "--real", action="store_true", help="also against real yagna daemons (--real-sizes)"
    )
    parser.add_argument(
        "--sdks", nargs="+", choices=SDKS, default=list(SDKS), help="which SDKs to run"
    )
    parser.add_argument("--json", metavar="PATH", help="write every run's figures here")
    args = parser.parse_args()
    started = time.monotonic()
    rows = trio.run(main, args)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))
    print(table(rows, args.runs, args.idle))
    print(f"\n(benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    cli()
