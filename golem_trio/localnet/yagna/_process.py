"""The local processes of the real daemon backend (``yagna``, ``anvil``): how they start and stop.

Each runs in a process group of its own, on loopback, with a small environment passed through
from ours, its output in a log file. It is stopped by process group (SIGTERM, repeated, then
SIGKILL) when its owner stops it, and its owner's ``stop`` is also registered to run at
interpreter exit.

It also dies with this process, however this process ends (``SIGKILL`` included, from any
thread): it runs under a *lifeline*, a small Python wrapper that leads the process group,
starts the command as its child and reads its standard input, the read end of a pipe whose
write end only this process holds. When this process dies the kernel closes that end; the
wrapper reads end-of-file and stops its group (SIGTERM, then SIGKILL after
:data:`LIFELINE_GRACE` seconds). The command itself gets ``PR_SET_PDEATHSIG`` (Linux) against
the wrapper, whose only thread lives as long as the wrapper does, so it dies with the wrapper
too. (``PR_SET_PDEATHSIG`` set against *this* process would not do: the kernel ties it to the
spawning thread, and trio spawns processes from worker threads that come and go.)

::

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
from types import TracebackType
from typing import IO, ClassVar, Final, Self

__all__ = [
    "LIFELINE_GRACE",
    "LOOPBACK",
    "PASSTHROUGH_ENV",
    "Started",
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

LIFELINE_GRACE: Final = 3.0
"""Seconds a process whose parent died has to stop after SIGTERM, before SIGKILL."""

# The lifeline wrapper (run as ``python -I -c _LIFELINE GRACE CMD...``): the standard library
# only, no imports from this package (it runs in the child's environment).
_LIFELINE: Final = r"""
import ctypes, os, signal, subprocess, sys, threading, time
grace = float(sys.argv[1])
# The group's SIGTERM (a stop by the owner) is for the command; the wrapper waits for it. A
# handler, not SIG_IGN, so the command starts with the default.
signal.signal(signal.SIGTERM, lambda *_: None)
signal.signal(signal.SIGINT, lambda *_: None)
def die_with_wrapper():
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
try:
    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, preexec_fn=die_with_wrapper)
except OSError as exc:
    print(f"lifeline: cannot start {sys.argv[2]}: {exc}", file=sys.stderr, flush=True)
    sys.exit(127)
def watch():
    try:
        while os.read(0, 1024):
            pass
    except OSError:
        pass
    # The parent is gone: stop the whole group.
    try:
        os.killpg(0, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(0, signal.SIGKILL)
threading.Thread(target=watch, daemon=True).start()
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
"""

_lifeline_lock = threading.Lock()
#: The pipe of the lifeline: (read end, write end); made once per process, never closed here.
_lifeline_fds: tuple[int, int] | None = None


def _lifeline_read_end() -> int:
    """The read end of this process's lifeline pipe (made on first use). Both ends are not
    inheritable: the read end is passed explicitly as a wrapper's standard input, the write end
    stays in this process only, so it closes exactly when this process dies."""
    global _lifeline_fds
    with _lifeline_lock:
        if _lifeline_fds is None:
            _lifeline_fds = os.pipe()
        return _lifeline_fds[0]


def _forget_lifeline_after_fork() -> None:
    """In a forked child, close the copy of the parent's lifeline: its own is made if needed."""
    global _lifeline_fds
    fds, _lifeline_fds = _lifeline_fds, None
    if fds is not None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


os.register_at_fork(after_in_child=_forget_lifeline_after_fork)


def passthrough_env() -> dict[str, str]:
    """The variables of :data:`PASSTHROUGH_ENV` that our environment has."""
    return {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}


def parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that kills the child if the thread that spawned it dies.

    Linux only, and only from the main thread: the kernel ties the signal to the
    spawning *thread*, so spawning from a worker thread would kill the daemon
    as soon as that thread ends. :func:`spawn_process_group` does not need it (its
    lifeline works from any thread); kept for callers that spawn processes themselves.
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
    """Start ``cmd`` in a new process group (session) under its lifeline (see the module's
    notes), with no input, its output and errors into ``log``. The process returned is the
    group's leader, the wrapper: it exits when ``cmd`` exits, with its exit status (``128 + N``
    for signal ``N``), and ``cmd`` and its group die when this process dies. Stop it with
    :func:`stop_process_group`."""
    return subprocess.Popen(
        [sys.executable, "-I", "-c", _LIFELINE, str(LIFELINE_GRACE), *cmd],
        env=env,
        cwd=cwd,
        stdin=_lifeline_read_end(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
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


class Started:
    """What starts once, is used in a ``with`` block and then stops for good: the chain, a
    daemon, the private network. A subclass names its error (:attr:`error`), calls
    :meth:`_claim_start` first thing when it boots and :meth:`_claim_stop` first thing when
    it stops (idempotent), and is stopped at interpreter exit if its owner never did."""

    #: Raised for a second start or a start after stopping.
    error: ClassVar[type[Exception]] = RuntimeError

    def __init__(self) -> None:
        self._started = False
        self._closed = False

    def __enter__(self) -> Self:
        if not self._started:
            self._boot()
        elif self._closed:
            self._claim_start()  # raises: stopped
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _boot(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _claim_start(self) -> None:
        """Mark it started (and to be stopped at exit); a stopped or started one raises."""
        name = type(self).__name__
        if self._closed:
            raise self.error(f"this {name} was stopped; create a new one")
        if self._started:
            raise self.error(f"this {name} is already started")
        self._started = True
        stop_at_exit(self.stop)

    def _claim_stop(self) -> bool:
        """Mark it stopped; ``False`` when it was already (then there is nothing to do)."""
        if self._closed:
            return False
        self._closed = True
        cancel_stop_at_exit(self.stop)
        return True
