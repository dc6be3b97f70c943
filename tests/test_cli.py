"""``golem-trio localnet``: the two lines on stdout, serving, and a clean stop on SIGINT and
SIGTERM. The served command runs as a real subprocess on real time, every wait bounded."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from _cli_support import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    localnet_process,
    parse_assignments,
    read_lines,
    read_rest,
)
from _raw_flow import make_agreement, run_commands

from golem_trio.cli import main
from golem_trio.localnet import load_image_folder
from golem_trio.localnet.yagna import _chain


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
    keys, identities = [], []
    for run in range(2):
        async with localnet_process(
            tmp_path / f"stderr{run}.txt", "--port", "0", "--providers", "0", "--seed", "7"
        ) as process:
            assert process.stdout is not None
            variables = parse_assignments(await read_lines(process.stdout, 2))
            key = variables["YAGNA_APPKEY"]
            keys.append(key)
            with trio.fail_after(STOP_TIMEOUT):
                async with httpx2.AsyncClient(base_url=variables["YAGNA_API_URL"]) as client:
                    reply = await client.get("/me", headers={"Authorization": f"Bearer {key}"})
                    assert reply.status_code == 200
                    identities.append(reply.json()["identity"])
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT):
                await process.wait()
            assert process.returncode == 0
    # The seed gives the identity (the node id); the app key is random every time, so that
    # knowing the seed does not let anyone drive the network.
    assert identities[0] == identities[1]
    assert keys[0] != keys[1]
    assert all(re.fullmatch(r"[0-9a-f]{32}", key) for key in keys)


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
                # LocalNet's control routes want the app key, as the daemon's API does.
                assert (await client.get("/localnet/faults")).status_code == 401
                assert (await client.get("/localnet/ledger")).status_code == 401
                auth = {"Authorization": f"Bearer {variables['YAGNA_APPKEY']}"}
                reply = await client.get("/localnet/faults", headers=auth)
                assert reply.status_code == 200
                assert (await client.get("/localnet/ledger", headers=auth)).status_code == 200
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


@pytest.mark.parametrize("nodes", [1, 2])
async def test_the_yagna_backend_serves_a_real_daemon_and_stops_it(
    tmp_path: Path, nodes: int
) -> None:
    stderr_path = tmp_path / "stderr.txt"
    args = ("--backend", "yagna", "--providers", "2", "--nodes", str(nodes))
    async with localnet_process(stderr_path, *args) as process:
        assert process.stdout is not None
        with trio.fail_after(90):
            lines = await read_lines(process.stdout, 3)
        variables = parse_assignments(lines)
        # A real daemon also has a service bus, for gftp transfers.
        assert list(variables) == ["YAGNA_API_URL", "YAGNA_APPKEY", "GSB_URL"]
        assert variables["GSB_URL"].startswith(("unix:", "tcp://"))
        url, key = variables["YAGNA_API_URL"], variables["YAGNA_APPKEY"]
        host = ipaddress.ip_address(httpx2.URL(url).host)
        if nodes == 1:
            assert host.is_loopback
        else:
            # The requestor's daemon listens in the private network, reached over its veth.
            assert host.is_private
            assert not host.is_loopback
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
                assert me["identity"] not in offers
        process.send_signal(signal.SIGINT)
        with trio.fail_after(60):
            await process.wait()
        assert process.returncode == 0
    stderr = stderr_path.read_text()
    assert "real yagna daemon" in stderr
    assert "Traceback" not in stderr
    assert key not in stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "yagna", "--nodes", "0"],
        ["--backend", "yagna", "--nodes", "3"],
        ["--backend", "yagna", "--nodes", "two"],
        ["--nodes", "2"],
    ],
)
def test_a_bad_node_count_is_a_usage_error(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["localnet", *args]) == 2
    assert "--nodes" in capsys.readouterr().err


def test_two_nodes_without_root_say_what_they_need(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["localnet", "--backend", "yagna", "--nodes", "2"]) == 3
    err = one_line_error(capsys)
    assert "--nodes 2: two yagna nodes meet in a private network namespace" in err
    assert "does not run as root; or use --nodes 1" in err


def test_without_root_the_yagna_backend_defaults_to_one_node(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from golem_trio import cli

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    chosen: list[int] = []
    monkeypatch.setattr(cli, "_check_yagna_pieces", chosen.append)
    served: list[Any] = []

    async def serve(args: Any, runtime: object) -> int:
        await trio.lowlevel.checkpoint()
        served.append(args)
        return 0

    monkeypatch.setattr(cli, "_serve_yagna", serve)
    assert main(["localnet", "--backend", "yagna"]) == 0
    assert chosen == [1]
    (args,) = served
    assert args.nodes == 1
    assert "does not run as root" in args.one_node_why


def test_two_nodes_where_the_kernel_refuses_a_namespace_say_so() -> None:
    # Root without CAP_SYS_ADMIN: the kernel refuses unshare --net once the daemon's pieces
    # are all found.
    command = [sys.executable, "-m", "golem_trio.cli", "localnet", "--backend", "yagna"]
    done = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", *command, "--providers", "1", "--nodes", "2"],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.startswith("golem-trio localnet: error: --nodes 2: ")
    assert "unshare --net refused" in done.stderr
    assert done.stderr.endswith("; or use --nodes 1\n")
    assert done.stderr.count("\n") == 1


def test_fault_plans_are_for_the_emulator_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["localnet", "--backend", "yagna", "--faults", "chaos"]) == 2
    assert "emulator backend only" in capsys.readouterr().err


# --- runtimes: real commands by default ------------------------------------------------------

#: A demand's task package for an image LocalNet has no folder for.
UNKNOWN_PACKAGE = "hash:sha3:" + "0" * 56 + ":http://127.0.0.1:9/unknown.gvmi"


def empty_path(tmp_path: Path, *programs: str) -> dict[str, str]:
    """An environment whose ``PATH`` holds only stand-ins for ``programs`` (no bwrap, no npm,
    no anvil), and whose user-level folders are under ``tmp_path``."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for program in programs:
        stand_in = folder / program
        stand_in.write_text("#!/bin/sh\nexit 1\n")
        stand_in.chmod(0o755)
    return {"PATH": str(folder), "XDG_DATA_HOME": str(tmp_path / "data")}


