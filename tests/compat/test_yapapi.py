"""The reference Python SDK, yapapi, runs a service against LocalNet unmodified.

``yapapi_service.py`` is an ordinary yapapi app: it runs in its own virtualenv (see
``conftest.py``) as a subprocess pointed at LocalNet, served on loopback, through
``YAGNA_API_URL`` and ``YAGNA_APPKEY``, with a ``gftp`` stand-in first on ``PATH``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import attrs
import trio
from _cli_support import STOP_TIMEOUT, localnet_process, parse_assignments, read_lines

from golem_trio.localnet import (
    ProviderSpec,
    Reply,
    ledger,
    open_localnet,
    scripted_runtime_factory,
)

SERVICE_APP = pathlib.Path(__file__).with_name("yapapi_service.py")
ROUNDS = 3
#: How long (s) the app waits for its service instance to end before stopping it (a run where
#: all goes well takes about 5 s); yapapi then gives the instance 10 s more.
SERVICE_DEADLINE_S = 15
#: Longest the yapapi app may run (s), engine start to the last invoice.
APP_TIMEOUT_S = 50

# yapapi offers the provider's debit-note accept timeout back, clamped to at least 30 s, and
# asks for no debit-note interval nor payment timeout unless the expiration reaches 5 hours
# (its default service expiration is 3 hours): so this provider bills on its own interval,
# kept short so that debit notes arrive while the service runs, and needs no mid-agreement
# payments.
PROVIDER = ProviderSpec(
    name="yapapi-compat-provider",
    accept_timeout=60,
    min_accept_timeout=30,
    debit_note_interval=1,
    tick=0.1,
    price_duration_sec=Decimal("0.001"),
    price_cpu_sec=Decimal("0.001"),
    price_start=Decimal("0.01"),
)


def echo(args: Sequence[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n", duration_s=1.0)


@attrs.frozen
class AppRun:
    """What one run of the yapapi app left: its exit code and output, and LocalNet's ledger."""

    returncode: int
    stdout: str
    report: str
    book: dict[str, Any]


async def run_app(python: pathlib.Path, gftp_dir: pathlib.Path, *, capture: str) -> AppRun:
    """Run ``yapapi_service.py`` under ``python`` against a fresh LocalNet served on loopback."""
    runtime = scripted_runtime_factory({"/bin/echo": echo}, deploy_s=0.2, start_s=0.1)
    log_file = gftp_dir.parent / f"yapapi-{capture}.log"
    async with open_localnet([PROVIDER], runtime=runtime, serve=True) as net:
        assert net.url is not None
        assert net.url.startswith("http://127.0.0.1:")
        env = {
            **os.environ,
            "YAGNA_APPKEY": net.app_key,
            "YAGNA_API_URL": net.url,
            "YAGNA_SUBNET": "public",
            "PATH": f"{gftp_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "COMPAT_ROUNDS": str(ROUNDS),
            "COMPAT_CAPTURE": capture,
            "COMPAT_DEADLINE_S": str(SERVICE_DEADLINE_S),
            "COMPAT_LOG_FILE": str(log_file),
            "PYTHONUNBUFFERED": "1",
        }
        # yapapi derives its other API urls from YAGNA_API_URL; none may point elsewhere.
        for api in ("MARKET", "PAYMENT", "ACTIVITY", "NET"):
            env.pop(f"YAGNA_{api}_URL", None)
        started = time.monotonic()
        with trio.fail_after(APP_TIMEOUT_S):
            app = await trio.run_process(
                [str(python), str(SERVICE_APP)],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        elapsed = time.monotonic() - started
        stdout = app.stdout.decode(errors="replace")
        stderr = app.stderr.decode(errors="replace")
        report = (
            f"yapapi app exited {app.returncode} after {elapsed:.1f} s\n"
            f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n"
            f"(yapapi's debug log, API calls included: {log_file})"
        )
        return AppRun(app.returncode, stdout, report, ledger(net))


#: A document the requestor accepted: still waiting for its payment, or paid.
ACCEPTED = ("ACCEPTED", "SETTLED")


def check_life(run: AppRun) -> None:
    """The service ran and ended, and LocalNet's ledger shows everything settled."""
    assert run.returncode == 0, run.report
    lines = run.stdout.splitlines()
    assert "STATE running" in lines, run.report
    assert "RUN DONE" in lines, run.report
    assert lines[-2:] == ["STATE terminated", "GOLEM CLOSED"], run.report

    book = run.book
    (agreement,) = book["agreements"]
    assert agreement["state"] == "Terminated", book
    assert agreement["terminator"] == "Requestor", book
    (activity,) = book["activities"]
    assert activity["agreementId"] == agreement["id"], book
    assert activity["state"] == "Terminated", book
    assert book["debitNotes"], book
    for note in book["debitNotes"]:
        assert note["status"] in ACCEPTED, book
    (invoice,) = book["invoices"]
    assert invoice["agreementId"] == agreement["id"], book
    assert invoice["status"] in ACCEPTED, book
    assert book["allocations"], book
    for allocation in book["allocations"]:
        assert allocation["released"], book


def printed_outputs(run: AppRun) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("STDOUT")]


