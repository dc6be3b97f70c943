"""The engine on LocalNet's real-daemon backend: the SDK, a real yagna, the simulated
providers (REST provider agent, Python exe-unit) and payments on a local chain.

Each test starts its own daemon and chain (a few seconds) and runs on the real clock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import attrs
import httpx2
import trio

from golem_trio import Cluster, Golem, HealthCheck, Restart, RestartPolicy, Service, vm
from golem_trio.events import AgreementTerminatedForBilling, InvoiceRejected
from golem_trio.localnet import (
    ProviderSpec,
    Reply,
    local_runtime_factory,
    scripted_runtime_factory,
)
from golem_trio.localnet.yagna import YagnaLocalNet, open_yagna_localnet
from golem_trio.market import StaticResolver, use_resolver
from golem_trio.services import ActivityDied, AgreementLost, ProviderTerminated, RunFinished
from golem_trio.work import CommandExecuted
from golem_trio.yagna import ApiConfig, YagnaClient

from ._guide import copy_guide

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
DEADLINE = 120.0
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Echo(Service):
    cycles: int | None = 3

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    @staticmethod
    async def get_payload() -> vm.VmPayload:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        i = 0
        while self.cycles is None or i < self.cycles:
            await trio.sleep(1)
            script = self._ctx.new_script()
            echoed = script.run("/bin/echo", f"hi {i}")
            await script
            self.seen.append(((await echoed).stdout or "").strip())
            i += 1


class Forever(Echo):
    cycles = None


@attrs.define
class Stage:
    net: YagnaLocalNet
    golem: Golem
    events: list[object]

    def provider_index(self, provider_id: str | None) -> int:
        return next(i for i, a in enumerate(self.net.agents) if a.node_id == provider_id)


@asynccontextmanager
async def stage(providers: int = 2, invoice_wait: float = 30) -> AsyncIterator[Stage]:
    """A real-daemon LocalNet and an engine for it (not yet entered: ``async with st.golem``;
    the network outlives the engine, so a test can look at it afterwards)."""
    specs = [ProviderSpec(name=f"yp{i}", debit_note_interval=2, tick=0.5) for i in range(providers)]
    runtime = scripted_runtime_factory({"/bin/echo": lambda a: Reply(stdout=" ".join(a) + "\n")})
    async with open_yagna_localnet(specs, runtime=runtime) as net:
        events: list[object] = []
        config = ApiConfig(app_key=net.app_key, api_url=net.url, gsb_url=net.gsb_url)
        with use_resolver(StaticResolver()):
            golem = Golem(
                budget=1.0,
                api_config=config,
                handle_signals=False,
                invoice_wait=invoice_wait,
                event_consumer=events.append,
            )
            yield Stage(net, golem, events)


def expiration() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)


async def test_a_service_runs_is_paid_and_settled_on_the_chain() -> None:
    with trio.fail_after(DEADLINE):
        async with stage() as st:
            async with st.golem:
                cluster = await st.golem.run_service(Echo, num_instances=2, expiration=expiration())
                await cluster.wait_running()
                await cluster.wait_finished()
            await settles_on_chain(st, cluster)


async def settles_on_chain(st: Stage, cluster: Cluster[Echo]) -> None:
    """Every accepted invoice is paid on the chain: each provider's token balance is exactly
    what was accepted for its agreement."""
    report = st.golem.payment_report
    net = st.net
    assert report is not None
    for service in cluster.instances:
        assert service.seen == ["hi 0", "hi 1", "hi 2"]
        assert isinstance(service.stop_reason, RunFinished)
        assert not service.instance.shutdown_timed_out
    assert len(report.invoices_accepted) == 2
    assert report.debit_notes_accepted >= 2
    assert report.unpaid == ()
    assert report.allocation_released
    # Settle now (instead of at the next batch cycle) and read the chain.
    auth = {"Authorization": f"Bearer {net.app_key}"}
    async with httpx2.AsyncClient(base_url=net.url, headers=auth, trust_env=False) as client:
        reply = await client.post(f"/payment-api/v1/batchCycle/{net.payment_platform}/now")
        assert reply.status_code == 200, reply.text
    assert net.chain is not None
    # The token has 18 decimals: the erc20 driver pays an amount cut to whole base units.
    wei = Decimal("1e-18")
    by_provider = {
        service.provider_id: report.invoices_accepted[
            service.instance.agreement.agreement_id
        ].quantize(wei, rounding=ROUND_DOWN)
        for service in cluster.instances
        if service.instance.agreement is not None
    }
    assert len(by_provider) == 2
    chain = net.chain
    while True:
        balances = {
            provider: await trio.to_thread.run_sync(chain.token_balance, provider)
            for provider in by_provider
        }
        if all(balances[p] >= by_provider[p] for p in by_provider):
            break
        await trio.sleep(0.5)
    assert balances == by_provider


async def test_a_provider_terminating_the_agreement_stops_the_instance() -> None:
    with trio.fail_after(DEADLINE):
        async with stage() as st, st.golem:
            cluster = await st.golem.run_service(
                Forever,
                num_instances=1,
                expiration=expiration(),
                restart=RestartPolicy(Restart.NEVER),
            )
            (service,) = await cluster.wait_running()
            agreement = service.instance.agreement
            assert agreement is not None
            port = st.net.ports[st.provider_index(service.provider_id)]
            await port.terminate_agreement(
                agreement.agreement_id, {"message": "going away", "golem.provider.code": "Shutdown"}
            )
            await cluster.wait_finished()
        reason = service.stop_reason
        assert isinstance(reason, ProviderTerminated)
        assert reason.provider_code == "Shutdown"
        assert not service.instance.shutdown_ran
        assert st.golem.payment_report is not None
        assert st.golem.payment_report.unpaid == ()


async def test_an_activity_dying_stops_the_instance() -> None:
    with trio.fail_after(DEADLINE):
        async with stage() as st, st.golem:
            cluster = await st.golem.run_service(
                Forever,
                num_instances=1,
                expiration=expiration(),
                restart=RestartPolicy(Restart.NEVER),
                health=HealthCheck(interval=1.0),
            )
            (service,) = await cluster.wait_running()
            activity_id = service.instance.activity_id
            assert activity_id is not None
            host = st.net.hosts[st.provider_index(service.provider_id)]
            await host.units[activity_id].terminate("the exe-unit crashed")
            await cluster.wait_finished()
        assert isinstance(service.stop_reason, ActivityDied)
        assert st.golem.payment_report is not None
        assert st.golem.payment_report.allocation_released


async def test_a_dishonest_debit_note_is_not_paid_and_ends_the_agreement() -> None:
    with trio.fail_after(DEADLINE):
        # The daemon will not let the provider invoice less than its inflated note: no
        # invoice comes, so the engine need not wait long for one.
        async with stage(invoice_wait=3) as st, st.golem:
            cluster = await st.golem.run_service(
                Forever,
                num_instances=1,
                expiration=expiration(),
                restart=RestartPolicy(Restart.NEVER),
            )
            (service,) = await cluster.wait_running()
            activity_id = service.instance.activity_id
            assert activity_id is not None
            port = st.net.ports[st.provider_index(service.provider_id)]
            usage = await port.usage(activity_id)
            await port.send_debit_note(activity_id, Decimal(5), usage, None, honest=False)
            await cluster.wait_finished()
        reason = service.stop_reason
        assert isinstance(reason, AgreementLost)
        broken = [e for e in st.events if isinstance(e, AgreementTerminatedForBilling)]
        assert [e.agreement_id for e in broken] == [service.instance.agreement.agreement_id]
        assert reason.termination_code == broken[0].code
        report = st.golem.payment_report
        assert report is not None
        assert report.spent < Decimal(5)
        (unpaid,) = report.unpaid
        assert unpaid.agreement_id == service.instance.agreement.agreement_id


async def test_the_guides_simple_service_runs_on_the_real_daemon(tmp_path: Path) -> None:
    guide = copy_guide(tmp_path, "guide_simple_service")
    specs = [ProviderSpec(name=f"yp{i}", tick=0.5) for i in range(2)]
    stats: list[str] = []

    def consumer(event: object) -> None:
        if isinstance(event, CommandExecuted) and event.command.endswith("--stats"):
            stats.append(event.stdout or "")

    with trio.fail_after(DEADLINE):
        async with open_yagna_localnet(specs, runtime=local_runtime_factory(guide.store)) as net:
            config = ApiConfig(app_key=net.app_key, api_url=net.url, gsb_url=net.gsb_url)
            with use_resolver(StaticResolver()):
                golem = Golem(
                    budget=1.0, api_config=config, handle_signals=False, event_consumer=consumer
                )
                async with golem:
                    cluster = await golem.run_service(
                        guide.module.SimpleService, num_instances=2, expiration=expiration()
                    )
                    await cluster.wait_running()
                    await trio.sleep(12)
                    await cluster.stop()
    assert len(stats) >= 2
    assert all(json.loads(line)["count"] > 0 for line in stats)
    assert len(guide.plots()) >= 2
    for service in cluster.instances:
        assert service.instance.shutdown_ran
        assert not service.instance.shutdown_timed_out
    report = golem.payment_report
    assert report is not None
    assert len(report.invoices_accepted) == 2
    assert report.unpaid == ()


async def test_a_second_engine_on_the_daemon_leaves_the_first_ones_invoices_alone() -> None:
    """Two engines in a row on one daemon: the second reads its own application session's
    documents, from its own start, so the first one's accepted invoices never reach it (it
    used to reject each as unsolicited)."""
    with trio.fail_after(2 * DEADLINE):
        async with stage() as st:
            async with st.golem:
                cluster = await st.golem.run_service(Echo, num_instances=2, expiration=expiration())
                await cluster.wait_running()
                await cluster.wait_finished()
            first = st.golem.payment_report
            assert first is not None
            assert len(first.invoices_accepted) == 2
            events: list[object] = []
            second = Golem(
                budget=1.0,
                api_config=ApiConfig(
                    app_key=st.net.app_key, api_url=st.net.url, gsb_url=st.net.gsb_url
                ),
                handle_signals=False,
                invoice_wait=30,
                event_consumer=events.append,
            )
            async with second:
                cluster = await second.run_service(Echo, num_instances=1, expiration=expiration())
                await cluster.wait_running()
                await cluster.wait_finished()
            assert [e for e in events if isinstance(e, InvoiceRejected)] == []
            report = second.payment_report
            assert report is not None
            assert report.invoices_rejected == 0
            assert report.unpaid == ()
            (agreement_id,) = report.invoices_accepted
            assert agreement_id not in first.invoices_accepted
            assert report.app_session_id == second.app_session_id != st.golem.app_session_id
            # The first engine's invoices stay as it left them: accepted.
            config = ApiConfig(app_key=st.net.app_key, api_url=st.net.url)
            async with YagnaClient(config) as yagna:
                invoices = await yagna.payment.get_invoices()
                by_agreement = {i.agreement_id: i.status.value for i in invoices}
            for paid in first.invoices_accepted:
                assert by_agreement[paid] in ("ACCEPTED", "SETTLED"), by_agreement
