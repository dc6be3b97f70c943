"""Shared setup of the network tests: a Golem engine on a LocalNet, with the daemon's own view
of the VPNs at hand to check the SDK's against."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from golem_trio import Golem, Service, vm
from golem_trio.localnet import (
    ImageStore,
    LocalNet,
    ProviderSpec,
    Reply,
    RuntimeContext,
    discover_images,
    local_runtime_factory,
    open_localnet,
)
from golem_trio.localnet.providers import ScriptedRuntime
from golem_trio.market import Payload
from golem_trio.network import Network
from golem_trio.testing import assert_invariants

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
IMAGE_HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
BUDGET = 10.0
IMAGES = Path(__file__).resolve().parent / "images"


def echo(args: Sequence[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n", duration_s=0.1)


class DeployRecorder(ScriptedRuntime):
    """A scripted runtime that keeps every activity's deploy parameters."""

    def __init__(self, context: RuntimeContext, deploys: dict[str, Mapping[str, Any]]) -> None:
        super().__init__({"/bin/echo": echo})
        self._context = context
        self._deploys = deploys

    async def deploy(self, params: Mapping[str, Any]) -> None:
        self._deploys[self._context.activity_id] = params
        await super().deploy(params)


class Plain(Service):
    """A service on a scripted image: deploy, start, wait."""

    @staticmethod
    async def get_payload() -> Payload | None:
        return await vm.repo(image_hash=IMAGE_HASH, capabilities=[vm.VM_CAPS_VPN])


@attrs.define
class Stage:
    net: LocalNet
    golem: Golem
    deploys: dict[str, Mapping[str, Any]]

    def daemon_nodes(self, network: Network) -> dict[str, str]:
        """The daemon's nodes of ``network``: address → node id."""
        state = self.net.vpn.networks[network.network_id]
        if state.removed:
            return {}
        return {str(ip): node_id for node_id, ip in state.nodes}

    def removed(self, network: Network) -> bool:
        return self.net.vpn.networks[network.network_id].removed


@contextlib.asynccontextmanager
async def scripted_stage(providers: int = 3) -> AsyncIterator[Stage]:
    """An in-process LocalNet (virtual-time friendly) whose activities record their deploy
    parameters, and an engine on it; the §4 invariants are checked after the block."""
    deploys: dict[str, Mapping[str, Any]] = {}

    def runtime(context: RuntimeContext) -> DeployRecorder:
        return DeployRecorder(context, deploys)

    specs = [ProviderSpec(name=f"p{i}") for i in range(providers)]
    async with open_localnet(specs, epoch=EPOCH, runtime=runtime) as net:
        async with Golem(budget=BUDGET, localnet=net, handle_signals=False) as golem:
            yield Stage(net, golem, deploys)
        assert_invariants(net, budget=BUDGET)


@contextlib.asynccontextmanager
async def sandbox_stage(
    providers: int = 4, image_roots: Sequence[Path] = (IMAGES,)
) -> AsyncIterator[Stage]:
    """A served LocalNet whose activities run in bubblewrap sandboxes (the local runtime, on
    the wall clock), with the image folders under ``image_roots``; an engine on it."""
    store = ImageStore()
    await trio.to_thread.run_sync(discover_images, store, list(image_roots))
    specs = [ProviderSpec(name=f"p{i}") for i in range(providers)]
    async with open_localnet(specs, runtime=local_runtime_factory(store), serve=True) as net:
        async with Golem(budget=BUDGET, localnet=net, handle_signals=False) as golem:
            yield Stage(net, golem, {})
        assert_invariants(net, budget=BUDGET)
