"""Networks in the engine, on an in-process LocalNet in virtual time: instances join a network
when their activity starts and leave it when it stops, the ``deploy`` command carries the
network's configuration, addresses are given by position or in order, a life that comes again
gets its address back, a full network is a typed error, and a network goes once no cluster
uses it. The daemon's side is read from LocalNet's VPN state."""

from __future__ import annotations

import ipaddress

import hypothesis
import pytest
import trio
import trio.testing
from _vpn_support import Plain, Stage, scripted_stage
from hypothesis import strategies as st

from golem_trio import Restart, RestartPolicy
from golem_trio.events import ServiceStateChanged
from golem_trio.localnet.emulator import FaultError
from golem_trio.network import AddressError, AddressSpaceExhausted, Network
from golem_trio.services import ProviderTerminated, ProvisioningFailed, ServiceState


def live_nodes(stage: Stage, network: Network, services: list[Plain]) -> dict[str, str]:
    """The SDK's view: address → node id of every instance that is a node now."""
    nodes = {}
    for service in services:
        node = service.network_node
        if node is not None:
            assert node.ip not in nodes, f"{node.ip} held twice"
            nodes[node.ip] = node.node_id
    return nodes


async def test_instances_join_with_the_deploy_configuration_and_leave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_stage() as stage:
        network = await stage.golem.create_network("192.168.0.0/24")
        assert str(network.owner_address) == "192.168.0.1"
        cluster = await stage.golem.run_service(Plain, num_instances=2, network=network)
        with trio.fail_after(600):
            await cluster.wait_running()
        nodes = live_nodes(stage, network, cluster.instances)
        assert len(nodes) == 2
        assert stage.daemon_nodes(network) == nodes
        for service in cluster.instances:
            node = service.network_node
            assert node is not None
            assert node.node_id == service.provider_id
            assert ipaddress.ip_address(node.ip) in ipaddress.ip_network("192.168.0.0/24")
            assert node.websocket_url(80).endswith(f"/net/{network.network_id}/tcp/{node.ip}/80")
            assert node.websocket_url(80).startswith("ws")
            deploy = stage.deploys[service.instance.activity_id or ""]
            (entry,) = deploy["net"]
            assert entry["id"] == network.network_id
            assert entry["ip"] == "192.168.0.0"
            assert entry["mask"] == "255.255.255.0"
            assert entry["nodeIp"] == node.ip
            assert entry["nodes"][node.ip] == node.node_id
            owner = stage.net.vpn.networks[network.network_id].owner_id
            assert entry["nodes"]["192.168.0.1"] == owner
        await cluster.stop()
        assert all(s.network_node is None for s in cluster.instances)
        assert stage.daemon_nodes(network) == {}
        assert not stage.removed(network)
    assert stage.removed(network), "the engine removes the networks it made"


async def test_addresses_are_given_by_position_then_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_stage(providers=4) as stage:
        network = await stage.golem.create_network("10.7.0.0/24", owner_address="10.7.0.9")
        cluster = await stage.golem.run_service(
            Plain, num_instances=3, network=network, network_addresses=["10.7.0.50", "10.7.0.2"]
        )
        with trio.fail_after(600):
            await cluster.wait_running()
        ips = [s.network_node.ip for s in cluster.instances if s.network_node]
        assert ips == ["10.7.0.50", "10.7.0.2", "10.7.0.1"]
        more = cluster.spawn_instances(1, network_addresses=["10.7.0.77"])
        with trio.fail_after(600):
            await cluster.wait_running()
        assert more[0].network_node is not None
        assert more[0].network_node.ip == "10.7.0.77"
        for bad in (["10.8.0.1"], ["10.7.0.9"], ["10.7.0.255"], ["10.7.0.3", "10.7.0.3"]):
            with pytest.raises(ValueError):
                await stage.golem.run_service(
                    Plain, num_instances=1, network=network, network_addresses=bad
                )
        with pytest.raises(AddressError):
            cluster.spawn_instances(1, network_addresses=["10.7.0.0"])
        with pytest.raises(ValueError, match="need a network"):
            await stage.golem.run_service(Plain, num_instances=1, network_addresses=["10.7.0.3"])
        await cluster.stop()


async def test_a_life_that_comes_again_gets_its_address_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_stage(providers=4) as stage:
        network = await stage.golem.create_network("192.168.3.0/24")
        cluster = await stage.golem.run_service(
            Plain,
            num_instances=2,
            network=network,
            network_addresses=["192.168.3.40"],
            restart=RestartPolicy(Restart.ON_FAILURE, backoff=1.0, jitter=0.0),
        )
        with trio.fail_after(600):
            await cluster.wait_running()
        first, _second = cluster.instances
        before = {s.id: s.network_node.ip for s in cluster.instances if s.network_node}
        old_provider = first.provider_id
        agreement = first.instance.agreement
        assert agreement is not None
        stage.net.faults.terminate_agreement(agreement.agreement_id)
        with trio.fail_after(600):
            while first.instance.lives < 2 or not first.is_running:  # noqa: ASYNC110 (polled: no event to wait on)
                await trio.sleep(1)
        assert isinstance(first.instance.stop_reasons[0], ProviderTerminated)
        assert first.provider_id != old_provider
        after = {s.id: s.network_node.ip for s in cluster.instances if s.network_node}
        assert after == before
        assert stage.daemon_nodes(network) == live_nodes(stage, network, cluster.instances)
        assert stage.daemon_nodes(network)[before[first.id]] == first.provider_id
        await cluster.stop()
        assert stage.daemon_nodes(network) == {}


