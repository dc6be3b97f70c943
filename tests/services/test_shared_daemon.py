"""Two applications on one daemon: two engines on one LocalNet (served on loopback, wall
clock, scripted runtime), one after the other and at the same time. Each engine confirms its
agreements under its own application session and reads only that session's documents, from
its own start: it pays exactly its own invoices and never accepts nor rejects the other's
(docs/architecture.md §5.6)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from golem_trio import Golem, Service, vm
from golem_trio.events import DebitNoteRefused, InvoiceRejected
from golem_trio.localnet import (
    LocalNet,
    ProviderSpec,
    Reply,
    ledger,
    open_localnet,
    scripted_runtime_factory,
)
from golem_trio.testing import assert_invariants, check_invariants

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
DEADLINE = 90.0
INSTANCES = 2


class Echo(Service):
    cycles = 2

    @staticmethod
    async def get_payload() -> vm.VmPayload:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        for i in range(self.cycles):
            await trio.sleep(1)
            script = self._ctx.new_script()
            script.run("/bin/echo", f"hi {i}")
            await script


@asynccontextmanager
async def served_net(providers: int) -> AsyncIterator[LocalNet]:
    specs = [ProviderSpec(name=f"p{i}", debit_note_interval=1, tick=0.25) for i in range(providers)]
    runtime = scripted_runtime_factory({"/bin/echo": lambda a: Reply(stdout=" ".join(a) + "\n")})
    async with open_localnet(specs, runtime=runtime, serve=True) as net:
        assert net.url is not None
        yield net


async def run_engine(net: LocalNet, events: list[object]) -> Golem:
    """One engine on ``net``: ``INSTANCES`` instances run, stop on their own and are paid."""
    golem = Golem(budget=1.0, localnet=net, handle_signals=False, event_consumer=events.append)
    async with golem:
        expiration = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
        cluster = await golem.run_service(Echo, num_instances=INSTANCES, expiration=expiration)
        await cluster.wait_running()
        await cluster.wait_finished()
    return golem


def rejected_nothing(events: list[object]) -> None:
    """The engine rejected no invoice: it saw only its own, valid ones (another application's
    would have been rejected as unsolicited)."""
    assert [e for e in events if isinstance(e, InvoiceRejected)] == []


def refused_no_other_note(events: list[object], mine: set[str]) -> None:
    """Nor did it refuse a debit note of an agreement it did not make."""
    refused = [e for e in events if isinstance(e, DebitNoteRefused)]
    assert [e for e in refused if e.agreement_id not in mine] == []


def pays_its_own(book: dict[str, Any], golem: Golem) -> set[str]:
    """``golem`` accepted, from its allocation, exactly the invoices of the agreements it
    confirmed under its session, and named its allocation on no other document; its
    agreements."""
    report = golem.payment_report
    assert report is not None
    assert report.app_session_id == golem.app_session_id
    mine = {a["id"] for a in book["agreements"] if a["appSessionId"] == golem.app_session_id}
    assert len(mine) == INSTANCES, book["agreements"]
    assert set(report.invoices_accepted) == mine
    assert report.invoices_rejected == 0
    assert report.debit_notes_refused == 0
    assert report.unpaid == ()
    assert report.documents_ignored == 0
    allocation = report.allocation_id
    for invoice in book["invoices"]:
        assert invoice["rejectRequests"] == 0, invoice
        if invoice["agreementId"] in mine:
            assert invoice["acceptRequests"] == [allocation], invoice
            assert invoice["status"] == "SETTLED", invoice
        else:
            assert allocation not in invoice["acceptRequests"], invoice
    for note in book["debitNotes"]:
        assert note["rejectRequests"] == 0, note
        if note["agreementId"] in mine:
            assert set(note["acceptRequests"]) <= {allocation}, note
        else:
            assert allocation not in note["acceptRequests"], note
    return mine


async def test_two_engines_in_a_row_each_pay_only_their_own_invoices() -> None:
    with trio.fail_after(DEADLINE):
        async with served_net(providers=INSTANCES) as net:
            first_events: list[object] = []
            first = await run_engine(net, first_events)
            second_events: list[object] = []
            second = await run_engine(net, second_events)
            book = ledger(net)
    # The second engine starts after the first one's invoices were accepted: they are not
    # its own, so it leaves them alone instead of rejecting them as unsolicited.
    rejected_nothing(second_events)
    rejected_nothing(first_events)
    assert first.app_session_id != second.app_session_id
    theirs = pays_its_own(book, first)
    ours = pays_its_own(book, second)
    refused_no_other_note(first_events, theirs)
    refused_no_other_note(second_events, ours)
    assert theirs.isdisjoint(ours)
    assert {a["id"] for a in book["agreements"]} == theirs | ours
    assert len(book["invoices"]) == 2 * INSTANCES
    assert check_invariants(book) == []


async def test_two_engines_at_the_same_time_each_pay_only_their_own_invoices() -> None:
    with trio.fail_after(DEADLINE):
        async with served_net(providers=2 * INSTANCES) as net:
            events: tuple[list[object], list[object]] = ([], [])
            golems: dict[int, Golem] = {}

            async def one(index: int) -> None:
                golems[index] = await run_engine(net, events[index])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, 0)
                nursery.start_soon(one, 1)
            book = ledger(net)
            assert_invariants(net)
    # Each engine saw the other's debit notes and invoices come while it ran, on the same
    # identity: they were never reported to it, so it never refused nor rejected them.
    rejected_nothing(events[0])
    rejected_nothing(events[1])
    a, b = golems[0], golems[1]
    assert a.app_session_id != b.app_session_id
    mine_a, mine_b = pays_its_own(book, a), pays_its_own(book, b)
    assert mine_a.isdisjoint(mine_b)
    refused_no_other_note(events[0], mine_a)
    refused_no_other_note(events[1], mine_b)
    assert len(book["agreements"]) == 2 * INSTANCES
    assert len(book["invoices"]) == 2 * INSTANCES
