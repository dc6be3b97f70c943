"""Networks on a real yagna (LocalNet's real-daemon backend): what the daemon does on the
requestor's side. The engine creates the network, gives the requestor its address, adds each
instance's provider node and removes it when the instance stops, passes the network's
configuration in ``deploy``, and removes the network at its exit; the daemon's own answers
(``GET …/nodes``, ``GET …/net``) are checked against the SDK's view. The daemon's TCP
websocket is opened for a node whose exe-unit carries no VPN traffic: a typed error, not a
hang (504). Starts its own daemon and chain; on the real clock."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
import trio

from golem_trio import Golem, Service, vm
from golem_trio.localnet import ProviderSpec, RuntimeContext
from golem_trio.localnet.providers import ScriptedRuntime
from golem_trio.localnet.yagna import open_yagna_localnet
from golem_trio.market import Payload, StaticResolver, use_resolver
from golem_trio.network import VpnConnectionError
from golem_trio.yagna import ApiConfig, YagnaClient

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"


class Plain(Service):
    @staticmethod
    async def get_payload() -> Payload | None:
        return await vm.repo(image_hash=HASH, capabilities=[vm.VM_CAPS_VPN])


async def test_the_daemon_follows_the_networks_nodes() -> None:
    deploys: list[Mapping[str, Any]] = []

    class Recording(ScriptedRuntime):
        async def deploy(self, params: Mapping[str, Any]) -> None:
            deploys.append(params)
            await super().deploy(params)

    def runtime(context: RuntimeContext) -> Recording:
        return Recording()

    specs = [ProviderSpec(name=f"yp{i}", tick=0.5) for i in range(2)]
    with trio.fail_after(180):
        async with open_yagna_localnet(specs, runtime=runtime) as net:
            config = ApiConfig(app_key=net.app_key, api_url=net.url)
            async with YagnaClient(config) as yagna, contextlib.AsyncExitStack() as stack:
                # Offline: the image hash is resolved without the registry.
                stack.enter_context(use_resolver(StaticResolver()))
                golem = Golem(budget=1.0, api_config=config, handle_signals=False)
                async with golem:
                    network = await golem.create_network("192.168.77.0/24")
                    addresses = [a.ip for a in await yagna.net.get_addresses(network.network_id)]
                    assert any(a.startswith("192.168.77.1") for a in addresses), addresses
                    cluster = await golem.run_service(
                        Plain,
                        num_instances=2,
                        network=network,
                        network_addresses=["192.168.77.20"],
                        expiration=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20),
                    )
                    await cluster.wait_running()
                    mine = {
                        s.network_node.ip: s.network_node.node_id
                        for s in cluster.instances
                        if s.network_node is not None
                    }
                    assert "192.168.77.20" in mine
                    assert set(mine.values()) == {s.provider_id for s in cluster.instances}
                    daemon = await yagna.net.get_nodes(network.network_id)
                    assert {n.ip: n.id for n in daemon if n.ip in mine} == mine
                    assert len(deploys) == 2
                    for params in deploys:
                        (entry,) = params["net"]
                        assert entry["id"] == network.network_id
                        assert entry["nodeIp"] in mine
                    service = cluster.instances[0]
                    assert service.network_node is not None
                    url = service.network_node.websocket_url(22)
                    assert url.startswith("ws://")
                    assert network.network_id in url
                    # Nothing carries this node's VPN traffic (the backend's exe-unit has no
                    # network): the daemon answers 504, as for a connect that never completes.
                    with trio.fail_after(60), pytest.raises(VpnConnectionError) as refused:
                        await service.open_tcp_stream(22)
                    assert refused.value.status == 504
                    await cluster.stop()
                    left = await yagna.net.get_nodes(network.network_id)
                    assert not [n for n in left if n.ip in mine], left
                networks = await yagna.net.get_networks()
                assert network.network_id not in {n.id for n in networks}
