"""The local runtime: real processes in a bubblewrap sandbox, on the real clock.

These tests need bubblewrap (``apt-get install bubblewrap``; ``make`` installs it when run as
root). Without it they fail with :class:`BubblewrapMissing` and that install hint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from _raw_flow import make_agreement
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from golem_trio.localnet import ProviderSpec, open_localnet
from golem_trio.localnet.providers import (
    BubblewrapMissing,
    ImageStore,
    LocalRuntime,
    LocalRuntimeConfig,
    RuntimeContext,
    RuntimeFailure,
    UnknownImage,
    image_hash,
    local_runtime_factory,
)

WRITE_STATS = """#!/bin/sh
mkdir -p /golem/out
echo "stats $*" > /golem/out/stats
echo "wrote /golem/out/stats"
"""


def make_image(folder: Path) -> Path:
    (folder / "run").mkdir(parents=True)
    script = folder / "run" / "write_stats.sh"
    script.write_text(WRITE_STATS)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (folder / "resource").mkdir()
    (folder / "resource" / "data.txt").write_text("resource data\n")
    return folder


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_image(tmp_path / "image")


def runtime_for(image: Path, tmp_path: Path, **options: Any) -> LocalRuntime:
    config = LocalRuntimeConfig(root=tmp_path / "sandboxes", **options)
    return LocalRuntime(image, config, name="test")


@pytest.fixture
async def runtime(image: Path, tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    local = runtime_for(image, tmp_path)
    try:
        await local.deploy({})
        await local.start([])
        yield local
    finally:
        with trio.move_on_after(20, shield=True):
            await local.terminate()


def host_processes_with(marker: str) -> list[int]:
    """Host PIDs whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


async def sh(runtime: LocalRuntime, script: str) -> tuple[int, str]:
    outcome = await runtime.run("/bin/sh", ["-c", script], None)
    return outcome.exit_code, outcome.stdout.decode()


# --- images -----------------------------------------------------------------------------------


def test_image_hash_is_a_content_digest(image: Path, tmp_path: Path) -> None:
    digest = image_hash(image)
    assert len(digest) == 56
    int(digest, 16)
    assert image_hash(make_image(tmp_path / "copy")) == digest
    (image / "run" / "extra").write_text("x")
    assert image_hash(image) != digest


def test_image_store_resolves_task_packages(image: Path) -> None:
    store = ImageStore()
    digest = store.register(image)
    assert digest in store
    assert store.image_for(digest) == image.resolve()
    assert store.image_for(digest.upper()) == image.resolve()
    package = f"hash:sha3:{digest}:http://girepo.dev.golem.network:8000/local.gvmi"
    assert store.image_for(package) == image.resolve()
    assert store.image_for(f"hash://sha3:{digest}:http://x/y.gvmi") == image.resolve()
    with pytest.raises(UnknownImage, match="not registered"):
        store.image_for("0" * 56)
    with pytest.raises(UnknownImage, match="not an image hash"):
        store.image_for("nonsense")


async def test_factory_picks_the_demanded_image(image: Path, tmp_path: Path) -> None:
    store = ImageStore()
    digest = store.register(image)

    def context(properties: dict[str, object]) -> RuntimeContext:
        return RuntimeContext("act", "agr", "req", "prov", demand_properties=properties)

    factory = local_runtime_factory(store, tmp_path / "sandboxes", command_timeout=7.0)
    package = f"hash:sha3:{digest}:http://127.0.0.1/image.gvmi"
    found = factory(context({"golem.srv.comp.task_package": package}))
    assert found.image == store.image_for(digest)
    assert found.config.command_timeout == 7.0
    assert found.config.root == tmp_path / "sandboxes"
    missing = factory(context({"golem.srv.comp.task_package": f"hash:sha3:{'1' * 56}:x"}))
    with pytest.raises(RuntimeFailure, match="not registered"):
        await missing.deploy({})
    with pytest.raises(RuntimeFailure, match="task_package"):
        await factory(context({})).deploy({})


# --- the sandbox ------------------------------------------------------------------------------


async def test_missing_bubblewrap_is_a_typed_error(image: Path, tmp_path: Path) -> None:
    local = runtime_for(image, tmp_path, bwrap=str(tmp_path / "no-such-bwrap"))
    with pytest.raises(BubblewrapMissing, match="apt-get install bubblewrap"):
        await local.deploy({})
    assert local.folder is None
    await local.terminate()


async def test_sandbox_that_cannot_start_says_why(image: Path, tmp_path: Path) -> None:
    local = runtime_for(image, tmp_path, python="/no/such/python3")
    with pytest.raises(RuntimeFailure, match=r"sandbox did not start: .*/no/such/python3"):
        await local.deploy({})
    assert local.folder is None
    assert list((tmp_path / "sandboxes").iterdir()) == []
    await local.terminate()


