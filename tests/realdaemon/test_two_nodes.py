"""LocalNet's real-daemon backend on two nodes: the requestor's daemon and the providers'
daemon on a central net with a hub, in a private network namespace, with payments on a local
chain. What one daemon cannot do, two do: the exec event stream reaches the requestor, and a
requestor's termination is reported as the requestor's. Everything is gone afterwards,
however the Python process ends.

Each test starts its own network (a few seconds) and runs on the real clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from golem_trio import Golem, Service, vm
from golem_trio.localnet import ProviderSpec, Reply, scripted_runtime_factory
from golem_trio.localnet.yagna import (
    NamespacesUnavailable,
    PrivateNetwork,
    YagnaLocalNet,
    _netns,
    open_yagna_localnet,
)
from golem_trio.market import StaticResolver, VmPayload, use_resolver
from golem_trio.services import RunFinished
from golem_trio.work._script import _StreamFollower
from golem_trio.yagna import AgreementTerminatedEvent, ApiConfig, YagnaClient

pytestmark = pytest.mark.usefixtures("namespaces")

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
DEADLINE = 150.0
START_TIMEOUT = 120.0
#: The lifeline's SIGTERM grace and a margin.
GONE_WITHIN = 10.0


class Echo(Service):
    """Three rounds of ``echo``, one a second."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    @staticmethod
    async def get_payload() -> VmPayload:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        for i in range(3):
            await trio.sleep(1)
            script = self._ctx.new_script()
            echoed = script.run("/bin/echo", f"{self.provider_id} {i}")
            await script
            self.seen.append(((await echoed).stdout or "").strip())


def agreement_of(service: Service) -> str:
    agreement = service.instance.agreement
    assert agreement is not None
    return agreement.agreement_id


def group_members(pgid: int) -> list[int]:
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


def namespace_members(inode: int) -> list[int]:
    """The processes inside the network namespace with this inode."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(entry / "ns" / "net").st_ino == inode:
                members.append(int(entry.name))
    return members


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def what_is_left(groups: Iterable[int], inode: int, link: str) -> dict[str, Any]:
    """Processes, namespace members and the host's veth end still there (empty: all gone)."""
    left: dict[str, Any] = {}
    running = {pgid: group_members(pgid) for pgid in groups}
    if any(running.values()):
        left["groups"] = running
    if members := namespace_members(inode):
        left["namespace"] = members
    if link_exists(link):
        left["link"] = link
    return left


def wait_until_gone(groups: Iterable[int], inode: int, link: str) -> dict[str, Any]:
    groups = list(groups)
    deadline = time.monotonic() + GONE_WITHIN
    left = what_is_left(groups, inode, link)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = what_is_left(groups, inode, link)
    return left


def process_groups(net: YagnaLocalNet) -> dict[str, int]:
    """Every process group the network runs, by name (each leader is a lifeline)."""
    assert net.hub is not None
    assert net.chain is not None
    assert net.network is not None
    pids = {
        "hub": net.hub.pid,
        "requestor": net.node.pid,
        "providers": net.provider_node.pid,
        "anvil": net.chain.pid,
        "namespace": net.network.pid,
    }
    running = {name: pid for name, pid in pids.items() if pid is not None}
    assert running == pids, f"not running: {pids}"
    return running


