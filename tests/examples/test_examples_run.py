"""The examples end to end, as a user runs them: no YAGNA_APPKEY, so on the embedded LocalNet
(served on loopback, local runtime under bubblewrap), in a subprocess, on the real clock."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import httpx2
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


async def test_the_scaling_server_scales_a_cluster_over_http() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / "scaling_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=example_env(),
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(120):
            output = b""
            while b"serving on " not in output or not output.endswith(b"\n"):
                output += await process.stdout.receive_some()
            url = output.decode().split("serving on ", 1)[1].split()[0]
            async with httpx2.AsyncClient(base_url=url, timeout=30) as client:

                async def until_running(n: int) -> None:
                    # Polling over HTTP: the server is another process.
                    while True:
                        status = (await client.get("/status")).json()
                        if status["states"].get("running", 0) >= n:
                            return
                        await trio.sleep(0.2)

                await until_running(1)
                assert (await client.post("/scale/2")).json() == {"live": 2}
                await until_running(2)
                dates = (await client.get("/dates")).json()
                assert len(dates) == 2
                assert all(date and date[-4:].isdigit() for date in dates.values()), dates
                assert (await client.post("/scale/1")).json() == {"live": 1}
                assert (await client.post("/scale/11")).status_code == 400
                status = (await client.get("/status")).json()
                assert status["states"].get("running") == 1
                assert status["states"].get("terminated") == 1
            process.send_signal(signal.SIGINT)
            while chunk := await process.stdout.receive_some():
                output += chunk
            await process.wait()
        assert process.returncode == 0
        assert b"cluster stopped" in output
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
        await process.stdout.aclose()