async def test_cancelled_run_kills_the_command(runtime: LocalRuntime) -> None:
    marker = f"3600.{secrets.randbelow(10**9)}"
    with trio.move_on_after(0.5) as scope:
        await runtime.run("/bin/sleep", [marker], None)
    assert scope.cancelled_caught
    assert await sh(runtime, "echo next") == (0, "next\n")
    assert host_processes_with(marker) == []


async def test_run_gives_real_output_and_exit_codes(runtime: LocalRuntime) -> None:
    outcome = await runtime.run("/golem/run/write_stats.sh", ["a", "b"], None)
    assert (outcome.exit_code, outcome.stdout, outcome.message) == (
        0,
        b"wrote /golem/out/stats\n",
        None,
    )
    assert (runtime.golem / "out" / "stats").read_text() == "stats a b\n"
    assert await sh(runtime, "cat /golem/out/stats") == (0, "stats a b\n")
    failed = await runtime.run("/bin/sh", ["-c", "echo oops >&2; exit 3"], None)
    assert (failed.exit_code, failed.stderr) == (3, b"oops\n")
    missing = await runtime.run("/golem/run/absent", [], None)
    assert missing.exit_code == 127
    assert missing.message == "/golem/run/absent: command not found"


async def test_paths_are_golem_paths_inside(runtime: LocalRuntime) -> None:
    assert await sh(runtime, "pwd") == (0, "/golem/work\n")
    code, listing = await sh(runtime, "ls /golem")
    assert code == 0
    assert set(listing.split()) >= {"input", "output", "work", "resource", "run", "out"}
    assert await sh(runtime, "cat /golem/resource/data.txt") == (0, "resource data\n")
    await sh(runtime, "echo made > /golem/output/result.txt")
    assert (runtime.golem / "output" / "result.txt").read_text() == "made\n"


async def test_host_files_outside_the_binds_are_hidden(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("secret")
    assert (await sh(runtime, f"test -e {secret}"))[0] == 1
    assert (await sh(runtime, f"test -e {runtime.golem}"))[0] == 1
    code, listing = await sh(runtime, "ls /")
    assert code == 0
    allowed = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "proc"}
    allowed |= {"dev", "tmp", "golem", "run"}
    assert set(listing.split()) <= allowed | {".exe-unit"}
    assert (await sh(runtime, "touch /usr/x"))[0] != 0


async def test_background_process_lives_until_terminate(image: Path, tmp_path: Path) -> None:
    marker = f"3600.{secrets.randbelow(10**9)}"
    local = runtime_for(image, tmp_path)
    try:
        await local.deploy({})
        await local.start([])
        code, _ = await sh(local, f"sleep {marker} & echo $! > /golem/work/pid")
        assert code == 0
        code, first = await sh(local, "cat /golem/work/pid")
        assert code == 0
        pid = first.strip()
        code, cmdline = await sh(local, f"tr '\\0' ' ' < /proc/{pid}/cmdline")
        assert (code, cmdline.strip()) == (0, f"sleep {marker}")
        assert await sh(local, "cat /golem/work/pid") == (0, first)
        assert len(host_processes_with(marker)) == 1
    finally:
        with trio.move_on_after(20, shield=True):
            await local.terminate()
    assert host_processes_with(marker) == []
    assert not (tmp_path / "sandboxes").exists() or not any((tmp_path / "sandboxes").iterdir())


async def test_time_limit_kills_the_command(image: Path, tmp_path: Path) -> None:
    local = runtime_for(image, tmp_path, command_timeout=0.5)
    try:
        await local.deploy({})
        outcome = await local.run("/bin/sleep", ["60"], None)
        assert outcome.exit_code != 0
        assert outcome.message is not None
        assert "time limit of 0.5s exceeded" in outcome.message
        assert (await sh(local, "echo still here"))[1] == "still here\n"
    finally:
        with trio.move_on_after(20, shield=True):
            await local.terminate()


async def test_output_is_capped(image: Path, tmp_path: Path) -> None:
    local = runtime_for(image, tmp_path, output_limit=1000)
    try:
        await local.deploy({})
        outcome = await local.run("/bin/sh", ["-c", "head -c 5000 /dev/zero"], None)
        assert (outcome.exit_code, len(outcome.stdout)) == (0, 1000)
        assert outcome.message == "stdout truncated to 1000 bytes"
    finally:
        with trio.move_on_after(20, shield=True):
            await local.terminate()


