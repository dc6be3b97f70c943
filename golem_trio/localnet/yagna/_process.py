"""The local processes of the real daemon backend (``yagna``, ``anvil``): how they start and stop.

Each runs in a process group of its own, on loopback, with a small environment passed through
from ours, its output in a log file. It is killed if the thread that started it dies (Linux,
main thread only), stopped by process group (SIGTERM, repeated, then SIGKILL) when its owner
stops it, and its owner's ``stop`` is also registered to run at interpreter exit::

    def start(self) -> None:
        stop_at_exit(self.stop)
        with self.log_path.open("ab") as log:
            self.proc = spawn_process_group(cmd, env=passthrough_env(), cwd=folder, log=log)

    def stop(self) -> None:
        cancel_stop_at_exit(self.stop)
        stop_process_group(self.proc, self.stop_timeout)

``LocalChain`` (``_chain.py``) and ``YagnaNode`` (``_node.py``) both start and stop their
process this way.

Synchronous and POSIX-only (process groups and signals); the standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Final

__all__ = [
    "LOOPBACK",
    "PASSTHROUGH_ENV",
    "cancel_stop_at_exit",
    "parent_death_hook",
    "passthrough_env",
    "spawn_process_group",
    "stop_at_exit",
    "stop_process_group",
]

LOOPBACK: Final = "127.0.0.1"
"""The only address the backend's processes listen on."""

PASSTHROUGH_ENV: Final = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")
"""Variables passed through from the caller's environment; everything else is set explicitly,
so a developer's own settings cannot leak in."""

_SIGTERM_REPEAT: Final = 0.5


def passthrough_env() -> dict[str, str]:
    """The variables of :data:`PASSTHROUGH_ENV` that our environment has."""
    return {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}


def parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that kills the child if the thread that spawned it dies.

    Linux only, and only from the main thread: the kernel ties the signal to the
    spawning *thread*, so spawning from a worker thread would kill the daemon
    as soon as that thread ends.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))

    return hook


def spawn_process_group(
    cmd: Sequence[str], *, env: Mapping[str, str], cwd: pathlib.Path, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` as the leader of a new process group (session), with no input, its
    output and errors into ``log``, and :func:`parent_death_hook`. Stop it with
    :func:`stop_process_group`."""
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=parent_death_hook(),
    )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_exited_unreaped(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited, without reaping it. True if it exited.

    Leaving the zombie in place keeps its pid (the process group id) reserved,
    so the group can still be signalled safely afterwards.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # already reaped
        if result is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop_process_group(proc: subprocess.Popen[bytes], stop_timeout: float) -> None:
    """Stop a process started with ``start_new_session`` and everything in its group: SIGTERM,
    repeated (a SIGTERM that arrives while a daemon is still starting may be swallowed) until
    it exits or ``stop_timeout`` passes, then SIGKILL to the whole group."""
    pgid = proc.pid  # start_new_session: the process leads its own group
    try:
        if proc.returncode is None:
            deadline = time.monotonic() + stop_timeout
            exited = False
            while not exited and time.monotonic() < deadline:
                _signal_group(pgid, signal.SIGTERM)
                exited = _wait_exited_unreaped(
                    proc.pid, min(_SIGTERM_REPEAT, max(0.0, deadline - time.monotonic()))
                )
            if not exited:
                _signal_group(pgid, signal.SIGKILL)
                _wait_exited_unreaped(proc.pid, 10.0)
    finally:
        # Anything left in the group goes too; the unreaped leader keeps the id reserved.
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10.0)


def stop_at_exit(stop: Callable[[], None]) -> None:
    """Run ``stop`` at interpreter exit, unless :func:`cancel_stop_at_exit` comes first."""
    atexit.register(stop)


def cancel_stop_at_exit(stop: Callable[[], None]) -> None:
    """Forget a ``stop`` registered with :func:`stop_at_exit` (it has run, or is running)."""
    atexit.unregister(stop)
