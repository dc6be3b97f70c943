#!/usr/bin/env python3
"""Start or stop the observations simulator (``simulate_observations.py``) in the background.

``--start`` starts it detached (its own session, output to ``$GOLEM_ROOT/out/simulator.log``),
writes its PID to ``$GOLEM_ROOT/out/simulator.pid`` and returns at once; ``--stop`` ends it
and removes the PID file; ``--status`` says whether it runs. Starting a running simulator or
stopping a stopped one is not an error. ``GOLEM_ROOT`` defaults to ``/golem``.

usage: simulate_observations_ctl.py (--start [--interval SECONDS] | --stop | --status)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SIMULATOR = Path(__file__).resolve().with_name("simulate_observations.py")
#: How long a just-started simulator must stay up to count as started, seconds.
STARTUP_CHECK_S = 0.3
#: How long ``--stop`` waits after SIGTERM, then after SIGKILL, seconds.
STOP_WAIT_S = 5.0


def out_dir() -> Path:
    """``$GOLEM_ROOT/out`` (``GOLEM_ROOT`` defaults to ``/golem``), made if missing."""
    out = Path(os.environ.get("GOLEM_ROOT") or "/golem") / "out"
    out.mkdir(parents=True, exist_ok=True)
    return out


def pid_file() -> Path:
    return out_dir() / "simulator.pid"


def read_pid() -> int | None:
    """The PID in the PID file, or None when there is no (valid) PID file."""
    try:
        return int(pid_file().read_text().strip())
    except (OSError, ValueError):
        return None


def is_simulator(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) simulator process."""
    if not Path("/proc/self").is_dir():
        # No procfs: all that can be told is whether the process exists.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    if state == ["Z"] or state == ["X"]:
        return False
    return any(arg.endswith(SIMULATOR.name.encode()) for arg in argv)


def running_pid() -> int | None:
    """The running simulator's PID, or None (a stale PID file is removed)."""
    pid = read_pid()
    if pid is not None and is_simulator(pid):
        return pid
    with contextlib.suppress(FileNotFoundError):
        pid_file().unlink()
    return None


def write_pid(pid: int) -> None:
    path = pid_file()
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(f"{pid}\n")
    partial.replace(path)


def start(interval: float | None) -> int:
    pid = running_pid()
    if pid is not None:
        print(f"simulator already running (pid {pid})")
        return 0
    out = out_dir()
    command = [sys.executable or "python3", str(SIMULATOR)]
    if interval is not None:
        command += ["--interval", repr(interval)]
    log_path = out / "simulator.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    write_pid(process.pid)
    deadline = time.monotonic() + STARTUP_CHECK_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with contextlib.suppress(FileNotFoundError):
                pid_file().unlink()
            tail = log_path.read_text(errors="replace")[-1000:].strip()
            print(
                f"simulator exited at once with code {process.returncode}: {tail}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.02)
    print(f"simulator started (pid {process.pid}), observations in {out / 'observations'}")
    return 0


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while is_simulator(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop() -> int:
    pid = read_pid()
    if pid is None:
        print("simulator not running")
        return 0
    if not is_simulator(pid):
        running_pid()
        print(f"simulator not running (removed the stale pid file of pid {pid})")
        return 0
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, STOP_WAIT_S):
            with contextlib.suppress(FileNotFoundError):
                pid_file().unlink()
            print(f"simulator stopped (pid {pid})")
            return 0
    print(f"simulator (pid {pid}) does not stop", file=sys.stderr)
    return 1


def status() -> int:
    pid = running_pid()
    print("simulator not running" if pid is None else f"simulator running (pid {pid})")
    return 0


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above zero: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop the observations simulator.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--start", action="store_true", help="start it in the background")
    action.add_argument("--stop", action="store_true", help="stop it")
    action.add_argument("--status", action="store_true", help="say whether it runs")
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=None,
        help="with --start: seconds between observations (default: the simulator's)",
    )
    args = parser.parse_args(argv)
    if args.interval is not None and not args.start:
        parser.error("--interval goes with --start")
    if args.start:
        return start(args.interval)
    if args.stop:
        return stop()
    return status()


if __name__ == "__main__":
    sys.exit(main())