async def serve_and_run(
    tmp_path: Path, args: list[str], package: str, *commands: list[str], env: dict[str, str]
) -> tuple[list[dict[str, Any]], str]:
    """Serve ``golem-trio localnet ARGS``, run ``commands`` in one activity of an agreement
    for ``package``, stop it with SIGINT; the batch's results and the command's stderr."""
    stderr_path = tmp_path / "stderr.txt"
    async with localnet_process(stderr_path, "--port", "0", *args, env=env) as process:
        assert process.stdout is not None
        variables = parse_assignments(await read_lines(process.stdout, 2))
        auth = {"Authorization": f"Bearer {variables['YAGNA_APPKEY']}"}
        async with httpx2.AsyncClient(
            base_url=variables["YAGNA_API_URL"], headers=auth, timeout=30
        ) as client:
            agreement_id = await make_agreement(client, {"golem.srv.comp.task_package": package})
            results = await run_commands(client, agreement_id, *commands)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(STOP_TIMEOUT * 2):
            await process.wait()
        assert process.returncode == 0
    stderr = stderr_path.read_text()
    assert "Traceback" not in stderr
    return results, stderr


async def test_without_bubblewrap_a_scripted_shell_answers_the_usual_commands(
    tmp_path: Path,
) -> None:
    results, stderr = await serve_and_run(
        tmp_path,
        ["--providers", "1"],
        UNKNOWN_PACKAGE,
        ["/bin/sh", "-c", "echo started; date +%Y && true || echo never"],
        ["/bin/echo", "-n", "hello"],
        ["sleep", "0.1"],
        ["/bin/sh", "-c", "echo a | cat"],
        env=empty_path(tmp_path),
    )
    assert "LocalNet: runtime scripted (bubblewrap is not installed)" in stderr
    assert "apt-get install bubblewrap" in stderr
    assert [r["result"] for r in results] == ["Ok", "Ok", "Ok", "Ok", "Ok", "Error"]
    year = time.strftime("%Y", time.gmtime())
    assert results[2]["stdout"] == f"started\n{year}\n"
    assert results[3]["stdout"] == "hello"
    assert "'|' is not supported by LocalNet's scripted shell" in results[5]["stderr"]


async def test_with_bubblewrap_commands_run_for_real_and_image_folders_are_served(
    tmp_path: Path,
) -> None:
    image = tmp_path / "images" / "hello"
    image.mkdir(parents=True)
    (image / "golem-image.json").write_text(json.dumps({"name": "hello"}))
    (image / "greeting.txt").write_text("hello from the image\n")
    store_hash = load_image_folder(image).content_hash
    package = f"hash:sha3:{store_hash}:http://127.0.0.1:9/hello.gvmi"
    script = "cat /golem/greeting.txt; echo pid=$$; ls /golem | tr '\\n' ' '"
    results, stderr = await serve_and_run(
        tmp_path,
        ["--providers", "1", "--images", str(tmp_path / "images")],
        package,
        ["/bin/sh", "-c", script],
        env={},
    )
    assert "LocalNet: runtime local: commands run for real" in stderr
    assert f"1 image folder(s): hello ({store_hash[:12]})" in stderr
    assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"], results
    lines = results[2]["stdout"].splitlines()
    assert lines[0] == "hello from the image"
    assert re.fullmatch(r"pid=\d+", lines[1])  # a real shell expanded $$
    assert "greeting.txt" in lines[2].split()