EXPECTED_OUTPUTS = [f"STDOUT compat-tick-{n}" for n in range(ROUNDS)]


async def test_yapapi_service_life_with_output_captured_at_end(
    yapapi_python: pathlib.Path, gftp_stub_dir: pathlib.Path
) -> None:
    run = await run_app(yapapi_python, gftp_stub_dir, capture="atEnd")
    check_life(run)
    assert printed_outputs(run) == EXPECTED_OUTPUTS, run.report


async def test_yapapi_service_life_with_default_capture(
    yapapi_python: pathlib.Path, gftp_stub_dir: pathlib.Path
) -> None:
    run = await run_app(yapapi_python, gftp_stub_dir, capture="default")
    check_life(run)
    # yapapi's default capture is `{"stream": {}}` and, without `stream_output=True`, it polls
    # the batch results: the exe-unit buffers streamed output for those results too.
    assert printed_outputs(run) == EXPECTED_OUTPUTS, run.report


async def test_yapapi_service_life_with_streamed_output(
    yapapi_python: pathlib.Path, gftp_stub_dir: pathlib.Path
) -> None:
    run = await run_app(yapapi_python, gftp_stub_dir, capture="stream")
    assert printed_outputs(run) == EXPECTED_OUTPUTS, run.report
    # After `run`, yapapi sends `[{"terminate": {}}]` and follows that batch on the event stream
    # too, after the activity has ended: the daemon then cuts the stream off (the exe-unit is
    # gone), and yapapi moves on instead of waiting for ever.
    check_life(run)


async def test_yapapi_app_runs_real_commands_on_the_command_line_localnet(
    yapapi_python: pathlib.Path, gftp_stub_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """``golem-trio localnet`` as a user starts it, with its default runtime: the app's
    ``/bin/sh -c`` script and ``/bin/echo`` commands run (for real where bubblewrap is, else
    in the scripted shell, which answers both the same)."""
    async with localnet_process(tmp_path / "localnet.err", "--port", "0") as localnet:
        assert localnet.stdout is not None
        variables = parse_assignments(await read_lines(localnet.stdout, 2))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")},
            **variables,
            "PATH": f"{gftp_stub_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "COMPAT_ROUNDS": str(ROUNDS),
            "COMPAT_START_SCRIPT": "echo started; date +%Y",
            "PYTHONUNBUFFERED": "1",
        }
        with trio.fail_after(APP_TIMEOUT_S):
            app = await trio.run_process(
                [str(yapapi_python), str(SERVICE_APP)],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        localnet.send_signal(signal.SIGINT)
        with trio.fail_after(STOP_TIMEOUT * 2):
            await localnet.wait()
    report = f"--- stdout ---\n{app.stdout.decode()}\n--- stderr ---\n{app.stderr.decode()}"
    assert app.returncode == 0, report
    lines = app.stdout.decode().splitlines()
    year = time.strftime("%Y", time.gmtime())
    # The app polls the state: a start that takes long enough is also seen as ``starting``.
    seen = [line for line in lines if line != "STATE starting"]
    assert seen[:4] == ["STATE pending", "START started", f"START {year}", "STATE running"], report
    assert [line for line in lines if line.startswith("STDOUT")] == EXPECTED_OUTPUTS, report
    assert lines[-2:] == ["STATE terminated", "GOLEM CLOSED"], report
    assert localnet.returncode == 0
    assert "Traceback" not in (tmp_path / "localnet.err").read_text()