async def test_an_engine_on_two_nodes_streams_is_paid_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    followers: list[_StreamFollower] = []
    follow = _StreamFollower.run

    async def recorded(self: _StreamFollower, script: Any, batch_id: str) -> None:
        followers.append(self)
        await follow(self, script, batch_id)

    monkeypatch.setattr(_StreamFollower, "run", recorded)
    specs = [ProviderSpec(name=f"yp{i}", debit_note_interval=2, tick=0.5) for i in range(2)]
    # Each echo takes a second, so the stream, opened right after the batch starts, is open
    # before the output comes (the daemon does not replay earlier events).
    runtime = scripted_runtime_factory(
        {"/bin/echo": lambda a: Reply(stdout=" ".join(a) + "\n", duration_s=1.0)}
    )
    events: list[object] = []
    with trio.fail_after(DEADLINE):
        async with open_yagna_localnet(specs, runtime=runtime, nodes=2) as net:
            groups = process_groups(net)
            assert net.network is not None
            inode, link = net.network.namespace_inode, net.network.link_name
            assert net.nodes == 2
            assert net.node.requestor_id not in {p.node_id for p in net.provider_node.providers}
            assert net.node.pid != net.provider_node.pid
            assert net.url.startswith(f"http://{net.network.address}:")
            config = ApiConfig(app_key=net.app_key, api_url=net.url, gsb_url=net.gsb_url)
            with use_resolver(StaticResolver()):
                golem = Golem(
                    budget=1.0,
                    api_config=config,
                    handle_signals=False,
                    invoice_wait=30,
                    stream_output=True,
                    event_consumer=events.append,
                )
                async with golem:
                    cluster = await golem.run_service(
                        Echo,
                        num_instances=2,
                        expiration=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20),
                    )
                    await cluster.wait_running()
                    await cluster.wait_finished()

            # Both instances ran their rounds, on two different providers.
            providers = {service.provider_id for service in cluster.instances}
            assert len(providers) == 2
            for service in cluster.instances:
                assert service.seen == [f"{service.provider_id} {i}" for i in range(3)]
                assert isinstance(service.stop_reason, RunFinished)

            # The output came through the exec event stream: each echo's batch had its stream
            # carry the line and report the command's end.
            echoes = [f for f in followers if f.stdout]
            streamed = sorted("".join(f.stdout[0]).strip() for f in echoes)
            assert streamed == sorted(line for s in cluster.instances for line in s.seen)
            assert [f.codes for f in echoes] == [{0: 0}] * 6

            agreements = [agreement_of(s) for s in cluster.instances]
            await terminations_are_the_requestors(net, golem.app_session_id, agreements)
            await invoices_are_paid_on_the_chain(net, golem, cluster.instances)

    # Everything stopped: the daemons, anvil, the namespace and its veth pair.
    left = await trio.to_thread.run_sync(wait_until_gone, groups.values(), inode, link)
    assert not left, f"left behind: {left}"


async def terminations_are_the_requestors(
    net: YagnaLocalNet, app_session_id: str, agreements: list[str]
) -> None:
    """The requestor's daemon reports each termination once, as the requestor's, on both
    sides' daemons."""
    config = ApiConfig(app_key=net.app_key, api_url=net.url)
    async with YagnaClient(config) as requestor:
        terminated: list[AgreementTerminatedEvent] = []
        with trio.fail_after(20):
            while len(terminated) < len(agreements):
                events = await requestor.market.collect_agreement_events(
                    wait=1.0, app_session_id=app_session_id
                )
                terminated = [e for e in events if isinstance(e, AgreementTerminatedEvent)]
        assert sorted(e.agreement_id for e in terminated) == sorted(agreements)
        assert {e.terminator for e in terminated} == {"Requestor"}
        for agreement_id in agreements:
            reason = await requestor.market.get_terminate_agreement_reason(agreement_id)
            assert reason.terminator == "Requestor"
    for agreement_id, port in zip(agreements, await providers_of(net, agreements), strict=True):
        provider_key = next(p.app_key for p in net.provider_node.providers if p.node_id == port)
        config = ApiConfig(app_key=provider_key, api_url=net.provider_node.api_url)
        async with YagnaClient(config) as provider:
            reason = await provider.market.get_terminate_agreement_reason(agreement_id)
            assert reason.terminator == "Requestor"


async def providers_of(net: YagnaLocalNet, agreements: list[str]) -> list[str]:
    config = ApiConfig(app_key=net.app_key, api_url=net.url)
    async with YagnaClient(config) as requestor:
        return [
            (await requestor.market.get_agreement(agreement_id)).offer.provider_id
            for agreement_id in agreements
        ]