async def test_an_image_without_a_folder_starts_from_an_empty_golem(tmp_path: Path) -> None:
    results, stderr = await serve_and_run(
        tmp_path,
        ["--providers", "1", "--runtime", "local"],
        UNKNOWN_PACKAGE,
        ["/bin/sh", "-c", "ls -A /golem | sort | tr '\\n' ' '; echo; date +%Y"],
        env={},
    )
    assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"], results
    listing, year = results[2]["stdout"].splitlines()
    assert set(listing.split()) <= {"input", "output", "work", "resource", "run", "out"}
    assert year == time.strftime("%Y", time.gmtime())
    assert f"image {'0' * 56} is not registered with this LocalNet" in stderr


# --- missing pieces: one line and an exit status -----------------------------------------------


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("golem-trio localnet: error: ")
    return err


def test_the_local_runtime_without_bubblewrap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in empty_path(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert main(["localnet", "--runtime", "local", "--port", "0"]) == 3
    err = one_line_error(capsys)
    assert "--runtime local runs commands under bubblewrap (bwrap), which is not installed" in err
    assert "sudo apt-get install bubblewrap" in err


def test_image_folders_need_the_local_runtime_and_must_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["localnet", "--port", "0", "--runtime", "scripted", "--images", str(tmp_path)]
    assert main(args) == 2
    assert "image folders are for the local runtime only" in one_line_error(capsys)
    missing = tmp_path / "no-such-folder"
    assert main(["localnet", "--port", "0", "--images", str(missing)]) == 2
    assert "is not a directory" in one_line_error(capsys)


def test_the_yagna_backend_without_golem_node_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec

    def without_golem_node(name: str, *args: Any) -> Any:
        return None if name == "golem_node" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_golem_node)
    assert main(["localnet", "--backend", "yagna"]) == 3
    err = one_line_error(capsys)
    assert "the real yagna daemon (PyPI package golem-node==0.17.6) is not installed" in err
    assert "pip install 'golem-trio[yagna]'" in err


@pytest.mark.parametrize("npm", [True, False])
def test_the_yagna_backend_without_anvil_says_how_to_get_it(
    npm: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in empty_path(tmp_path, *(["npm"] if npm else [])).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOLEM_TRIO_ANVIL", raising=False)
    # Nowhere the project would look holds anvil: not the virtualenv, not the checkout.
    monkeypatch.setattr(_chain, "_project_roots", lambda: [tmp_path / "data" / "golem-trio"])
    assert main(["localnet", "--backend", "yagna"]) == 3
    err = one_line_error(capsys)
    install = (
        f"npm install --prefix {tmp_path}/data/golem-trio/npm @foundry-rs/anvil-linux-amd64@1.7.1"
    )
    if npm:
        assert "pays on a local chain, anvil, which is not installed; install it with: " in err
    else:
        assert "and neither is npm, which installs it; install Node.js and npm" in err
    assert install in err


def test_anvil_is_found_in_the_user_level_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("GOLEM_TRIO_ANVIL", raising=False)
    monkeypatch.setattr(_chain, "_project_roots", lambda: [tmp_path / "golem-trio"])
    anvil = tmp_path / "golem-trio/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    anvil.parent.mkdir(parents=True)
    anvil.write_text("#!/bin/sh\n")
    anvil.chmod(0o755)
    assert _chain.anvil_user_prefix() == tmp_path / "golem-trio" / "npm"
    assert _chain.find_anvil_binary() == anvil


def test_an_anvil_override_that_is_no_executable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOLEM_TRIO_ANVIL", str(tmp_path / "anvil"))
    assert main(["localnet", "--backend", "yagna"]) == 3
    err = one_line_error(capsys)
    assert f"GOLEM_TRIO_ANVIL={tmp_path / 'anvil'} is not an executable file" in err


def test_the_makefile_installs_the_anvil_version_the_project_names() -> None:
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert f"ANVIL_VERSION := {_chain.ANVIL_VERSION}\n" in makefile


def without_privileges(argv: list[str]) -> list[str]:
    """``argv`` run with no right to bind low ports or to bypass file permissions: root drops
    those capabilities (setpriv, util-linux); another user has none to drop."""
    if os.geteuid() != 0:
        return argv
    drop = "-net_bind_service,-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={drop}", *argv]


def run_cli(argv: list[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "golem_trio.cli", "localnet", *argv]
    return subprocess.run(
        without_privileges(command),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )


def test_a_port_it_may_not_bind_is_a_clear_error() -> None:
    first_free = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if first_free == 0:
        pytest.skip("this machine lets anyone bind any port")
    port = first_free - 1
    done = run_cli(["--port", str(port), "--providers", "1", "--runtime", "scripted"])
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"golem-trio localnet: error: cannot listen on 127.0.0.1:{port}: permission denied "
        f"(ports below 1024 need root or CAP_NET_BIND_SERVICE; try a port above 1023, or 0)\n"
    )


def test_an_image_folder_it_may_not_read_is_a_clear_error(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "hello").mkdir(parents=True)
    images.chmod(0)
    try:
        done = run_cli(["--port", "0", "--runtime", "local", "--images", str(images)])
    finally:
        images.chmod(0o755)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"golem-trio localnet: error: cannot read the image folder {images}: permission denied\n"
    )
