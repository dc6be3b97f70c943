"""LocalNet faults, each seen through the client in virtual time, and their determinism."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from golem_trio.localnet import (
    PLANS,
    DaemonFault,
    FaultKind,
    FaultPlan,
    LocalNet,
    Reply,
    ScheduledFault,
    ledger,
    load_plan,
    open_localnet,
    scripted_runtime_factory,
)
from golem_trio.localnet.providers import (
    ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    ProviderSpec,
    linear_cost,
)
from golem_trio.yagna import (
    AgreementTerminatedEvent,
    ApiConfig,
    Capture,
    CaptureMode,
    DaemonTimeout,
    DemandOfferBase,
    Deploy,
    NewAllocation,
    ProposalEvent,
    ProposalRejectedEvent,
    RequestTimeout,
    Run,
    ServerError,
    Start,
    YagnaClient,
)

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SPEC = ProviderSpec(
    name="faulty",
    price_cpu_sec=Decimal("0.0002"),
    price_duration_sec=Decimal("0.00003"),
    price_start=Decimal("0.01"),
)
RUNTIME = scripted_runtime_factory(
    {"echo": lambda args: Reply(stdout=" ".join(args) + "\n", duration_s=1.0)}
)


def net_of(plan: FaultPlan | None = None) -> Any:
    return open_localnet([SPEC], epoch=EPOCH, runtime=RUNTIME, faults=plan)


def client(net: LocalNet) -> YagnaClient:
    config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
    return YagnaClient(config, transport=net.transport())


def control(net: LocalNet) -> httpx2.AsyncClient:
    """A client of LocalNet's control API (``/localnet/...``), which wants the app key."""
    return httpx2.AsyncClient(
        transport=net.transport(),
        base_url="http://localnet",
        headers={"Authorization": f"Bearer {net.app_key}"},
    )


def demand(hours: float = 1.0, interval: int = 120) -> DemandOfferBase:
    expiration = int((EPOCH.timestamp() + hours * 3600) * 1000)
    return DemandOfferBase(
        {
            "golem.srv.comp.expiration": expiration,
            "golem.node.debug.subnet": "public",
            ACCEPT_TIMEOUT: 120,
            DEBIT_NOTE_INTERVAL: interval,
        },
        "(golem.node.debug.subnet=public)",
    )


async def negotiate(yagna: YagnaClient, hours: float = 1.0) -> tuple[str, list[object]]:
    """Counter the provider's offer until it answers with a draft (it may reject on purpose);
    the draft's id and every answer on the way."""
    ours = demand(hours)
    sub = await yagna.market.subscribe_demand(ours)
    (offer,) = await yagna.market.collect_offers(sub, wait=5)
    assert isinstance(offer, ProposalEvent)
    answers: list[object] = []
    for _ in range(20):
        await yagna.market.counter_proposal_demand(sub, offer.proposal.proposal_id, ours)
        (answer,) = await yagna.market.collect_offers(sub, wait=5)
        answers.append(answer)
        if isinstance(answer, ProposalEvent):
            await yagna.market.unsubscribe_demand(sub)
            return answer.proposal.proposal_id, answers
    raise AssertionError("the provider never answered with a draft")


async def sign(yagna: YagnaClient, hours: float = 1.0) -> str:
    draft_id, _ = await negotiate(yagna, hours)
    agreement_id = await yagna.market.create_agreement(
        draft_id, EPOCH + dt.timedelta(hours=hours + 1)
    )
    await yagna.market.confirm_agreement(agreement_id)
    assert (await yagna.market.wait_for_approval(agreement_id, wait=15)).approved
    return agreement_id


async def start_activity(yagna: YagnaClient, agreement_id: str) -> str:
    activity_id = await yagna.activity.create_activity(agreement_id)
    batch = await yagna.activity.exec(activity_id, [Deploy(), Start()])
    results = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
    assert [r.result.value for r in results] == ["Ok", "Ok"]
    return activity_id


