"""The command server that lives inside one local-runtime sandbox (run by the sandbox's python3).

It is started once per activity, inside bubblewrap, by :class:`~._local_runtime.LocalRuntime`
and runs every ``run`` command of that activity, so the processes a command leaves behind stay
in the same PID namespace for the next command. When its stdin closes (the runtime ended it,
or the process that ran it died) it kills every process of the sandbox and exits. It uses
the standard library only (the sandbox's python3 may be any 3.8+), and none of ``golem_trio``.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.

- ``{"op": "hello", "id": N}`` -> ``{"id": N, "ok": true, "pid": <pid in the sandbox>}``
- ``{"op": "run", "id": N, "argv": [...], "env": {...}, "cwd": "/golem/work",
  "timeout": seconds, "limit": bytes}`` -> ``{"id": N, "exit_code": int, "stdout": base64,
  "stderr": base64, "stdout_truncated": bool, "stderr_truncated": bool, "timed_out": bool,
  "cpu": seconds, "error": str | null}``
- ``{"op": "kill", "id": N}``: kill the process group of run ``N`` (no reply of its own; run
  ``N`` replies as it ends).

Each run happens in a thread, in a new session (its own process group), with stdin from
``/dev/null``; it ends when its process exits (output written after that by processes it left
in the background is not waited for). The server exits when its stdin closes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

#: How long, after a command exits, its output pipes are still read (background processes it
#: started may hold them open).
DRAIN_S = 0.2

_write_lock = threading.Lock()
_groups: dict[int, int] = {}
_groups_lock = threading.Lock()


def _reply(message: dict[str, Any]) -> None:
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class _Capture:
    """Reads one output pipe into a capped buffer; past the cap it drains and discards."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self.pipe = pipe
        self.limit = limit
        self.data = bytearray()
        self.truncated = False
        self.closed = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        fd = self.pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                if self.closed:
                    continue
                room = self.limit - len(self.data)
                if len(chunk) > room:
                    self.data += chunk[: max(room, 0)]
                    self.truncated = True
                else:
                    self.data += chunk
        self.pipe.close()

    def result(self) -> tuple[bytes, bool]:
        self.thread.join(DRAIN_S)
        with self.lock:
            self.closed = True
            return bytes(self.data), self.truncated


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _run(request: dict[str, Any]) -> None:
    run_id = request["id"]
    reply: dict[str, Any] = {
        "id": run_id,
        "exit_code": -1,
        "stdout": "",
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "timed_out": False,
        "cpu": 0.0,
        "error": None,
    }
    try:
        proc = subprocess.Popen(
            request["argv"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=request.get("cwd") or "/",
            env=request.get("env") or {},
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError:
        reply.update(exit_code=127, error="{}: command not found".format(request["argv"][0]))
        _reply(reply)
        return
    except PermissionError:
        reply.update(exit_code=126, error="{}: permission denied".format(request["argv"][0]))
        _reply(reply)
        return
    except OSError as exc:
        reply.update(exit_code=126, error="{}: {}".format(request["argv"][0], exc))
        _reply(reply)
        return
    with _groups_lock:
        _groups[run_id] = proc.pid
    assert proc.stdout is not None
    assert proc.stderr is not None
    limit = int(request.get("limit") or 1 << 20)
    out = _Capture(proc.stdout, limit)
    err = _Capture(proc.stderr, limit)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        _kill_group(proc.pid)

    timer = threading.Timer(float(request.get("timeout") or 300.0), expire)
    timer.daemon = True
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        with _groups_lock:
            _groups.pop(run_id, None)
    # wait4 reaped it; tell Popen so it never waits again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stdout_truncated = out.result()
    stderr, stderr_truncated = err.result()
    reply.update(
        exit_code=proc.returncode,
        stdout=base64.b64encode(stdout).decode(),
        stderr=base64.b64encode(stderr).decode(),
        stdout_truncated=stdout_truncated,
        stderr_truncated=stderr_truncated,
        timed_out=timed_out.is_set(),
        cpu=rusage.ru_utime + rusage.ru_stime,
    )
    _reply(reply)


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.get("op")
        if op == "hello":
            _reply({"id": request["id"], "ok": True, "pid": os.getpid()})
        elif op == "run":
            threading.Thread(target=_run, args=(request,), daemon=True).start()
        elif op == "kill":
            with _groups_lock:
                pgid = _groups.get(request["id"])
            if pgid is not None:
                _kill_group(pgid)
        else:
            _reply({"id": request.get("id"), "error": f"unknown op {op!r}"})


def _end_namespace() -> None:
    """Kill every other process of the sandbox's PID namespace (the namespace's init, bwrap,
    is spared by the kernel and exits once it has no children left)."""
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGKILL)


if __name__ == "__main__":
    # Only inside a fresh PID namespace (bwrap --unshare-pid), where "every process" means
    # the sandbox's own: the runtime passes the flag, and this process is one of the first.
    own_namespace = "--own-pid-namespace" in sys.argv[1:] and os.getpid() < 16
    try:
        main()
    finally:
        # stdin closed: the runtime is gone (or done). Nothing of the sandbox may outlive it.
        if own_namespace:
            _end_namespace()
