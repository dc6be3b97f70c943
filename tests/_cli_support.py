"""Running ``golem-trio localnet`` as a subprocess, as a user would, for the tests that serve
LocalNet from the command line."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


@asynccontextmanager
async def localnet_process(
    stderr_path: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[trio.Process]:
    """``python -m golem_trio.cli localnet ARGS``, killed if still running at the end;
    ``env`` is added to the environment."""
    with stderr_path.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "golem_trio.cli", "localnet", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


async def read_lines(stream: trio.abc.ReceiveStream, count: int) -> list[str]:
    """The first ``count`` lines of ``stream`` (fewer if it ends first)."""
    data = b""
    with trio.fail_after(STARTUP_TIMEOUT):
        while data.count(b"\n") < count:
            chunk = await stream.receive_some()
            if not chunk:
                break
            data += chunk
    return data.decode().splitlines()


async def read_rest(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    with trio.fail_after(STOP_TIMEOUT):
        while chunk := await stream.receive_some():
            data += chunk
    return data


def parse_assignments(lines: list[str]) -> dict[str, str]:
    """What ``eval`` of the lines would set, shell quoting included."""
    variables = {}
    for line in lines:
        (word,) = shlex.split(line)
        name, sep, value = word.partition("=")
        assert sep == "=", line
        assert name.isidentifier(), line
        variables[name] = value
    return variables
