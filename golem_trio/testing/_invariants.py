"""The invariants every end-to-end run must leave true (docs/architecture.md §4), checked
against the LocalNet ledger: what the network saw, not what the SDK believes it did."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs
import trio

from .._errors import GolemError
from ..localnet import LocalNet, ledger

__all__ = [
    "InvariantViolation",
    "TaskSnapshot",
    "assert_invariants",
    "check_invariants",
    "snapshot_tasks",
]

_LIVE_AGREEMENT_STATES = ("Proposal", "Pending", "Approved")
_PAID_STATUSES = ("ACCEPTED", "SETTLED")


class InvariantViolation(GolemError, AssertionError):
    """One or more invariants do not hold; ``problems`` lists each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invariants violated:\n  - " + "\n  - ".join(self.problems))


def check_invariants(
    source: LocalNet | Mapping[str, Any],
    *,
    budget: Decimal | float | str | None = None,
    require_released: bool = True,
) -> list[str]:
    """What is wrong on the network, as readable lines (empty: all invariants hold).

    ``source`` is a LocalNet or its ledger (``ledger(net)`` or ``GET /localnet/ledger``).
    Checked: no agreement left live (proposed, pending or approved); no activity left alive;
    every honest invoice accepted; no dishonest debit note or invoice accepted; what the
    allocations spent within ``budget`` (when given) and equal to what was accepted (per
    agreement its accepted invoice, or, when none was, its accepted debit notes); every
    allocation released (unless ``require_released`` is false); no application touched another
    one's documents (see :func:`_touched_by_others`).
    """
    book = ledger(source) if isinstance(source, LocalNet) else source
    problems: list[str] = []
    for agreement in book["agreements"]:
        if agreement["state"] in _LIVE_AGREEMENT_STATES:
            problems.append(
                f"agreement {agreement['id']} with {agreement['providerId']} is left "
                f"{agreement['state']}"
            )
    for activity in book["activities"]:
        if activity["state"] != "Terminated":
            problems.append(f"activity {activity['id']} is left {activity['state']}")
    invoiced: dict[str, Decimal] = {}
    for invoice in book["invoices"]:
        status = str(invoice["status"])
        paid = status in _PAID_STATUSES
        if invoice.get("honest", True) and not paid:
            problems.append(
                f"honest invoice {invoice['id']} ({invoice['amount']}) of agreement "
                f"{invoice['agreementId']} is {status}, not accepted"
            )
        if not invoice.get("honest", True) and paid:
            problems.append(f"dishonest invoice {invoice['id']} was accepted ({status})")
        if paid:
            agreement_id = str(invoice["agreementId"])
            invoiced[agreement_id] = invoiced.get(agreement_id, Decimal(0)) + Decimal(
                invoice["amount"]
            )
    # Debit notes are cumulative per activity: an agreement with no accepted invoice is
    # committed to the last accepted note of each of its activities.
    noted: dict[tuple[str, str], Decimal] = {}
    for note in book["debitNotes"]:
        paid = str(note["status"]) in _PAID_STATUSES
        if not note.get("honest", True) and paid:
            problems.append(f"dishonest debit note {note['id']} was accepted")
        if paid:
            key = (str(note["agreementId"]), str(note.get("activityId")))
            noted[key] = max(noted.get(key, Decimal(0)), Decimal(note["totalAmountDue"]))
    accepted = sum(invoiced.values(), Decimal(0)) + sum(
        (amount for (agreement_id, _), amount in noted.items() if agreement_id not in invoiced),
        Decimal(0),
    )
    spent = sum((Decimal(a["spentAmount"]) for a in book["allocations"]), Decimal(0))
    if budget is not None and spent > Decimal(str(budget)):
        problems.append(f"spent {spent} over the budget {budget}")
    if spent != accepted:
        problems.append(f"allocations spent {spent} but the accepted documents total {accepted}")
    if require_released:
        for allocation in book["allocations"]:
            if not allocation["released"]:
                problems.append(f"allocation {allocation['id']} was not released")
    problems += _touched_by_others(book)
    return problems


def _touched_by_others(book: Mapping[str, Any]) -> list[str]:
    """Documents an application touched although another one made their agreement.

    An application accepts from its own allocation, and never rejects a document it accepted.
    So it is a problem when one allocation was named to accept documents of agreements
    confirmed under different application sessions, when one document was accepted from two
    allocations, and when a document that was accepted was also sent a rejection (refused or
    not). An honest invoice rejected before its application could accept it is already an
    honest invoice not accepted.
    """
    problems: list[str] = []
    sessions = {agreement["id"]: agreement.get("appSessionId") for agreement in book["agreements"]}
    #: allocation id -> application session -> one agreement of that session it paid for.
    paid_for: dict[str, dict[str | None, str]] = {}
    documents = [("debit note", note) for note in book["debitNotes"]]
    documents += [("invoice", invoice) for invoice in book["invoices"]]
    for kind, document in documents:
        allocations = list(dict.fromkeys(document.get("acceptRequests", ())))
        agreement_id = document["agreementId"]
        for allocation in allocations:
            paid_for.setdefault(allocation, {}).setdefault(sessions.get(agreement_id), agreement_id)
        if len(allocations) > 1:
            problems.append(
                f"{kind} {document['id']} was accepted from {len(allocations)} allocations "
                f"({', '.join(allocations)})"
            )
        rejections = int(document.get("rejectRequests", 0))
        if allocations and rejections:
            problems.append(
                f"{kind} {document['id']} was accepted and also sent {rejections} rejection(s)"
            )
    for allocation, by_session in paid_for.items():
        if len(by_session) > 1:
            problems.append(
                f"allocation {allocation} accepted documents of agreements of "
                f"{len(by_session)} application sessions: "
                + ", ".join(f"{agreement} ({session})" for session, agreement in by_session.items())
            )
    return problems


def assert_invariants(
    source: LocalNet | Mapping[str, Any],
    *,
    budget: Decimal | float | str | None = None,
    require_released: bool = True,
) -> None:
    """:func:`check_invariants`, raising :class:`InvariantViolation` with every problem."""
    problems = check_invariants(source, budget=budget, require_released=require_released)
    if problems:
        raise InvariantViolation(problems)


@attrs.frozen
class TaskSnapshot:
    """The tasks of the current trio run at one moment (see :func:`snapshot_tasks`)."""

    tasks: frozenset[trio.lowlevel.Task]

    def new_since(self, earlier: TaskSnapshot) -> list[trio.lowlevel.Task]:
        """Tasks alive now that were not alive at ``earlier``."""
        return [task for task in self.tasks if task not in earlier.tasks]


def snapshot_tasks() -> TaskSnapshot:
    """Every task of the current trio run, walked from the root task.

    Take one before ``async with Golem(...)`` and one after: the tasks the engine leaves
    behind are ``after.new_since(before)`` (it must be empty).
    """
    found: set[trio.lowlevel.Task] = set()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None or task in found:
            continue
        found.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return TaskSnapshot(frozenset(found))