async def run_echo(
    yagna: YagnaClient, activity_id: str, args: Sequence[str] = ("hi",), capture: Any = None
) -> Any:
    command = Run("echo", list(args), capture or Capture(stdout=CaptureMode()))
    batch = await yagna.activity.exec(activity_id, [command])
    (result,) = await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
    return result


async def termination(yagna: YagnaClient, agreement_id: str) -> AgreementTerminatedEvent:
    after = None
    with trio.fail_after(3600):
        while True:
            for event in await yagna.market.collect_agreement_events(
                wait=30, after_timestamp=after
            ):
                after = getattr(event, "event_date", after)
                if isinstance(event, AgreementTerminatedEvent):
                    assert event.agreement_id == agreement_id
                    return event


# --- providers -------------------------------------------------------------------------------


async def test_the_provider_terminates_an_agreement_by_hand(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with net_of() as net, client(net) as yagna:
        agreement_id = await sign(yagna)
        await start_activity(yagna, agreement_id)
        assert net.faults.terminate_agreement("faulty", code="Interrupted") == agreement_id
        event = await termination(yagna, agreement_id)
        assert event.terminator == "Provider"
        assert event.reason is not None
        assert event.reason.code("golem.provider.code") == "Interrupted"
        # It still bills what was used.
        (invoice_event,) = await yagna.payment.get_invoice_events(wait=10)
        assert (await yagna.payment.get_invoice(invoice_event.invoice_id)).agreement_id == (
            agreement_id
        )
        assert [(f.kind, f.target) for f in net.faults.fired] == [
            (FaultKind.TERMINATE_AGREEMENT, agreement_id)
        ]


async def test_scheduled_termination_over_http_listing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = FaultPlan(
        scheduled=[ScheduledFault(200, FaultKind.TERMINATE_AGREEMENT, "faulty", {"code": "Tired"})]
    )
    async with net_of(plan) as net, client(net) as yagna, control(net) as http:
        agreement_id = await sign(yagna)
        await start_activity(yagna, agreement_id)
        event = await termination(yagna, agreement_id)
        assert event.reason is not None
        assert event.reason.code("golem.provider.code") == "Tired"
        assert 200 <= trio.current_time() <= 202
        listing = (await http.get("/localnet/faults")).json()
        assert listing["plan"]["scheduled"][0]["kind"] == "terminate-agreement"
        ((fired),) = listing["fired"]
        assert (fired["kind"], fired["target"], fired["detail"]) == (
            "terminate-agreement",
            agreement_id,
            "Tired",
        )
        assert 200 <= fired["at"] <= 202


async def test_an_activity_dies(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna, control(net) as http:
        agreement_id = await sign(yagna)
        activity_id = await start_activity(yagna, agreement_id)
        reply = await http.post(
            "/localnet/faults/kill-activity", json={"target": activity_id, "reason": "oom"}
        )
        assert reply.status_code == 200
        assert reply.json()["activityId"] == activity_id
        state = await yagna.activity.get_state(activity_id)
        assert state.current is not None
        assert state.current.value == "Terminated"
        assert state.reason == "oom"
        assert state.error_message is not None
        # Nothing left to kill.
        reply = await http.post("/localnet/faults/kill-activity", json={})
        assert reply.status_code == 404


async def test_a_command_fails(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna:
        agreement_id = await sign(yagna)
        activity_id = await start_activity(yagna, agreement_id)
        net.faults.fail_next_command("faulty")
        failed = await run_echo(yagna, activity_id)
        assert failed.result.value == "Error"
        assert failed.message is not None
        ok = await run_echo(yagna, activity_id)
        assert (ok.result.value, ok.stdout) == ("Ok", "hi\n")


async def test_a_provider_rejects_proposals(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna:
        net.faults.reject_proposals("faulty")
        ours = demand()
        sub = await yagna.market.subscribe_demand(ours)
        (offer,) = await yagna.market.collect_offers(sub, wait=5)
        assert isinstance(offer, ProposalEvent)
        await yagna.market.counter_proposal_demand(sub, offer.proposal.proposal_id, ours)
        (answer,) = await yagna.market.collect_offers(sub, wait=5)
        assert isinstance(answer, ProposalRejectedEvent)
        net.faults.reject_proposals("faulty", on=False)
        await yagna.market.counter_proposal_demand(sub, offer.proposal.proposal_id, ours)
        (answer,) = await yagna.market.collect_offers(sub, wait=5)
        assert isinstance(answer, ProposalEvent)


async def test_a_provider_never_approves(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna:
        net.faults.never_approve("faulty")
        draft_id, _ = await negotiate(yagna)
        agreement_id = await yagna.market.create_agreement(draft_id, EPOCH + dt.timedelta(hours=2))
        await yagna.market.confirm_agreement(agreement_id)
        start = trio.current_time()
        result = await yagna.market.wait_for_approval(agreement_id, wait=15)
        assert result.timed_out
        assert trio.current_time() - start >= 15
        assert net.faults.fired[0].kind is FaultKind.NEVER_APPROVE


# --- the daemon ------------------------------------------------------------------------------


async def test_the_daemon_answers_5xx_and_408(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna, control(net) as http:
        reply = await http.post(
            "/localnet/faults/daemon-5xx", json={"operation": "createAllocation", "value": 500}
        )
        assert reply.status_code == 200
        # (A 500 reaches the caller of a creation; a 503 would be sent again.)
        with pytest.raises(ServerError) as error:
            await yagna.payment.create_allocation(NewAllocation(Decimal(5)))
        assert error.value.status == 500
        allocation = await yagna.payment.create_allocation(NewAllocation(Decimal(5)))
        net.faults.daemon_fault("getAllocation", FaultKind.DAEMON_408)
        with pytest.raises(RequestTimeout):
            await yagna.payment.get_allocation(allocation.allocation_id)
        assert (await yagna.payment.get_allocation(allocation.allocation_id)) == allocation
        # Retried, safe calls get through a 5xx.
        net.faults.daemon_fault("getAllocation", FaultKind.DAEMON_5XX)
        assert (await yagna.payment.get_allocation(allocation.allocation_id)) == allocation
        assert [f.kind for f in net.faults.fired] == [
            FaultKind.DAEMON_5XX,
            FaultKind.DAEMON_408,
            FaultKind.DAEMON_5XX,
        ]


async def test_the_daemon_adds_latency_and_stalls(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna:
        net.faults.daemon_fault("getAllocations", FaultKind.DAEMON_LATENCY, 7.0)
        start = trio.current_time()
        assert await yagna.payment.get_allocations() == []
        assert 7.0 <= trio.current_time() - start < 7.5
        net.faults.daemon_fault("*", FaultKind.DAEMON_STALL)
        # A stalled reply never arrives: the client's reply deadline ends each attempt.
        with trio.move_on_after(600) as scope, pytest.raises(DaemonTimeout):
            await yagna.payment.get_allocations()
        assert not scope.cancelled_caught
        start = trio.current_time()
        assert await yagna.payment.get_allocations() == []
        assert trio.current_time() - start < 0.5


async def test_daemon_faults_at_a_rate() -> None:
    plan = FaultPlan(seed=5, daemon=[DaemonFault("getAllocations", FaultKind.DAEMON_408, 0.5)])

    async def statuses() -> list[int]:
        async with net_of(plan) as net, control(net) as http:
            headers = {"Authorization": f"Bearer {net.app_key}"}
            return [
                (await http.get("/payment-api/v1/allocations", headers=headers)).status_code
                for _ in range(40)
            ]

    first = await statuses()
    assert set(first) == {200, 408}
    assert await statuses() == first


# --- dishonest billing -----------------------------------------------------------------------


async def bill(
    net: LocalNet, yagna: YagnaClient, kinds: Sequence[FaultKind], minutes: float = 10
) -> tuple[str, str]:
    """Bill ``minutes`` with the provider cheating in ``kinds``; the requestor accepts every
    note of its agreement meanwhile. A test that counts notes ends between two of them, so that
    no note races the termination."""
    for kind in kinds:
        net.faults.dishonest("faulty", kind)
    allocation = await yagna.payment.create_allocation(NewAllocation(Decimal(50)))
    agreement_id = await sign(yagna)
    activity_id = await start_activity(yagna, agreement_id)

    async def accept() -> None:
        after = None
        while True:
            for event in await yagna.payment.get_debit_note_events(wait=5, after_timestamp=after):
                after = event.event_date
                note = await yagna.payment.get_debit_note(event.debit_note_id)
                if note.agreement_id == agreement_id:
                    await yagna.payment.accept_debit_note(
                        note.debit_note_id, note.total_amount_due, allocation.allocation_id
                    )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        await trio.sleep(minutes * 60)
        await yagna.market.terminate_agreement(agreement_id)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    return agreement_id, activity_id


async def test_inflated_and_payable_notes_are_marked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with net_of() as net, client(net) as yagna:
        agreement_id, activity_id = await bill(
            net,
            yagna,
            [FaultKind.INFLATE, FaultKind.PAYABLE_WITHOUT_AGREEMENT, FaultKind.INVOICE_ABOVE_USAGE],
            minutes=9,
        )
        notes = [n for n in await yagna.payment.get_debit_notes() if n.activity_id == activity_id]
        assert len(notes) == 4  # every two minutes, as agreed: at 2, 4, 6 and 8
        entries = {e["id"]: e for e in ledger(net)["debitNotes"]}
        for note in notes:
            assert note.usage_counter_vector is not None
            honest = linear_cost(SPEC, note.usage_counter_vector)
            assert note.total_amount_due == honest * Decimal("1.5") > honest
            assert note.payment_due_date is not None  # though no payments were agreed
            assert entries[note.debit_note_id]["honest"] is False
        (invoice,) = ledger(net)["invoices"]
        assert invoice["agreementId"] == agreement_id
        assert invoice["honest"] is False
        usage = (await yagna.activity.get_usage(activity_id)).current_usage
        assert Decimal(invoice["amount"]) > linear_cost(SPEC, [float(x) for x in usage or []])


async def test_too_fast_second_invoice_and_unknown_agreements(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with net_of() as net, client(net) as yagna:
        agreement_id, activity_id = await bill(
            net,
            yagna,
            [FaultKind.TOO_FAST, FaultKind.SECOND_INVOICE, FaultKind.UNKNOWN_AGREEMENT],
        )
        notes = await yagna.payment.get_debit_notes()
        mine = [n for n in notes if n.activity_id == activity_id]
        forged = [n for n in notes if n.agreement_id != agreement_id]
        assert len(mine) >= 16  # every 30 s, not every 120 s
        assert len(forged) == len(mine)
        entries = ledger(net)
        # The forged notes are dishonest; of the activity's own, all but the first (which came
        # on time) came too fast.
        honesty = {e["id"]: e["honest"] for e in entries["debitNotes"]}
        assert not any(honesty[n.debit_note_id] for n in forged)
        first, *rest = sorted(mine, key=lambda n: n.timestamp)
        assert honesty[first.debit_note_id] is True
        assert not any(honesty[n.debit_note_id] for n in rest)
        known = {e["id"] for e in entries["agreements"]}
        assert not {n.agreement_id for n in forged} & known
        invoices = entries["invoices"]
        assert [(i["agreementId"], i["honest"]) for i in invoices] == [
            (agreement_id, True),
            (agreement_id, False),
        ]
        assert invoices[0]["amount"] == invoices[1]["amount"]


async def test_honest_billing_is_marked_honest(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna:
        await bill(net, yagna, [])
        entries = ledger(net)
        assert entries["debitNotes"]
        assert {e["honest"] for e in entries["debitNotes"] + entries["invoices"]} == {True}
        assert net.faults.fired == []


# --- output ----------------------------------------------------------------------------------


async def test_huge_and_malformed_output(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of() as net, client(net) as yagna, control(net) as http:
        agreement_id = await sign(yagna)
        activity_id = await start_activity(yagna, agreement_id)
        net.faults.huge_output(activity_id, size=1_000_000)
        huge = await run_echo(yagna, activity_id)
        assert isinstance(huge.stdout, str)
        assert len(huge.stdout) == 1_000_000
        net.faults.huge_output(activity_id, size=1_000_000)
        capped = await run_echo(yagna, activity_id, capture=Capture(stdout=CaptureMode(head=1000)))
        assert isinstance(capped.stdout, str)
        assert len(capped.stdout) == 1000
        reply = await http.post("/localnet/faults/malformed-output", json={"target": "faulty"})
        assert reply.status_code == 200
        malformed = await run_echo(yagna, activity_id)
        assert isinstance(malformed.stdout, str)
        assert "\ufffd" in malformed.stdout
        with pytest.raises(ValueError):
            json.loads(malformed.stdout)
        normal = await run_echo(yagna, activity_id)
        assert normal.stdout == "hi\n"


# --- plans and determinism -------------------------------------------------------------------


CHAOS = FaultPlan(
    seed=11,
    rates={
        FaultKind.REJECT_PROPOSALS: 0.5,
        FaultKind.FAIL_COMMAND: 0.3,
        FaultKind.MALFORMED_OUTPUT: 0.2,
        FaultKind.KILL_ACTIVITY: 1.0,
    },
    scheduled=[ScheduledFault(50, FaultKind.DAEMON_LATENCY, "getAllocations", {"value": 3})],
    window=400,
)


async def chaos_run(plan: FaultPlan) -> list[tuple[float, str, str, str]]:
    async with net_of(plan) as net, client(net) as yagna:
        agreement_id = await sign(yagna)
        activity_id = await yagna.activity.create_activity(agreement_id)
        for _ in range(30):  # commands may fail: try each step again until Ready
            state = (await yagna.activity.get_state(activity_id)).current
            if state is None or state.value not in ("Initialized", "Deployed"):
                break
            step = Deploy() if state.value == "Initialized" else Start()
            batch = await yagna.activity.exec(activity_id, [step])
            await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
        for _ in range(30):
            await trio.sleep(10)
            command = Run("echo", ["x"], Capture(stdout=CaptureMode()))
            try:
                batch = await yagna.activity.exec(activity_id, [command])
            except Exception:
                break  # the activity died
            await yagna.activity.get_exec_batch_results(activity_id, batch, wait=30)
        await yagna.payment.get_allocations()
        return [(f.at, f.kind.value, f.target, f.detail) for f in net.faults.fired]


async def test_the_same_plan_fires_the_same_faults(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = await chaos_run(CHAOS)
    kinds = {kind for _, kind, _, _ in first}
    assert {"reject-proposals", "fail-command", "kill-activity", "daemon-latency"} <= kinds
    assert await chaos_run(CHAOS) == first


def test_plans_load_by_name_and_from_json(tmp_path: Path) -> None:
    assert set(PLANS) >= {"none", "flaky-providers", "flaky-daemon", "dishonest", "chaos"}
    assert load_plan("chaos") is PLANS["chaos"]
    for plan in [*PLANS.values(), CHAOS]:
        assert FaultPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"seed": 3, "rates": {"inflate": 0.5}}))
    assert load_plan(str(path)) == FaultPlan(seed=3, rates={FaultKind.INFLATE: 0.5})
    with pytest.raises(ValueError, match="no fault plan named"):
        load_plan("no-such-plan")
    with pytest.raises(ValueError, match="not a probability"):
        FaultPlan(rates={"inflate": 2})
    with pytest.raises(ValueError, match="not a daemon fault"):
        DaemonFault("*", FaultKind.INFLATE)


async def test_the_control_api_answers_loopback_only_and_checks_its_input() -> None:
    async with net_of() as net:
        remote = httpx2.ASGITransport(app=net.app, client=("203.0.113.5", 4000))
        async with httpx2.AsyncClient(transport=remote, base_url="http://localnet") as http:
            assert (await http.get("/localnet/faults")).status_code == 403
            reply = await http.post("/localnet/faults/inflate", json={"target": "faulty"})
            assert reply.status_code == 403
        # On loopback, the control API wants an app key of the network.
        async with httpx2.AsyncClient(transport=net.transport(), base_url="http://localnet") as raw:
            assert (await raw.get("/localnet/faults")).status_code == 401
            reply = await raw.post("/localnet/faults/inflate", json={"target": "faulty"})
            assert reply.status_code == 401
            wrong = {"Authorization": "Bearer 0123456789abcdef0123456789abcdef"}
            assert (await raw.get("/localnet/faults", headers=wrong)).status_code == 401
            assert net.faults.json()["fired"] == []  # nothing was triggered without the key
        async with control(net) as http:
            assert (await http.post("/localnet/faults/no-such-fault", json={})).status_code == 404
            assert (await http.post("/localnet/faults/inflate", json={})).status_code == 400
            reply = await http.post("/localnet/faults/inflate", json={"target": "nobody"})
            assert reply.status_code == 404
            reply = await http.post("/localnet/faults/inflate", content=b"[1]")
            assert reply.status_code == 400
            reply = await http.post("/localnet/faults/inflate", json={"target": "faulty"})
            assert reply.json() == {"kind": "inflate", "provider": "faulty", "on": True}
            reply = await http.post(
                "/localnet/faults/daemon-5xx", json={"operation": "getVersion", "value": 200}
            )
            assert reply.status_code == 400


async def test_rates_terminate_agreements(autojump_clock: trio.testing.MockClock) -> None:
    plan = FaultPlan(seed=1, rates={FaultKind.TERMINATE_AGREEMENT: 1.0}, window=100)
    async with net_of(plan) as net, client(net) as yagna:
        agreement_id = await sign(yagna)
        await start_activity(yagna, agreement_id)
        event = await termination(yagna, agreement_id)
        assert event.reason is not None
        assert event.reason.code("golem.provider.code") == "Interrupted"
        assert trio.current_time() <= 103
        assert [(f.kind, f.target) for f in net.faults.fired] == [
            (FaultKind.TERMINATE_AGREEMENT, agreement_id)
        ]


async def test_rates_make_providers_withhold_approval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with net_of(FaultPlan(rates={FaultKind.NEVER_APPROVE: 1.0})) as net, client(net) as yagna:
        draft_id, _ = await negotiate(yagna)
        agreement_id = await yagna.market.create_agreement(draft_id, EPOCH + dt.timedelta(hours=2))
        await yagna.market.confirm_agreement(agreement_id)
        assert (await yagna.market.wait_for_approval(agreement_id, wait=60)).timed_out
        assert [(f.kind, f.target) for f in net.faults.fired] == [
            (FaultKind.NEVER_APPROVE, agreement_id)
        ]


async def test_rates_make_providers_cheat(autojump_clock: trio.testing.MockClock) -> None:
    async with net_of(FaultPlan(rates={FaultKind.INFLATE: 1.0})) as net, client(net) as yagna:
        agreement_id, _ = await bill(net, yagna, [], minutes=5)
        notes = ledger(net)["debitNotes"]
        assert len(notes) == 2
        assert {(n["agreementId"], n["honest"]) for n in notes} == {(agreement_id, False)}
        (invoice,) = ledger(net)["invoices"]
        assert invoice["honest"] is True  # only its notes were inflated
