"""The engine end to end on LocalNet in virtual time: two instances of a seed-style service
run a few cycles, stop on their own, are paid, and leave nothing open; the ``Golem``'s own
lifecycle (it runs once; outside its block it refuses to work); adoption of a withdrawn
agreement."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncGenerator, Awaitable
from decimal import Decimal

import attrs
import pytest
import trio
import trio.testing

from golem_trio import Golem, Restart, RestartPolicy, Result, Script, Service, ServiceState, vm
from golem_trio.events import AgreementTerminated, ServiceStateChanged
from golem_trio.localnet import (
    ProviderSpec,
    Reply,
    ledger,
    open_localnet,
    scripted_runtime_factory,
)
from golem_trio.market import (
    AgreementWithdrawn,
    StaticResolver,
    build_demand,
    open_negotiation,
    use_resolver,
)
from golem_trio.services import AgreementLost, RunFinished, ServiceDefinitionError
from golem_trio.terms import AgreementTerms
from golem_trio.testing import assert_invariants, snapshot_tasks
from golem_trio.yagna import ApiConfig, DaemonUnreachable, Reason, Unauthorized, YagnaClient

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
BUDGET = Decimal("1.0")


class EchoService(Service):
    cycles = 3

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    @staticmethod
    async def get_payload() -> vm.VmPayload:
        return await vm.repo(image_hash=HASH, min_mem_gib=0.5, min_storage_gib=2.0)

    async def start(self) -> AsyncGenerator[Script, Awaitable[list[Result]]]:
        self._ctx.run("/bin/echo", "starting")
        yield self._ctx.commit()

    async def run(self) -> AsyncGenerator[Script, Awaitable[list[Result]]]:
        for i in range(self.cycles):
            await trio.sleep(10)
            self._ctx.run("/bin/echo", f"hello {i}")
            future = yield self._ctx.commit()
            results = await future
            self.seen.append((results[0].stdout or "").strip())


def echo(args: list[str]) -> Reply:
    return Reply(stdout=" ".join(args) + "\n", duration_s=0.1)


async def test_two_instances_run_stop_and_are_paid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[object] = []
    specs = [ProviderSpec(name=f"p{i}") for i in range(3)]
    runtime = scripted_runtime_factory({"/bin/echo": echo})
    async with open_localnet(specs, epoch=EPOCH, runtime=runtime) as net:
        before = snapshot_tasks()
        async with Golem(
            budget=BUDGET, localnet=net, handle_signals=False, event_consumer=events.append
        ) as golem:
            cluster = await golem.run_service(
                EchoService,
                num_instances=2,
                expiration=net.daemon.clock.now() + dt.timedelta(minutes=30),
            )
            with trio.fail_after(120):
                running = await cluster.wait_running()
            assert len(running) == 2
            await cluster.wait_finished()
        assert snapshot_tasks().new_since(before) == []
        book = ledger(net)
        assert_invariants(net, budget=BUDGET)

    for service in cluster.instances:
        assert service.seen == ["hello 0", "hello 1", "hello 2"]
        assert isinstance(service.stop_reason, RunFinished)
        assert [c.new for c in service.instance.history] == [
            ServiceState.STARTING,
            ServiceState.RUNNING,
            ServiceState.STOPPING,
            ServiceState.TERMINATED,
        ]
    assert len({s.provider_id for s in cluster.instances}) == 2
    agreements = book["agreements"]
    assert len(agreements) == 2
    assert all(a["terminator"] == "Requestor" for a in agreements)
    assert all(a["reason"]["golem.requestor.code"] == "Success" for a in agreements)
    report = golem.payment_report
    assert report is not None
    assert set(report.invoices_accepted) == {a["id"] for a in agreements}
    assert report.allocation_released
    changes = [e for e in events if isinstance(e, ServiceStateChanged)]
    assert [e.new for e in changes].count("running") == 2


class Forever(EchoService):
    async def run(self) -> None:  # type: ignore[override]
        await trio.sleep_forever()


async def test_an_overcharging_provider_loses_the_agreement_and_the_next_life_goes_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    specs = [ProviderSpec(name="cheat", price_cpu_sec=Decimal("0.00001"))] + [
        ProviderSpec(name=f"honest{i}", price_cpu_sec=Decimal("0.001")) for i in range(2)
    ]
    runtime = scripted_runtime_factory({"/bin/echo": echo})
    async with open_localnet(specs, epoch=EPOCH, runtime=runtime) as net:
        net.faults.dishonest("cheat", "inflate")
        lives_running: list[str] = []
        running_again = trio.Event()

        ended: list[AgreementTerminated] = []

        def watch(event: object) -> None:
            if isinstance(event, AgreementTerminated):
                ended.append(event)
            if isinstance(event, ServiceStateChanged) and event.new == "running":
                lives_running.append(str(event.provider_name))
                if len(lives_running) == 2:
                    running_again.set()

        async with Golem(
            budget=BUDGET, localnet=net, handle_signals=False, event_consumer=watch
        ) as golem:
            cluster = await golem.run_service(
                Forever,
                num_instances=1,
                expiration=net.daemon.clock.now() + dt.timedelta(minutes=30),
                restart=RestartPolicy(Restart.ON_FAILURE, backoff=0.0),
            )
            (service,) = cluster.instances
            with trio.fail_after(3600):
                await running_again.wait()
            await cluster.stop()
        assert_invariants(net, budget=BUDGET)
        book = ledger(net)
    first = service.instance.stop_reasons[0]
    assert isinstance(first, AgreementLost)
    assert first.termination_code is not None
    # The requestor's payment processor ended it, and the event says so.
    assert (ended[0].terminator, ended[0].code) == ("Requestor", first.termination_code)
    # The cheapest provider is tried first, cheats, and is banned: the next life is elsewhere.
    assert lives_running[0] == "cheat"
    assert lives_running[1] != "cheat"
    assert len(book["agreements"]) == 2
    assert not any(n["honest"] is False and n["status"] == "ACCEPTED" for n in book["debitNotes"])


async def test_no_daemon_is_a_typed_error_at_start() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # a port nobody listens on
        port = holder.getsockname()[1]
        config = ApiConfig(app_key="key", api_url=f"http://127.0.0.1:{port}")
        with pytest.raises(DaemonUnreachable):
            async with Golem(budget=1, api_config=config, handle_signals=False):
                raise AssertionError("the engine must not start")


async def test_a_wrong_app_key_is_a_typed_error_at_start() -> None:
    async with open_localnet([ProviderSpec(name="p0")], serve=True) as net:
        assert net.url is not None
        config = ApiConfig(app_key="not-the-key", api_url=net.url)
        with pytest.raises(Unauthorized):
            async with Golem(budget=1, api_config=config, handle_signals=False):
                raise AssertionError("the engine must not start")
        assert ledger(net)["allocations"] == []


async def test_a_service_class_mistake_is_caught_before_anything_is_signed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class NotAsync(Service):
        @staticmethod
        def get_payload() -> None:  # type: ignore[override]
            return None

    async with open_localnet([ProviderSpec(name="p0")], epoch=EPOCH) as net:
        async with Golem(budget=1, localnet=net, handle_signals=False) as golem:
            with pytest.raises(ServiceDefinitionError, match="async def"):
                await golem.run_service(NotAsync)
        assert ledger(net)["agreements"] == []


# --- the Golem's own lifecycle ---------------------------------------------------------------


async def test_outside_the_block_the_engine_refuses_to_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_localnet([ProviderSpec(name="p0")], epoch=EPOCH) as net:
        golem = Golem(budget=1, localnet=net, handle_signals=False)
        assert not golem.operative
        # Before the block.
        with pytest.raises(RuntimeError, match="async with Golem"):
            await golem.run_service(EchoService)
        with pytest.raises(RuntimeError, match="async with Golem"):
            golem.stop()
        with pytest.raises(RuntimeError, match="async with Golem"):
            _ = golem.payments
        with pytest.raises(RuntimeError, match="async with Golem"):
            await golem.set_budget(2)
        golem.hurry()  # signal-safe: nothing to hurry yet
        async with golem:
            assert golem.operative
            assert golem.payments.budget.budget == Decimal(1)
        # After the block.
        assert not golem.operative
        with pytest.raises(RuntimeError, match="block has ended"):
            await golem.run_service(EchoService)
        with pytest.raises(RuntimeError, match="block has ended"):
            golem.stop()
        with pytest.raises(RuntimeError, match="block has ended"):
            _ = golem.payments
        with pytest.raises(RuntimeError, match="block has ended"):
            await golem.set_budget(2)
        golem.hurry()
        assert golem.clusters == []
        assert golem.payment_report is not None
        assert ledger(net)["agreements"] == []


async def test_a_golem_runs_once(autojump_clock: trio.testing.MockClock) -> None:
    async with open_localnet([ProviderSpec(name="p0")], epoch=EPOCH) as net:
        golem = Golem(budget=1, localnet=net, handle_signals=False)
        async with golem:
            # Entering it again while it runs.
            with pytest.raises(RuntimeError, match="already running"):
                async with golem:
                    raise AssertionError("entered twice")
            assert golem.operative
        # Entering it again once it ran.
        with pytest.raises(RuntimeError, match="runs once"):
            async with golem:
                raise AssertionError("entered after its block ended")
        (allocation,) = ledger(net)["allocations"]
        assert allocation["released"]


async def test_a_golem_that_failed_to_start_cannot_be_entered_again() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # a port nobody listens on
        port = holder.getsockname()[1]
        config = ApiConfig(app_key="key", api_url=f"http://127.0.0.1:{port}")
        golem = Golem(budget=1, api_config=config, handle_signals=False)
        with pytest.raises(DaemonUnreachable):
            async with golem:
                raise AssertionError("the engine must not start")
        with pytest.raises(RuntimeError, match="runs once"):
            async with golem:
                raise AssertionError("the engine must not start again")
        with pytest.raises(RuntimeError, match="block has ended"):
            golem.stop()


async def test_a_withdrawn_agreement_is_adopted_and_paid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An agreement approved just as its signing was given up (``AgreementWithdrawn``) is
    registered for payment by the engine, so its invoice is validated and paid."""
    async with open_localnet([ProviderSpec(name="p0")], epoch=EPOCH) as net:
        config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
        async with (
            YagnaClient(config, transport=net.transport()) as yagna,
            Golem(budget=BUDGET, localnet=net, handle_signals=False) as golem,
        ):
            with use_resolver(StaticResolver()):
                payload = await EchoService.get_payload()
                now = net.now()
                demand = build_demand(
                    payload,
                    expiration=now + dt.timedelta(minutes=30),
                    payment_platform=golem.payment_platform,
                    subnet_tag=golem.subnet_tag,
                    now=now,
                )
                # Signed as the engine's own negotiations sign: under its application session.
                async with open_negotiation(
                    yagna,
                    demand,
                    platform=golem.payment_platform,
                    now=net.now,
                    app_session_id=golem.app_session_id,
                ) as market:
                    info = await market.sign()
            await yagna.market.terminate_agreement(
                info.agreement_id, Reason("given up", {"golem.requestor.code": "Cancelled"})
            )
            assert golem.payments.billing.get(info.agreement_id) is None
            golem.emit(AgreementWithdrawn(info.agreement_id, info.provider_id))
            await trio.sleep(1)
            assert golem.payments.billing.get(info.agreement_id) is not None
        assert_invariants(net, budget=BUDGET)
        (agreement,) = ledger(net)["agreements"]
    report = golem.payment_report
    assert report is not None
    assert agreement["id"] == info.agreement_id
    assert info.agreement_id in report.invoices_accepted
    assert report.unpaid == ()


