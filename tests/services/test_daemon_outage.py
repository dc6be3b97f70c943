"""A running cluster rides out a daemon that misbehaves for a while, over real sockets: a
fault-injecting proxy (``tests/_fault_proxy.py``) in front of a served LocalNet answers 503s,
HTML pages, malformed JSON and 408s, refuses connections and stalls requests, on every route.
Wall clock. An outage shorter than ``Golem(daemon_outage_limit=...)`` leaves every instance
running; a longer one stops the services as ``DaemonLost``, and their agreements are
terminated once the daemon is back."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from _fault_proxy import FAULT_KINDS, FaultProxy, open_fault_proxy
from _services_support import IMAGE_HASH, SCRIPTS, Op, RecordingRuntime

from golem_trio import Golem, Service, vm
from golem_trio.events import (
    AgreementTerminated,
    DaemonAvailable,
    DaemonUnavailable,
    InstanceRestarting,
    InvoiceAccepted,
    ServiceFinished,
)
from golem_trio.localnet import LocalNet, ProviderSpec, RuntimeContext, ledger, open_localnet
from golem_trio.market import Payload
from golem_trio.services import DaemonLost, ServiceState
from golem_trio.testing import assert_invariants
from golem_trio.yagna import ApiConfig

BUDGET = 10.0
#: How long the daemon misbehaves in the main test (s). The issue asks for 30 s; the whole test
#: then takes about 45 s. Lower it for a quicker run.
OUTAGE_WINDOW = 30.0


class QuietService(Service):
    """Starts, then runs until stopped (health probes, payments and the feeds go on)."""

    @staticmethod
    async def get_payload() -> Payload | None:
        return await vm.repo(
            image_hash=IMAGE_HASH,
            image_url=f"http://127.0.0.1/{IMAGE_HASH}.gvmi",
            min_mem_gib=0.5,
            min_storage_gib=2.0,
        )


async def _open(providers: int) -> Any:
    log: list[Op] = []

    def runtime(context: RuntimeContext) -> RecordingRuntime:
        return RecordingRuntime(context, log, scripts=SCRIPTS)

    specs = [ProviderSpec(name=f"p{i}") for i in range(providers)]
    return open_localnet(specs, runtime=runtime, serve=True)


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[LocalNet, FaultProxy]]:
    async with await _open(10) as net:
        assert net.url is not None
        async with open_fault_proxy(net.url) as proxy:
            yield net, proxy


def _paid_once(net: LocalNet) -> None:
    """Nothing paid twice: at most one accepted invoice per agreement, and every accepted
    document accepted once."""
    book = ledger(net)
    accepted = Counter(
        str(invoice.get("agreementId"))
        for invoice in book.get("invoices", [])
        if invoice.get("status") in ("ACCEPTED", "SETTLED")
    )
    assert all(count == 1 for count in accepted.values()), accepted


async def test_a_cluster_rides_out_a_misbehaving_daemon(
    proxied: tuple[LocalNet, FaultProxy],
) -> None:
    net, proxy = proxied
    events: list[object] = []
    came_back = trio.Event()

    def record(event: object) -> None:
        events.append(event)
        if isinstance(event, DaemonAvailable):
            came_back.set()

    config = ApiConfig(app_key=net.app_key, api_url=proxy.url)
    async with Golem(
        budget=BUDGET, api_config=config, handle_signals=False, event_consumer=record
    ) as golem:
        cluster = await golem.run_service(
            QuietService, num_instances=10, expiration=net.now() + dt.timedelta(minutes=30)
        )
        with trio.fail_after(30):
            await cluster.wait_running()
        agreements = {r.agreement.agreement_id for r in cluster.records if r.agreement}
        assert len(agreements) == 10
        async with proxy.window(OUTAGE_WINDOW, kinds=FAULT_KINDS):
            pass
        with trio.fail_after(20):
            await came_back.wait()
        await trio.sleep(2)
        assert [r.state for r in cluster.records] == [ServiceState.RUNNING] * 10
        assert [r.lives for r in cluster.records] == [1] * 10
        assert {r.agreement.agreement_id for r in cluster.records if r.agreement} == agreements
    assert sum(proxy.injected.values()) > 0
    assert set(proxy.injected) >= {"503", "malformed"}, proxy.injected
    assert not [e for e in events if isinstance(e, InstanceRestarting)]
    down = [e for e in events if isinstance(e, DaemonUnavailable)]
    back = [e for e in events if isinstance(e, DaemonAvailable)]
    assert down
    assert back
    assert back[-1].outage >= OUTAGE_WINDOW / 2
    finished = [e for e in events if isinstance(e, ServiceFinished)]
    assert {e.stop_code for e in finished} == {"GolemExit"}
    assert_invariants(net, budget=BUDGET)
    _paid_once(net)


async def test_an_outage_past_the_limit_stops_the_services_as_daemon_lost() -> None:
    events: list[object] = []
    async with await _open(2) as net:
        assert net.url is not None
        async with open_fault_proxy(net.url) as proxy:
            config = ApiConfig(app_key=net.app_key, api_url=proxy.url)
            async with Golem(
                budget=BUDGET,
                api_config=config,
                handle_signals=False,
                event_consumer=events.append,
                daemon_outage_limit=3.0,
            ) as golem:
                cluster = await golem.run_service(
                    QuietService, num_instances=2, expiration=net.now() + dt.timedelta(minutes=30)
                )
                with trio.fail_after(30):
                    await cluster.wait_running()
                # Down for longer than the limit (an outage counts from the first call that
                # failed after the client's own retries, up to a long poll's wait after the
                # window opened); back well within the cleanup's bound.
                async with proxy.window(15.0, kinds=("503", "refuse")):
                    pass
                with trio.fail_after(40):
                    await cluster.wait_finished()
                reasons = [r.stop_reason for r in cluster.records]
                assert all(isinstance(reason, DaemonLost) for reason in reasons), reasons
                assert all(r.state is ServiceState.TERMINATED for r in cluster.records)
                assert [r.lives for r in cluster.records] == [1, 1]
                assert golem.clusters == [cluster]
        assert_invariants(net, budget=BUDGET)
        _paid_once(net)
        book = ledger(net)
    terminated = [e for e in events if isinstance(e, AgreementTerminated)]
    assert len(terminated) == 2
    assert {e.terminator for e in terminated} == {"Requestor"}
    assert {e.code for e in terminated} == {"Cancelled"}
    assert all(a["state"] == "Terminated" for a in book["agreements"]), book["agreements"]
    finished = [e for e in events if isinstance(e, ServiceFinished)]
    assert {e.stop_code for e in finished} == {"DaemonLost"}
    assert any(isinstance(e, DaemonUnavailable) for e in events)
    assert any(isinstance(e, DaemonAvailable) for e in events)


def test_the_outage_limit_is_checked() -> None:
    from golem_trio import ConfigurationError

    with pytest.raises(ConfigurationError):
        Golem(budget=1, daemon_outage_limit=0)
    with pytest.raises(ConfigurationError):
        Golem(budget=1, daemon_outage_limit=float("inf"))
    assert Golem(budget=1).daemon_outage_limit == 300.0
    assert Golem(budget=1, daemon_outage_limit=None).daemon_outage_limit is None


async def test_documents_decided_during_an_outage_are_paid_once_it_ends() -> None:
    """The daemon fails every acceptance and rejection for longer than the client's own
    retries last, just when the invoices come: each decision's call is repeated until the
    daemon takes it, and every invoice is paid, once."""
    events: list[object] = []
    async with await _open(2) as net:
        assert net.url is not None
        async with open_fault_proxy(net.url) as proxy:
            config = ApiConfig(app_key=net.app_key, api_url=proxy.url)
            async with Golem(
                budget=BUDGET,
                api_config=config,
                handle_signals=False,
                event_consumer=events.append,
                invoice_wait=60,
            ) as golem:
                cluster = await golem.run_service(
                    QuietService, num_instances=2, expiration=net.now() + dt.timedelta(minutes=30)
                )
                with trio.fail_after(30):
                    await cluster.wait_running()
                proxy.start_faults(kinds=("503", "refuse"), routes=[r"/accept", r"/reject"])
                await cluster.stop()
                with trio.fail_after(30):
                    await proxy.wait_hit()
                await trio.sleep(8)
                proxy.stop_faults()
            report = golem.payment_report
        assert_invariants(net, budget=BUDGET)
        _paid_once(net)
        book = ledger(net)
    assert report is not None
    assert report.unpaid == ()
    assert len(report.invoices_accepted) == 2
    assert report.debit_notes_refused == 0
    invoices = book["invoices"]
    assert len(invoices) == 2
    assert all(i["status"] in ("ACCEPTED", "SETTLED") for i in invoices), invoices
    accepted = [e for e in events if isinstance(e, InvoiceAccepted)]
    assert sorted(e.invoice_id for e in accepted) == sorted(i["id"] for i in invoices)
