"""The real daemon backend's processes die with the Python process that started them, however
it ends: here by SIGKILL, which runs no cleanup at all (no ``atexit``, no ``finally``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

#: Started as the backend starts them: from trio's worker threads (which come and go).
_APP = textwrap.dedent(
    """
    import json, sys, time
    import trio
    from golem_trio.localnet.yagna import LocalChain, YagnaNode

    async def main() -> None:
        chain = await trio.to_thread.run_sync(LocalChain.start)
        node = await trio.to_thread.run_sync(
            lambda: YagnaNode.start(chain=chain, providers=1, base_dir=sys.argv[1])
        )
        print(json.dumps({"anvil": chain.pid, "yagna": node.pid}), flush=True)
        await trio.sleep_forever()

    trio.run(main)
    """
)

START_TIMEOUT = 120.0
#: The lifeline's SIGTERM grace and a margin.
GONE_WITHIN = 10.0


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_yagna_and_anvil_die_with_a_killed_parent(tmp_path: Path) -> None:
    app = subprocess.Popen(
        [sys.executable, "-c", _APP, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "app-stderr.txt").open("wb"),
        start_new_session=True,
    )
    groups: dict[str, int] = {}
    try:
        assert app.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line and time.monotonic() < deadline and app.poll() is None:
            line = app.stdout.readline()
        assert line, (tmp_path / "app-stderr.txt").read_text()[-3000:]
        groups = json.loads(line)
        for name, pgid in groups.items():
            assert _group_members(pgid), f"{name} is not running"

        app.send_signal(signal.SIGKILL)
        app.wait(timeout=10)

        deadline = time.monotonic() + GONE_WITHIN
        left = {name: _group_members(pgid) for name, pgid in groups.items()}
        while any(left.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
            left = {name: _group_members(pgid) for name, pgid in groups.items()}
        assert not any(left.values()), f"still running after the parent was killed: {left}"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        for pgid in groups.values():  # never leave them behind, whatever failed
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
