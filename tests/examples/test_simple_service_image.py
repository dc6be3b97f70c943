"""The SimpleService image (``examples/simple_service/image``): its scripts run directly with a
temporary ``GOLEM_ROOT``, and end to end on LocalNet's local runtime under bubblewrap, where a
demand for the published image's hash gets this folder.

The end-to-end test needs bubblewrap (``apt-get install bubblewrap``) and runs on the wall
clock (a few seconds: the simulator's default interval is one second).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import signal
import statistics
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
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

from golem_trio.localnet import (
    ImageStore,
    ProviderSpec,
    discover_images,
    load_image_folder,
    local_runtime_factory,
    open_localnet,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "simple_service"
IMAGE = EXAMPLE / "image"
RUN = IMAGE / "run"
SIMULATOR = RUN / "simulate_observations.py"
CTL = RUN / "simulate_observations_ctl.py"
SERVICE = RUN / "simple_service.py"
#: The image hash the seed's SimpleService demands.
SEED_HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
BAR = (70, 130, 180)
LINE = (200, 60, 40)


# --- helpers ----------------------------------------------------------------------------------


def parse_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB PNG, checking the signature, every chunk's
    CRC, the header, the chunk order and the image data's size and row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert len(body) == length
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        chunks.append((kind, body))
        at += 12 + length
    assert at == len(data)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert set(kinds[1:-1]) == {b"IDAT"}
    width, height, depth, color, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, color, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = [raw[y * stride : (y + 1) * stride] for y in range(height)]
    assert {row[0] for row in rows} == {0}
    return width, height, [row[1:] for row in rows]


def pixel_count(rows: list[bytes], color: tuple[int, int, int]) -> int:
    wanted = bytes(color)
    return sum(1 for row in rows for at in range(0, len(row), 3) if row[at : at + 3] == wanted)


def script(path: Path, *args: str, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run an image script directly with ``GOLEM_ROOT=root``."""
    return subprocess.run(
        [str(path), *args],
        env={**os.environ, "GOLEM_ROOT": str(root), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write_observations(root: Path, text: str) -> None:
    (root / "out").mkdir(parents=True, exist_ok=True)
    (root / "out" / "observations").write_text(text)


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A ``GOLEM_ROOT``; a simulator left running in it is killed afterwards."""
    root = tmp_path / "golem"
    root.mkdir()
    yield root
    pid_file = root / "out" / "simulator.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if not gone(pid) and "simulate_observations" in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGKILL)


# --- the image folder -------------------------------------------------------------------------


def test_the_image_stands_for_the_seeds_image() -> None:
    info = load_image_folder(IMAGE)
    assert info.stands_for == SEED_HASH
    assert info.name == "simple-service"
    store = ImageStore()
    assert [found.folder for found in discover_images(store, [EXAMPLE])] == [IMAGE]
    assert store.image_for(SEED_HASH) == IMAGE


@pytest.mark.parametrize("path", [SIMULATOR, CTL, SERVICE], ids=lambda path: path.name)
def test_scripts_are_executable_standard_library_python(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    assert os.access(path, os.X_OK)
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.partition(".")[0])
    assert imported <= set(sys.stdlib_module_names)


# --- the scripts, run directly ----------------------------------------------------------------


def test_simulator_appends_normal_observations(root: Path) -> None:
    done = script(SIMULATOR, "--count", "200", "--interval", "0.001", "--seed", "3", root=root)
    assert done.returncode == 0, done.stderr
    lines = (root / "out" / "observations").read_text().splitlines()
    assert len(lines) == 200
    values = [float(line) for line in lines]
    assert 13 < statistics.fmean(values) < 15
    assert 2 < statistics.stdev(values) < 4
    again = script(SIMULATOR, "--count", "5", "--interval", "0.001", root=root)
    assert again.returncode == 0, again.stderr
    assert len((root / "out" / "observations").read_text().splitlines()) == 205


def test_simulator_interval_comes_from_the_environment(root: Path) -> None:
    started = time.monotonic()
    done = script(SIMULATOR, "--count", "3", root=root, GOLEM_SIMULATOR_INTERVAL="0.2")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 0.4
    assert len((root / "out" / "observations").read_text().splitlines()) == 3
    bad = script(SIMULATOR, "--count", "1", root=root, GOLEM_SIMULATOR_INTERVAL="-1")
    assert bad.returncode != 0
    assert "GOLEM_SIMULATOR_INTERVAL" in bad.stderr
    refused = script(SIMULATOR, "--interval", "0", root=root)
    assert refused.returncode == 2
    assert "must be above zero" in refused.stderr


def test_stats_of_the_observations(root: Path) -> None:
    empty = script(SERVICE, "--stats", root=root)
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == {
        "count": 0,
        "min": None,
        "max": None,
        "mean": None,
        "median": None,
        "stdev": None,
    }
    # A last line without its newline may still be being written: it does not count.
    write_observations(root, "1.5\n2\n3\nbad\n4\n10\n7.2")
    done = script(SERVICE, "--stats", root=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert json.loads(done.stdout) == {
        "count": 5,
        "min": 1.5,
        "max": 10.0,
        "mean": 4.1,
        "median": 3.0,
        "stdev": statistics.stdev([1.5, 2, 3, 4, 10]),
    }
    write_observations(root, "2.5\n")
    single = json.loads(script(SERVICE, "--stats", root=root).stdout)
    assert (single["count"], single["median"], single["stdev"]) == (1, 2.5, None)
    dump = script(SERVICE, "--dump", root=root)
    assert json.loads(dump.stdout) == [2.5]


def test_plots_are_valid_pngs_in_out(root: Path) -> None:
    done = script(SIMULATOR, "--count", "300", "--interval", "0.001", "--seed", "1", root=root)
    assert done.returncode == 0, done.stderr
    found: dict[str, list[bytes]] = {}
    for kind in ("dist", "time"):
        plotted = script(SERVICE, "--plot", kind, root=root)
        assert plotted.returncode == 0, plotted.stderr
        # As the seed reads it: results[1].stdout.strip().strip('"').
        path = Path(plotted.stdout.strip().strip('"'))
        assert json.loads(plotted.stdout) == str(path)
        assert path.parent == root / "out"
        assert path.suffix == ".png"
        assert len(path.stem) == 10
        width, height, rows = parse_png(path.read_bytes())
        assert (width, height) == (640, 480)
        found[kind] = rows
    assert pixel_count(found["dist"], BAR) > 10_000
    assert pixel_count(found["time"], BAR) == 0
    assert pixel_count(found["time"], LINE) > 1_000
    second = script(SERVICE, "--plot", "dist", root=root).stdout
    assert len(list((root / "out").glob("*.png"))) == 3, second


def test_plots_of_no_observations_are_still_pngs(root: Path) -> None:
    for kind in ("dist", "time"):
        plotted = script(SERVICE, "--plot", kind, root=root)
        assert plotted.returncode == 0, plotted.stderr
        _, _, rows = parse_png(Path(json.loads(plotted.stdout)).read_bytes())
        assert pixel_count(rows, BAR) == pixel_count(rows, LINE) == 0
    refused = script(SERVICE, "--plot", "pie", root=root)
    assert refused.returncode == 2
    assert "invalid choice" in refused.stderr


def test_ctl_starts_and_stops_the_simulator(root: Path) -> None:
    observations = root / "out" / "observations"
    pid_file = root / "out" / "simulator.pid"
    interval = {"GOLEM_SIMULATOR_INTERVAL": "0.05"}
    started = script(CTL, "--start", root=root, **interval)
    assert started.returncode == 0, started.stderr
    pid = int(pid_file.read_text())
    assert started.stdout.startswith(f"simulator started (pid {pid})")
    assert "simulate_observations.py" in Path(f"/proc/{pid}/cmdline").read_text()
    again = script(CTL, "--start", root=root, **interval)
    assert (again.returncode, again.stdout) == (0, f"simulator already running (pid {pid})\n")
    assert int(pid_file.read_text()) == pid
    deadline = time.monotonic() + 10
    while not observations.exists() or len(observations.read_text().splitlines()) < 3:
        assert time.monotonic() < deadline, "no observations"
        time.sleep(0.05)
    status = script(CTL, "--status", root=root)
    assert status.stdout == f"simulator running (pid {pid})\n"

    stopped = script(CTL, "--stop", root=root)
    assert (stopped.returncode, stopped.stdout) == (0, f"simulator stopped (pid {pid})\n")
    assert gone(pid)
    assert not pid_file.exists()
    count = len(observations.read_text().splitlines())
    time.sleep(0.2)
    assert len(observations.read_text().splitlines()) == count
    twice = script(CTL, "--stop", root=root)
    assert (twice.returncode, twice.stdout) == (0, "simulator not running\n")
    assert script(CTL, "--status", root=root).stdout == "simulator not running\n"


def test_ctl_never_kills_a_process_that_is_not_the_simulator(root: Path) -> None:
    pid_file = root / "out" / "simulator.pid"
    (root / "out").mkdir()
    pid_file.write_text(f"{os.getpid()}\n")
    stopped = script(CTL, "--stop", root=root)
    assert stopped.returncode == 0
    assert "stale pid file" in stopped.stdout
    assert not pid_file.exists()
    pid_file.write_text("not a pid\n")
    assert script(CTL, "--status", root=root).stdout == "simulator not running\n"
    refused = script(CTL, "--stop", "--interval", "1", root=root)
    assert refused.returncode == 2


def test_ctl_reports_a_simulator_that_cannot_start(root: Path) -> None:
    failed = script(CTL, "--start", root=root, GOLEM_SIMULATOR_INTERVAL="nonsense")
    assert failed.returncode == 1
    assert "simulator exited at once" in failed.stderr
    assert "GOLEM_SIMULATOR_INTERVAL" in failed.stderr
    assert not (root / "out" / "simulator.pid").exists()


# --- end to end on LocalNet -------------------------------------------------------------------


@pytest.fixture
async def upload_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """An http server on loopback storing what is PUT to ``/files/{name}``."""
    files: dict[str, bytes] = {}

    async def put(request: Request) -> Response:
        files[request.path_params["name"]] = await request.body()
        return Response(status_code=201)

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("golem_trio.localnet.test")
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        app = Starlette(routes=[Route("/files/{name}", put, methods=["PUT"])])
        binds = await nursery.start(serve, app, config)
        yield binds[0], files
        nursery.cancel_scope.cancel()


async def test_the_seeds_service_runs_on_localnet(
    tmp_path: Path, upload_server: tuple[str, dict[str, bytes]]
) -> None:
    uploads_url, uploads = upload_server
    store = ImageStore()
    discover_images(store, [EXAMPLE])
    factory = local_runtime_factory(store, tmp_path / "sandboxes")
    provider = ProviderSpec(name="local", accept_timeout=240, tick=0.1)
    # As vm.repo(image_hash=...) puts it in the demand.
    package = f"hash:sha3:{SEED_HASH}:http://127.0.0.1/simple-service.gvmi"
    async with open_localnet([provider], runtime=factory, serve=True) as net:
        assert net.url is not None
        auth = {"Authorization": f"Bearer {net.app_key}"}
        async with httpx2.AsyncClient(base_url=net.url, headers=auth, timeout=30) as client:
            agreement_id = await make_agreement(client, {"golem.srv.comp.task_package": package})
            reply = await client.post("/activity-api/v1/activity", json=agreement_id)
            base = f"/activity-api/v1/activity/{reply.json()}"
            capture = {"stdout": {"atEnd": {"format": "str"}}, "stderr": {"atEnd": {}}}

            async def execute(*commands: dict[str, Any]) -> list[dict[str, Any]]:
                text = json.dumps(list(commands))
                batch = (await client.post(f"{base}/exec", json={"text": text})).json()
                with trio.fail_after(30):
                    while True:
                        results = (
                            await client.get(f"{base}/exec/{batch}", params={"timeout": 1})
                        ).json()
                        if results and results[-1]["isBatchFinished"]:
                            assert [r["result"] for r in results] == ["Ok"] * len(commands), results
                            return list(results)

            def run(*argv: str) -> dict[str, Any]:
                return {"run": {"entry_point": argv[0], "args": argv[1:], "capture": capture}}

            async def stdout(*argv: str) -> str:
                (result,) = await execute(run(*argv))
                return str(result["stdout"])

            async def sandbox_processes() -> str:
                listing = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"
                return await stdout("/bin/sh", "-c", listing)

            # Starting: the seed's start().
            results = await execute(
                {"deploy": {}},
                {"start": {}},
                run("/golem/run/simulate_observations_ctl.py", "--start"),
            )
            assert results[2]["stdout"].startswith("simulator started (pid ")
            assert "/golem/run/simulate_observations.py" in await sandbox_processes()
            again = await stdout("/golem/run/simulate_observations_ctl.py", "--start")
            assert again.startswith("simulator already running")

            # Running: the seed's run(), twice, observations growing in between.
            counts: list[int] = []
            for _ in range(2):
                with trio.fail_after(15):
                    while True:
                        stats_line = await stdout("/golem/run/simple_service.py", "--stats")
                        stats = json.loads(stats_line)
                        if stats["count"] > (counts[-1] if counts else 0):
                            break
                        await trio.sleep(0.3)
                counts.append(stats["count"])
                assert stats_line.count("\n") == 1
                assert set(stats) == {"count", "min", "max", "mean", "median", "stdev"}
                assert stats["min"] <= stats["median"] <= stats["max"]
                results = await execute(
                    run("/golem/run/simple_service.py", "--stats"),
                    run("/golem/run/simple_service.py", "--plot", "dist"),
                )
                plot = results[1]["stdout"].strip().strip('"')
                assert plot.startswith("/golem/out/")
                assert plot.endswith(".png")
                name = f"plot-{len(counts)}.png"
                await execute(
                    {"transfer": {"from": f"container:{plot}", "to": f"{uploads_url}/files/{name}"}}
                )
                width, height, rows = parse_png(uploads[name])
                assert (width, height) == (640, 480)
                assert pixel_count(rows, BAR) > 0
            assert counts[1] > counts[0] > 0

            # Stopping: the seed's shutdown().
            stopped = await stdout("/golem/run/simulate_observations_ctl.py", "--stop")
            assert stopped.startswith("simulator stopped (pid ")
            assert "simulate_observations.py" not in await sandbox_processes()
            status = await stdout("/golem/run/simulate_observations_ctl.py", "--status")
            assert status == "simulator not running\n"
            assert (await client.delete(base)).status_code == 200
    assert list((tmp_path / "sandboxes").iterdir()) == []