async def test_an_agreement_it_made_is_billed_by_its_proposals_without_reading_it_back() -> None:
    """The engine made the agreement from two proposals it holds: billing registers the terms
    they give, the ones the daemon's copy gives (approval counted from the confirmation, never
    later than the daemon's), without asking the daemon for the agreement."""
    specs = [ProviderSpec(name=f"p{i}") for i in range(3)]
    runtime = scripted_runtime_factory({"/bin/echo": echo})
    async with open_localnet(specs, runtime=runtime, serve=True) as net:
        assert net.url is not None
        config = ApiConfig(app_key=net.app_key, api_url=net.url)
        with use_resolver(StaticResolver()):
            async with Golem(budget=BUDGET, api_config=config, handle_signals=False) as golem:
                cluster = await golem.run_service(
                    Forever,
                    num_instances=3,
                    expiration=net.daemon.clock.now() + dt.timedelta(minutes=30),
                )
                with trio.fail_after(120):
                    await cluster.wait_running()
                assert net.requests_served["get_agreement"] == 0
                registered = []
                for record in cluster.records:
                    assert record.agreement is not None
                    billing = golem.payments.billing.get(record.agreement.agreement_id)
                    assert billing is not None
                    registered.append(billing.terms)
                async with YagnaClient(config) as yagna:
                    for terms in registered:
                        agreement = await yagna.market.get_agreement(terms.agreement_id)
                        assert agreement.approved_date is not None
                        assert terms.approved_at <= agreement.approved_date
                        daemon = AgreementTerms.from_agreement(agreement, terms.requestor_id)
                        assert attrs.evolve(terms, approved_at=daemon.approved_at) == daemon
                cluster.stop()
        assert_invariants(net, budget=BUDGET)