async def test_deploy_env_and_usage(image: Path, tmp_path: Path) -> None:
    local = runtime_for(image, tmp_path, vpn_ports=(80,))
    try:
        params = {"env": {"GREETING": "hi"}, "net": [{"nodeIp": "192.168.0.2"}]}
        await local.deploy(params)
        _, env = await sh(local, "echo $GREETING $GOLEM_VPN_IP $GOLEM_VPN_PORT_80")
        endpoint = local.vpn_endpoint(80)
        assert endpoint is not None
        assert env.split() == ["hi", "192.168.0.2", str(endpoint[1])]
        assert (await sh(local, "cat /golem/.vpn-ports.json"))[1] == f'{{"80": {endpoint[1]}}}'
        await local.run("/usr/bin/python3", ["-c", "sum(range(3 * 10**6))"], None)
        cpu, duration = await local.usage()
        assert cpu > 0
        assert duration > 0
    finally:
        with trio.move_on_after(20, shield=True):
            await local.terminate()
    assert await local.usage() == await local.usage()
    assert (await local.run("/bin/true", [], None)).exit_code == -1


# --- transfers --------------------------------------------------------------------------------


@pytest.fixture
async def file_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    files = {"in.txt": b"payload from the requestor\n"}

    async def get(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return Response(status_code=404)
        return Response(files[name], media_type="application/octet-stream")

    async def put(request: Request) -> Response:
        files[request.path_params["name"]] = await request.body()
        return Response(status_code=201)

    app = Starlette(
        routes=[
            Route("/files/{name}", get, methods=["GET", "HEAD"]),
            Route("/files/{name}", put, methods=["PUT"]),
        ]
    )
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("golem_trio.localnet.test")
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        yield binds[0], files
        nursery.cancel_scope.cancel()


async def test_transfer_get_and_put(
    runtime: LocalRuntime, file_server: tuple[str, dict[str, bytes]]
) -> None:
    base, files = file_server
    await runtime.transfer(f"{base}/files/in.txt", "container:/golem/input/in.txt")
    assert await sh(runtime, "cat /golem/input/in.txt") == (0, "payload from the requestor\n")
    await runtime.transfer(f"{base}/files/in.txt", "/golem/input/sub/again.txt")
    assert (runtime.golem / "input" / "sub" / "again.txt").read_bytes() == files["in.txt"]
    await sh(runtime, "echo result > /golem/output/out.txt")
    await runtime.transfer("container:/golem/output/out.txt", f"{base}/files/out.txt")
    assert files["out.txt"] == b"result\n"
    with pytest.raises(RuntimeFailure, match="HTTP 404"):
        await runtime.transfer(f"{base}/files/missing", "/golem/input/missing")


async def test_transfer_checks_a_hash_prefix(
    runtime: LocalRuntime, file_server: tuple[str, dict[str, bytes]]
) -> None:
    base, files = file_server
    good = hashlib.sha3_256(files["in.txt"]).hexdigest()
    await runtime.transfer(f"hash:sha3:{good}:{base}/files/in.txt", "/golem/input/checked")
    assert (runtime.golem / "input" / "checked").read_bytes() == files["in.txt"]
    bad = hashlib.sha3_224(b"something else").hexdigest()
    with pytest.raises(RuntimeFailure, match="does not match"):
        await runtime.transfer(f"hash://sha3:{bad}:{base}/files/in.txt", "/golem/input/bad")
    assert not (runtime.golem / "input" / "bad").exists()


async def test_transfer_refuses_paths_outside_golem(
    runtime: LocalRuntime, file_server: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    base, _ = file_server
    source = f"{base}/files/in.txt"
    for destination in (
        "container:/golem/../etc/passwd",
        "/etc/passwd",
        "/golem/input/../../escape",
        "relative/path",
    ):
        with pytest.raises(RuntimeFailure, match=r"refused|not an absolute"):
            await runtime.transfer(source, destination)
    outside = tmp_path / "outside"
    outside.mkdir()
    (runtime.golem / "input" / "link").symlink_to(outside)
    with pytest.raises(RuntimeFailure, match="leads outside"):
        await runtime.transfer(source, "/golem/input/link/file")
    (runtime.golem / "output" / "file-link").symlink_to(tmp_path / "outside" / "target")
    with pytest.raises(RuntimeFailure):
        await runtime.transfer(source, "/golem/output/file-link")
    assert list(outside.iterdir()) == []
    with pytest.raises(RuntimeFailure, match="leads outside"):
        await runtime.transfer("/golem/input/link/x", f"{base}/files/stolen")


async def test_transfer_refuses_remote_hosts(runtime: LocalRuntime) -> None:
    with pytest.raises(RuntimeFailure, match="loopback"):
        await runtime.transfer("http://192.0.2.1/data", "/golem/input/data")
    with pytest.raises(RuntimeFailure, match="loopback"):
        await runtime.transfer("/golem/output/x", "https://example.com/upload")
    with pytest.raises(RuntimeFailure, match="exactly one side"):
        await runtime.transfer("/golem/output/x", "/golem/input/x")


# --- through the emulated daemon --------------------------------------------------------------

SERVICE = """#!/bin/sh
case "$1" in
  --start) sleep "$2" > /dev/null 2>&1 & echo $! > /golem/run/service.pid ;;
  --stats) kill -0 "$(cat /golem/run/service.pid)" && echo "alive $(cat /golem/run/service.pid)"
           echo "stats" > /golem/out/stats ;;
esac
"""


async def test_activity_runs_in_one_sandbox_from_deploy_to_destroy(
    image: Path, tmp_path: Path
) -> None:
    service = image / "run" / "service.sh"
    service.write_text(SERVICE)
    service.chmod(0o755)
    store = ImageStore()
    digest = store.register(image)
    marker = f"3600.{secrets.randbelow(10**9)}"
    factory = local_runtime_factory(store, tmp_path / "sandboxes")
    provider = ProviderSpec(name="local", accept_timeout=240, tick=0.1)
    async with open_localnet([provider], runtime=factory) as net:
        auth = {"Authorization": f"Bearer {net.app_key}"}
        async with httpx2.AsyncClient(
            transport=net.transport(), base_url="http://localnet", headers=auth, timeout=30
        ) as client:
            agreement_id = await make_agreement(
                client, {"golem.srv.comp.task_package": f"hash:sha3:{digest}:http://x/i.gvmi"}
            )
            reply = await client.post("/activity-api/v1/activity", json=agreement_id)
            activity_id = reply.json()
            base = f"/activity-api/v1/activity/{activity_id}"
            capture = {"stdout": {"atEnd": {"format": "str"}}}

            async def execute(*commands: dict[str, Any]) -> list[dict[str, Any]]:
                text = json.dumps(list(commands))
                batch = (await client.post(f"{base}/exec", json={"text": text})).json()
                with trio.fail_after(20):
                    while True:
                        results = (
                            await client.get(f"{base}/exec/{batch}", params={"timeout": 1})
                        ).json()
                        if results and results[-1]["isBatchFinished"]:
                            return list(results)

            def run(*argv: str) -> dict[str, Any]:
                return {"run": {"entry_point": argv[0], "args": argv[1:], "capture": capture}}

            results = await execute(
                {"deploy": {}}, {"start": {}}, run("/golem/run/service.sh", "--start", marker)
            )
            assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"], results
            (stats,) = await execute(run("/golem/run/service.sh", "--stats"))
            assert stats["result"] == "Ok", stats
            assert stats["stdout"].startswith("alive ")
            (again,) = await execute(run("/golem/run/service.sh", "--stats"))
            assert again["stdout"] == stats["stdout"]
            assert len(host_processes_with(marker)) == 1
            usage = (await client.get(f"{base}/usage")).json()
            assert usage["currentUsage"][1] > 0
            assert (await client.delete(base)).status_code == 200
    assert host_processes_with(marker) == []
    assert list((tmp_path / "sandboxes").iterdir()) == []


async def test_sandbox_outlives_idle_worker_threads(image: Path, tmp_path: Path) -> None:
    # trio spawns processes from worker threads, which exit after 10 s idle; a sandbox tied
    # to its spawning thread (bwrap --die-with-parent) died with it.
    local = runtime_for(image, tmp_path)
    try:
        await local.deploy({})
        await local.start([])
        await trio.sleep(12)
        assert await sh(local, "echo alive") == (0, "alive\n")
    finally:
        with trio.move_on_after(20, shield=True):
            await local.terminate()


async def test_sandbox_ends_when_its_owner_goes_away(image: Path, tmp_path: Path) -> None:
    # As when the process running LocalNet dies: the command server's stdin closes, and every
    # process of the sandbox, background ones included, ends with it.
    marker = f"3600.{secrets.randbelow(10**9)}"
    local = runtime_for(image, tmp_path)
    try:
        await local.deploy({})
        await local.start([])
        assert (await sh(local, f"sleep {marker} > /dev/null 2>&1 &"))[0] == 0
        assert len(host_processes_with(marker)) == 1
        process = local._process
        assert process is not None
        assert process.stdin is not None
        await process.stdin.aclose()
        with trio.fail_after(10):
            await process.wait()
        assert host_processes_with(marker) == []
    finally:
        with trio.move_on_after(20, shield=True):
            await local.terminate()
