"""The examples end to end, as a user runs them: no YAGNA_APPKEY, so on the embedded LocalNet
(served on loopback, local runtime under bubblewrap), in a subprocess, on the real clock."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import trio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def run_example(argv: list[str], cwd: Path, limit: float) -> subprocess.CompletedProcess[str]:
    with trio.fail_after(limit):
        done = await trio.run_process(
            [sys.executable, *argv],
            cwd=cwd,
            env=example_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_the_guides_simple_service_runs_end_to_end(tmp_path: Path) -> None:
    # A copy, so the plots it downloads beside the script land in the temporary folder.
    folder = tmp_path / "simple_service"
    shutil.copytree(EXAMPLES / "simple_service", folder, ignore=shutil.ignore_patterns("*.png"))
    done = await run_example(
        [str(folder / "simple_service.py"), "--running-time", "22"], tmp_path, 240
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "embedded LocalNet" in output
    assert output.count("stats (") >= 2, output
    assert "plot downloaded:" in output
    assert "stopping the cluster" in output
    assert "Cost summary" in output
    assert "released" in output
    assert "Golem engine has shut down" in output
    assert "failed" not in done.stderr, done.stderr
    plots = sorted(folder.glob("*.png"))
    assert len(plots) >= 2
    for plot in plots:
        assert png_size(plot.read_bytes()) == (640, 480)


async def test_the_hello_service_prints_the_providers_date(tmp_path: Path) -> None:
    done = await run_example([str(EXAMPLES / "hello_service.py"), "5"], tmp_path, 180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    dates = [line for line in done.stdout.splitlines() if "localnet-provider-" in line]
    assert dates, output
    # `date` output, e.g. "Fri Nov 27 22:13:05 UTC 2026".
    assert all(line.rstrip()[-4:].isdigit() for line in dates), dates