async def invoices_are_paid_on_the_chain(
    net: YagnaLocalNet, golem: Golem, services: Iterable[Echo]
) -> None:
    """Each provider's token balance on the chain is exactly what was accepted for its
    agreement (cut to whole base units, as the erc20 driver pays)."""
    report = golem.payment_report
    assert report is not None
    assert len(report.invoices_accepted) == 2
    assert report.unpaid == ()
    assert report.allocation_released
    auth = {"Authorization": f"Bearer {net.app_key}"}
    async with httpx2.AsyncClient(base_url=net.url, headers=auth, trust_env=False) as client:
        reply = await client.post(f"/payment-api/v1/batchCycle/{net.payment_platform}/now")
        assert reply.status_code == 200, reply.text
    wei = Decimal("1e-18")
    expected = {
        str(service.provider_id): report.invoices_accepted[agreement_of(service)].quantize(
            wei, rounding=ROUND_DOWN
        )
        for service in services
    }
    chain = net.chain
    assert chain is not None
    with trio.fail_after(60):
        while True:
            balances = {
                provider: await trio.to_thread.run_sync(chain.token_balance, provider)
                for provider in expected
            }
            if all(balances[p] >= expected[p] for p in expected):
                break
            await trio.sleep(0.5)
    assert balances == expected
    assert all(amount > 0 for amount in expected.values())


#: Started as the backend starts them, in a process that is then killed.
_APP = textwrap.dedent(
    """
    import json, trio
    from golem_trio.localnet import ProviderSpec
    from golem_trio.localnet.yagna import open_yagna_localnet

    async def main() -> None:
        async with open_yagna_localnet([ProviderSpec(name="p")], nodes=2) as net:
            groups = {
                "hub": net.hub.pid, "requestor": net.node.pid,
                "providers": net.provider_node.pid, "anvil": net.chain.pid,
                "namespace": net.network.pid,
            }
            print(json.dumps({
                "groups": groups, "inode": net.network.namespace_inode,
                "link": net.network.link_name,
            }), flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


def test_two_nodes_die_with_a_killed_parent(tmp_path: Path) -> None:
    app = subprocess.Popen(
        [sys.executable, "-c", _APP],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "app-stderr.txt").open("wb"),
        start_new_session=True,
    )
    started: dict[str, Any] = {}
    try:
        assert app.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line and time.monotonic() < deadline and app.poll() is None:
            line = app.stdout.readline()
        assert line, (tmp_path / "app-stderr.txt").read_text()[-3000:]
        started = json.loads(line)
        groups: dict[str, int] = started["groups"]
        assert all(isinstance(pid, int) for pid in groups.values()), groups
        for name, pgid in groups.items():
            assert group_members(pgid), f"{name} is not running"
        assert namespace_members(started["inode"])
        assert link_exists(started["link"])

        app.send_signal(signal.SIGKILL)
        app.wait(timeout=10)

        left = wait_until_gone(groups.values(), started["inode"], started["link"])
        assert not left, f"still there after the parent was killed: {left}"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        for pgid in started.get("groups", {}).values():  # never leave them behind
            with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
                os.killpg(pgid, signal.SIGKILL)


def test_the_veth_subnet_avoids_every_network_the_host_routes() -> None:
    pool = ipaddress.IPv4Network("10.128.0.0/9")
    # Three quarters of the pool taken (as routes or addresses of the host), and one address
    # in the last quarter.
    halves = list(pool.subnets(new_prefix=10))
    quarters = list(halves[1].subnets(new_prefix=11))
    taken = [halves[0], quarters[0], ipaddress.IPv4Network("10.250.0.1/32")]
    chosen = {_netns._choose_subnet(taken) for _ in range(200)}
    assert all(subnet.prefixlen == 30 for subnet in chosen)
    assert all(subnet.subnet_of(quarters[1]) for subnet in chosen)
    assert not any(subnet.overlaps(other) for subnet in chosen for other in taken)
    with pytest.raises(NamespacesUnavailable, match="no free /30"):
        _netns._choose_subnet([pool])


def test_without_root_a_private_network_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NamespacesUnavailable, match="does not run as root"):
        PrivateNetwork.start()


_REFUSED = textwrap.dedent(
    """
    from golem_trio.localnet.yagna import NamespacesUnavailable, PrivateNetwork
    try:
        PrivateNetwork.start()
    except NamespacesUnavailable as exc:
        print(exc)
    """
)


def test_a_refused_namespace_is_a_typed_error() -> None:
    # Root without CAP_SYS_ADMIN: the kernel refuses unshare --net.
    done = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", _REFUSED],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "unshare --net refused" in done.stdout
    assert "root (or CAP_SYS_ADMIN" in done.stdout