async def test_a_full_network_fails_at_once_with_a_typed_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_stage() as stage:
        # A /30 has two host addresses: the requestor takes one, one node fits.
        network = await stage.golem.create_network("10.0.0.0/30")
        cluster = await stage.golem.run_service(
            Plain,
            num_instances=2,
            network=network,
            restart=RestartPolicy(Restart.NEVER),
        )
        with trio.fail_after(600):
            await cluster.wait_running(1)
            while not any(s.instance.finished for s in cluster.instances):  # noqa: ASYNC110 (polled: no event to wait on)
                await trio.sleep(1)
        full = next(s for s in cluster.instances if s.instance.finished)
        assert isinstance(full.stop_reason, ProvisioningFailed)
        assert isinstance(full.exc_info, AddressSpaceExhausted)
        assert full.instance.agreement is None, "nothing is signed for an instance with no room"
        agreements = stage.net.market.agreements.values()
        assert sum(1 for a in agreements) == 1
        await cluster.stop()


async def test_the_network_goes_once_no_cluster_uses_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_stage() as stage:
        async with await stage.golem.create_network("192.168.5.0/24") as network:
            cluster = await stage.golem.run_service(Plain, num_instances=1, network=network)
            with trio.fail_after(600):
                await cluster.wait_running()
        # Asked to go while a cluster uses it: it stays until the cluster stops.
        assert network.closing
        assert not network.removed
        assert not stage.removed(network)
        assert cluster.instances[0].state is ServiceState.RUNNING
        with pytest.raises(Exception, match="being removed"):
            await stage.golem.run_service(Plain, num_instances=1, network=network)
        await cluster.stop()
        with trio.fail_after(60):
            await network.wait_removed()
        assert stage.removed(network)


FAULTS = st.lists(
    st.tuples(
        st.floats(0.0, 120.0),
        st.integers(0, 3),
        st.sampled_from(["terminate", "kill", "scale-up", "stop-one"]),
    ),
    max_size=8,
)


@hypothesis.settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    instances=st.integers(1, 4),
    prefix=st.sampled_from([29, 28, 24]),
    faults=FAULTS,
)
async def test_nodes_follow_lives_under_random_faults(
    autojump_clock: trio.testing.MockClock,
    instances: int,
    prefix: int,
    faults: list[tuple[float, int, str]],
) -> None:
    """Whatever happens to the instances, the daemon never has a node at an address the SDK
    does not hold for exactly that provider, no address is held by two live instances, and
    every node added is removed by the end."""
    violations: list[str] = []
    async with scripted_stage(providers=6) as stage:
        network = await stage.golem.create_network(f"172.16.0.0/{prefix}")
        held: dict[str, str] = {}

        def check(event: object) -> None:
            if not isinstance(event, ServiceStateChanged):
                return
            if network.removed:
                return
            mine = {}
            for service in cluster_ref:
                node = service.network_node
                if node is not None:
                    if node.ip in mine:
                        violations.append(f"{node.ip} held by two instances")
                    mine[node.ip] = node.node_id
            pool = network.nodes
            for ip, node_id in stage.daemon_nodes(network).items():
                if pool.get(ip) != node_id:
                    violations.append(f"daemon node {node_id} at {ip}, the SDK has {pool.get(ip)}")
            for ip, node_id in mine.items():
                held[ip] = node_id

        cluster_ref: list[Plain] = []
        stage.golem.add_event_consumer(check)
        cluster = await stage.golem.run_service(
            Plain,
            num_instances=instances,
            network=network,
            restart=RestartPolicy(Restart.ON_FAILURE, max_restarts=3, backoff=1.0, jitter=0.0),
        )
        cluster_ref.extend(cluster.instances)
        for delay, which, kind in sorted(faults):
            await trio.sleep(delay)
            live = [s for s in cluster.instances if not s.instance.finished]
            if kind == "scale-up":
                cluster_ref.extend(cluster.spawn_instances(1))
                continue
            if not live:
                continue
            target = live[which % len(live)]
            record = target.instance
            try:
                if kind == "terminate" and record.agreement is not None:
                    stage.net.faults.terminate_agreement(record.agreement.agreement_id)
                elif kind == "kill" and record.activity_id is not None:
                    stage.net.faults.kill_activity(record.activity_id)
                elif kind == "stop-one":
                    await cluster.stop_instance(target)
            except FaultError:
                pass
        await trio.sleep(60)
        await cluster.stop()
        assert stage.daemon_nodes(network) == {}
        assert network.pool.held == {}
    assert not violations, violations
    assert stage.removed(network)
    hypothesis.event("addresses used", str(len(held)))
