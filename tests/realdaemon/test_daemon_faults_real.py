"""A running cluster on the real daemon rides out its daemon misbehaving: the requestor's
daemon stopped (``SIGSTOP``) for 20 s and continued, and a fault-injecting proxy
(``golem_trio.localnet.open_fault_proxy``) in front of its REST API answering 503s, HTML
pages, malformed JSON and 408s, refusing connections and stalling requests on every route for
30 s.

The providers (REST agents and exe-units) talk to their daemon directly, so in the proxy test
only the requestor sees the faults; in the ``SIGSTOP`` test the providers' documents and
calls cannot reach the requestor's daemon either (on one node, where one daemon holds both
sides, the providers lose their daemon too), as when a requestor's daemon hangs. Real clock,
payments on the local chain.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from golem_trio import Cluster, Golem, Service, vm
from golem_trio.events import (
    DaemonAvailable,
    DaemonUnavailable,
    DebitNoteAccepted,
    InstanceRestarting,
    InvoiceAccepted,
    ServiceFinished,
)
from golem_trio.localnet import (
    PROXY_FAULT_KINDS,
    ProviderSpec,
    Reply,
    open_fault_proxy,
    scripted_runtime_factory,
)
from golem_trio.localnet.yagna import YagnaLocalNet, open_yagna_localnet
from golem_trio.market import StaticResolver, use_resolver
from golem_trio.services import ServiceState
from golem_trio.yagna import ApiConfig, YagnaClient

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
#: How long the daemon is stopped, and how long the proxy misbehaves (s).
STOPPED = 20.0
FAULT_WINDOW = 30.0


class Idle(Service):
    """Deploys, starts, echoes once, then runs until stopped (health probes, debit notes and
    the event feeds go on; the faults come after the echo: they hit the engine's background
    calls, not a script of the service's own)."""

    @staticmethod
    async def get_payload() -> vm.VmPayload:
        return await vm.repo(image_hash=HASH)

    def __init__(self) -> None:
        super().__init__()
        self.echoed = trio.Event()

    async def run(self) -> None:
        script = self._ctx.new_script()
        script.run("/bin/echo", "up")
        await script
        self.echoed.set()
        await trio.sleep_forever()


@attrs.define
class Watch:
    """What the engine reported: every event, and when the daemon came back."""

    events: list[object] = attrs.field(factory=list)
    came_back: trio.Event = attrs.field(factory=trio.Event)

    def __call__(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, DaemonAvailable):
            self.came_back.set()

    def of(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]


@asynccontextmanager
async def real_net(providers: int) -> AsyncIterator[YagnaLocalNet]:
    # Debit notes every 2 s, so notes fall due (and wait) while the daemon is away.
    specs = [ProviderSpec(name=f"yp{i}", debit_note_interval=2, tick=0.5) for i in range(providers)]
    runtime = scripted_runtime_factory({"/bin/echo": lambda a: Reply(stdout=" ".join(a) + "\n")})
    async with open_yagna_localnet(specs, runtime=runtime) as net:
        yield net


def expiration() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)


async def _invoice_statuses(net: YagnaLocalNet) -> Counter[str]:
    """How many invoices the daemon holds per agreement in an accepted or settled state."""
    config = ApiConfig(app_key=net.app_key, api_url=net.url)
    async with YagnaClient(config) as yagna:
        invoices = await yagna.payment.get_invoices()
    return Counter(i.agreement_id for i in invoices if i.status.value in ("ACCEPTED", "SETTLED"))


def _survived(
    watch: Watch, records: list[object], agreements: set[str], n: int, *, noticed: bool = True
) -> None:
    """All ``n`` instances still running on their first life, on the same agreements;
    with ``noticed``, the engine also said that the daemon went away and came back (a
    stopped daemon's requests only stall within the reply deadline, so it need not)."""
    assert [r.state for r in records] == [ServiceState.RUNNING] * n  # type: ignore[attr-defined]
    assert [r.lives for r in records] == [1] * n  # type: ignore[attr-defined]
    now = {r.agreement.agreement_id for r in records if r.agreement}  # type: ignore[attr-defined]
    assert now == agreements
    assert watch.of(InstanceRestarting) == []
    if noticed:
        assert watch.of(DaemonUnavailable)
        assert watch.of(DaemonAvailable)


