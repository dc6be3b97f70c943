"""The HTTP service example (``examples/http_service``): three tiny HTTP servers on a VPN behind
``LocalHttpProxy``, reached with ``curl``. On LocalNet's local runtime under bubblewrap, on the
wall clock: in-process (so that a provider can be made to terminate) and as a user runs it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

from golem_trio import Golem
from golem_trio.localnet import (
    ImageStore,
    ProviderPopulation,
    discover_images,
    local_runtime_factory,
    open_localnet,
)
from golem_trio.services import ProviderTerminated
from golem_trio.testing import assert_invariants

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "http_service"

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("curl") is None,
    reason="needs bubblewrap and curl",
)


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_service", EXAMPLE / "http_service.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def curl(port: int, path: str = "/") -> tuple[int, dict[str, Any] | None]:
    """``curl`` through the proxy: the status and the JSON the server answered (if any)."""
    done = await trio.run_process(
        ["curl", "-s", "-m", "20", "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}"],
        capture_stdout=True,
        check=False,
    )
    body, _, status = done.stdout.decode().rpartition("\n")
    try:
        answer = json.loads(body.splitlines()[0]) if status == "200" else None
    except (ValueError, IndexError):
        answer = None
    return int(status or 0), answer


async def test_three_servers_behind_the_proxy_through_a_termination(tmp_path: Path) -> None:
    example = load_example()
    store = ImageStore()
    await trio.to_thread.run_sync(discover_images, store, [EXAMPLE])
    population = ProviderPopulation(count=5, seed=3)
    async with open_localnet(population, runtime=local_runtime_factory(store), serve=True) as net:
        async with Golem(budget=1.0, localnet=net, handle_signals=False) as golem:
            async with example.http_cluster(golem, instances=3) as (cluster, proxy):
                identity = {s.name: (s.provider_name, s.network_node.ip) for s in cluster.instances}
                assert len({ip for _, ip in identity.values()}) == 3
                with trio.fail_after(60):
                    answers = [await curl(proxy.port, f"/{i}") for i in range(6)]
                assert all(status == 200 for status, _ in answers), answers
                seen = {(a["name"], a["provider"], a["ip"]) for _, a in answers if a}
                assert seen == {(n, p, ip) for n, (p, ip) in identity.items()}
                assert answers[0][1] is not None
                assert answers[0][1]["path"] == "/0"

                # A large body goes through and back (curl asks for 100-continue first).
                body = tmp_path / "body.bin"
                body.write_bytes(bytes(range(256)) * 5000)  # 1.28 MB
                with trio.fail_after(60):
                    posted = await trio.run_process(
                        [
                            "curl",
                            "-s",
                            "-m",
                            "30",
                            "--data-binary",
                            f"@{body}",
                            f"http://127.0.0.1:{proxy.port}/upload",
                        ],
                        capture_stdout=True,
                    )
                head, _, echoed = posted.stdout.partition(b"\n")
                assert json.loads(head)["path"] == "/upload"
                assert echoed == body.read_bytes()

                victim = cluster.instances[1]
                agreement = victim.instance.agreement
                assert agreement is not None
                net.faults.terminate_agreement(agreement.agreement_id)
                # The proxy keeps answering, from the others, until the replacement runs.
                during: set[str] = set()
                with trio.fail_after(120):
                    while not victim.is_running or victim.instance.lives < 2:
                        status, answer = await curl(proxy.port)
                        assert status == 200, status
                        assert answer is not None
                        if not victim.is_running:
                            during.add(answer["name"])
                        await trio.sleep(0.05)
                assert during, "no answer came while the instance was down"
                assert during <= {"http-0", "http-2"}, during
                assert isinstance(victim.instance.stop_reasons[0], ProviderTerminated)
                new_provider = victim.provider_name
                assert new_provider != identity["http-1"][0]
                with trio.fail_after(60):
                    after = [await curl(proxy.port) for _ in range(6)]
                names = {(a["name"], a["provider"]) for _, a in after if a}
                assert ("http-1", new_provider) in names
                assert {n for n, _ in names} == {"http-0", "http-1", "http-2"}
                assert proxy.stats.unavailable == 0
        assert_invariants(net, budget=1.0)
        networks = net.vpn.ledger()
        assert len(networks) == 1
        assert networks[0]["removed"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def example_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLE / "http_service.py"),
            "--port",
            str(port),
            "--running-time",
            "10",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_the_example_serves_curl_as_a_user_runs_it(
    example_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = example_process
    names: set[str] = set()
    with trio.fail_after(120):
        while len(names) < 3:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            status, answer = await curl(port)
            if status == 200 and answer is not None:
                names.add(answer["name"])
            else:
                await trio.sleep(0.5)
    assert names == {"http-0", "http-1", "http-2"}
    with trio.fail_after(120):
        while process.poll() is None:  # noqa: ASYNC110 (polled: no event to wait on)
            await trio.sleep(0.5)
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, output
    assert "embedded LocalNet" in output
    assert "serving http://127.0.0.1:" in output
    assert "proxy: ProxyStats(" in output
