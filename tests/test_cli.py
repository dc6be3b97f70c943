"""``golem-trio localnet``: the two lines on stdout, serving, and a clean stop on SIGINT and
SIGTERM. The served command runs as a real subprocess on real time, every wait bounded."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
import trio

from golem_trio.cli import main

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


@asynccontextmanager
async def localnet_process(stderr_path: Path, *args: str) -> AsyncIterator[trio.Process]:
    """``python -m golem_trio.cli localnet ARGS``, killed if still running at the end."""
    with stderr_path.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "golem_trio.cli", "localnet", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_localnet_prints_the_url_and_key_serves_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    stderr_path = tmp_path / "stderr.txt"
    async with localnet_process(stderr_path, "--port", "0", "--providers", "2") as process:
        assert process.stdout is not None
        lines = await read_lines(process.stdout, 2)
        variables = parse_assignments(lines)
        assert list(variables) == ["YAGNA_API_URL", "YAGNA_APPKEY"]
        url, key = variables["YAGNA_API_URL"], variables["YAGNA_APPKEY"]
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        assert key

        with trio.fail_after(STOP_TIMEOUT):
            async with httpx2.AsyncClient(base_url=url) as client:
                reply = await client.get("/me", headers={"Authorization": f"Bearer {key}"})
                assert reply.status_code == 200
                me = reply.json()
                assert (me["name"], me["role"]) == ("requestor", "manager")
                assert me["identity"].startswith("0x")
                assert (await client.get("/me")).status_code == 401
                assert (await client.get("/version/get")).status_code == 200

        process.send_signal(stop)
        with trio.fail_after(STOP_TIMEOUT):
            await process.wait()
        assert process.returncode == 0
        # Nothing but the two lines on stdout.
        assert await read_rest(process.stdout) == b""
    stderr = stderr_path.read_text()
    assert url in stderr
    assert f"{stop.name} received" in stderr
    assert "Traceback" not in stderr
    assert key not in stderr


async def test_the_same_seed_gives_the_same_identity(tmp_path: Path) -> None:
    keys = []
    for run in range(2):
        async with localnet_process(
            tmp_path / f"stderr{run}.txt", "--port", "0", "--providers", "0", "--seed", "7"
        ) as process:
            assert process.stdout is not None
            keys.append(parse_assignments(await read_lines(process.stdout, 2))["YAGNA_APPKEY"])
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT):
                await process.wait()
            assert process.returncode == 0
    assert keys[0] == keys[1]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::", "example.com", "[::]"])
def test_a_host_off_loopback_is_refused(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["localnet", "--host", host, "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "only listens on loopback" in err


def test_an_unknown_fault_plan_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["localnet", "--faults", "x", "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--faults x: no fault plan named 'x'" in err


def test_a_malformed_fault_plan_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("[1, 2")
    assert main(["localnet", "--faults", str(plan), "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"--faults {plan}" in err


async def test_a_named_fault_plan_is_served(tmp_path: Path) -> None:
    async with localnet_process(
        tmp_path / "stderr.txt", "--port", "0", "--providers", "1", "--faults", "flaky-daemon"
    ) as process:
        assert process.stdout is not None
        variables = parse_assignments(await read_lines(process.stdout, 2))
        with trio.fail_after(STOP_TIMEOUT):
            async with httpx2.AsyncClient(base_url=variables["YAGNA_API_URL"]) as client:
                reply = await client.get("/localnet/faults")
                assert reply.status_code == 200
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(STOP_TIMEOUT):
            await process.wait()
        assert process.returncode == 0


@pytest.mark.parametrize(
    "args",
    [["localnet", "--port", "70000"], ["localnet", "--providers", "-1"], ["localnet", "--port"]],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert capsys.readouterr().out == ""


def test_no_command_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "localnet" in capsys.readouterr().err


def test_a_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["localnet", "--port", str(port), "--providers", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in err
    assert "Traceback" not in err


def test_python_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "golem_trio.cli", "localnet", "--faults", "no-such-plan.json"],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert "no fault plan named 'no-such-plan.json'" in done.stderr


async def test_the_yagna_backend_serves_a_real_daemon_and_stops_it(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.txt"
    async with localnet_process(stderr_path, "--backend", "yagna", "--providers", "2") as process:
        assert process.stdout is not None
        with trio.fail_after(90):
            lines = await read_lines(process.stdout, 2)
        variables = parse_assignments(lines)
        url, key = variables["YAGNA_API_URL"], variables["YAGNA_APPKEY"]
        assert url.startswith("http://127.0.0.1:")
        with trio.fail_after(30):
            async with httpx2.AsyncClient(base_url=url) as client:
                auth = {"Authorization": f"Bearer {key}"}
                version = (await client.get("/version/get", headers=auth)).json()
                assert version["current"]["version"] == "0.17.6"
                me = (await client.get("/me", headers=auth)).json()
                assert me["identity"].startswith("0x")
                # The simulated providers' offers are on the real daemon's market.
                expiration = int((time.time() + 900) * 1000)
                demand = {
                    "properties": {
                        "golem.srv.comp.expiration": expiration,
                        "golem.node.debug.subnet": "public",
                    },
                    "constraints": "(golem.node.debug.subnet=public)",
                }
                sub = (
                    await client.post("/market-api/v1/demands", json=demand, headers=auth)
                ).json()
                offers: set[str] = set()
                while len(offers) < 2:
                    events = await client.get(
                        f"/market-api/v1/demands/{sub}/events",
                        params={"timeout": 2, "maxEvents": 10},
                        headers=auth,
                    )
                    offers |= {e["proposal"]["issuerId"] for e in events.json()}
        process.send_signal(signal.SIGINT)
        with trio.fail_after(60):
            await process.wait()
        assert process.returncode == 0
    stderr = stderr_path.read_text()
    assert "real yagna daemon" in stderr
    assert "Traceback" not in stderr
    assert key not in stderr


def test_fault_plans_are_for_the_emulator_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["localnet", "--backend", "yagna", "--faults", "chaos"]) == 2
    assert "emulator backend only" in capsys.readouterr().err