def _paid_once(watch: Watch, agreements: set[str], held: Counter[str]) -> None:
    """Every agreement's invoice accepted exactly once, by the engine and on the daemon."""
    accepted = Counter(e.agreement_id for e in watch.of(InvoiceAccepted))  # type: ignore[attr-defined]
    assert set(accepted) == agreements, accepted
    assert set(accepted.values()) == {1}, accepted
    assert {a: held[a] for a in agreements} == dict.fromkeys(agreements, 1), held


def engine(net: YagnaLocalNet, api_url: str, watch: Watch) -> Golem:
    """An engine for ``net``, talking to it at ``api_url`` (the daemon or a proxy)."""
    return Golem(
        budget=1.0,
        api_config=ApiConfig(app_key=net.app_key, api_url=api_url),
        handle_signals=False,
        invoice_wait=30,
        event_consumer=watch,
    )


async def start_idle(golem: Golem, n: int) -> tuple[Cluster[Idle], set[str]]:
    """``n`` running :class:`Idle` instances, each past its echo, and their agreements."""
    cluster = await golem.run_service(Idle, num_instances=n, expiration=expiration())
    with trio.fail_after(90):
        await cluster.wait_running()
    agreements = {r.agreement.agreement_id for r in cluster.records if r.agreement}
    assert len(agreements) == n
    with trio.fail_after(30):
        for service in cluster.instances:
            await service.echoed.wait()
    return cluster, agreements


def _ended_well(watch: Watch, golem: Golem, agreements: set[str], held: Counter[str]) -> None:
    """The engine left as asked, paid everything, once, and released its allocation."""
    finished = watch.of(ServiceFinished)
    assert {e.stop_code for e in finished} == {"GolemExit"}  # type: ignore[attr-defined]
    report = golem.payment_report
    assert report is not None
    assert report.unpaid == ()
    assert report.allocation_released
    _paid_once(watch, agreements, held)


async def test_a_cluster_survives_the_daemon_stopped_for_20_seconds() -> None:
    n = 3
    watch = Watch()
    with trio.fail_after(STOPPED + 150):
        async with real_net(n) as net:
            pid = net.node.pid
            assert pid is not None
            with use_resolver(StaticResolver()):
                golem = engine(net, net.url, watch)
                async with golem:
                    cluster, agreements = await start_idle(golem, n)
                    os.kill(pid, signal.SIGSTOP)
                    try:
                        await trio.sleep(STOPPED)
                    finally:
                        os.kill(pid, signal.SIGCONT)
                    before = len(watch.events)
                    # Long enough for a few debit notes and health probes after the return.
                    await trio.sleep(10)
                    _survived(watch, list(cluster.records), agreements, n, noticed=False)
                    # The feeds came back: debit notes of every agreement accepted since.
                    later = watch.events[before:]
                    noted = {e.agreement_id for e in later if isinstance(e, DebitNoteAccepted)}
                    assert noted == agreements
            held = await _invoice_statuses(net)
    _ended_well(watch, golem, agreements, held)


async def test_a_cluster_of_10_rides_out_a_misbehaving_real_daemon() -> None:
    n = 10
    watch = Watch()
    with trio.fail_after(FAULT_WINDOW + 180):
        async with real_net(n) as net, open_fault_proxy(net.url) as proxy:
            with use_resolver(StaticResolver()):
                golem = engine(net, proxy.url, watch)
                async with golem:
                    cluster, agreements = await start_idle(golem, n)
                    async with proxy.window(FAULT_WINDOW, kinds=PROXY_FAULT_KINDS):
                        pass
                    with trio.fail_after(30):
                        await watch.came_back.wait()
                    await trio.sleep(3)
                    _survived(watch, list(cluster.records), agreements, n)
            held = await _invoice_statuses(net)
    assert set(proxy.injected) >= {"503", "malformed", "html"}, proxy.injected
    _ended_well(watch, golem, agreements, held)
