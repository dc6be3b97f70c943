"""Faults on a real-daemon LocalNet, fired by hand, and its ledger.

:class:`YagnaFaults` is what the emulator's :class:`~golem_trio.localnet.emulator.Faults`
is to the embedded network, for the faults a real daemon lets us cause: a provider
terminating an agreement (its agent does, through the daemon, on its next tick), an
exe-unit dying (the activity is reported ``Terminated`` to the daemon), providers cheating on
billing, and daemon faults in front of the requestor's REST API (through a
:class:`~golem_trio.localnet.FaultProxy` the caller opens and attaches). The agents of
:func:`~._backend.open_yagna_localnet` ask it as their ``ProviderFaults``.

:func:`yagna_ledger` reads what the requestor's daemon holds about everything the providers
did, in the shape of the emulator's ledger, so that the same invariant checks apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ..emulator import DISHONEST_KINDS, DaemonFault, FaultError
from ..providers import ProviderAgent
from ._exeunit import ExeUnit
from ._node import NodeIdentity
from ._rest_port import RestProviderPort, provider_client

if TYPE_CHECKING:
    from .._proxy import FaultProxy

__all__ = ["FiredYagnaFault", "YagnaFaults", "yagna_ledger"]

Json = dict[str, Any]

#: How providers may cheat (``ProviderFaults`` in the providers wing), as the emulator names it.
_CHEATS = frozenset(kind.value for kind in DISHONEST_KINDS)


class _Host(Protocol):
    """An activity host (``_backend.ActivityHost``) as seen here."""

    provider: NodeIdentity
    units: dict[str, ExeUnit]
    seen: dict[str, str]


class _Network(Protocol):
    """A running real-daemon LocalNet (``_backend.YagnaLocalNet``) as seen here."""

    agents: list[ProviderAgent]
    ports: list[RestProviderPort]

    @property
    def hosts(self) -> Sequence[_Host]: ...

    @property
    def url(self) -> str: ...

    @property
    def app_key(self) -> str: ...


@attrs.define(eq=False)
class FiredYagnaFault:
    """A fault that was fired: when (trio time), what, on what."""

    at: float
    kind: str
    target: str


@attrs.define(eq=False)
class YagnaFaults:
    """Faults of one real-daemon LocalNet; :func:`~._backend.open_yagna_localnet` attaches
    it (``net.faults``). ``inflation``: the factor inflated amounts are multiplied by."""

    inflation_factor: Decimal = Decimal("1.5")
    #: Every fault fired, in order.
    fired: list[FiredYagnaFault] = attrs.field(factory=list)
    net: _Network | None = None
    nursery: trio.Nursery | None = None
    proxy: FaultProxy | None = None
    _cheats: dict[str, set[str]] = attrs.field(factory=dict)
    _terminations: dict[str, str] = attrs.field(factory=dict)

    # --- what the providers ask (ProviderFaults) ------------------------------------------------

    def reject_proposal(self, provider: str) -> bool:
        return False

    def withhold_approval(self, provider: str, agreement_id: str) -> bool:
        return False

    def dishonesty(self, provider: str, agreement_id: str) -> frozenset[str]:
        return frozenset(self._cheats.get(provider, ()))

    def inflation(self) -> Decimal:
        return self.inflation_factor

    def termination(self, agreement_id: str) -> str | None:
        code = self._terminations.pop(agreement_id, None)
        if code is not None:
            self._fire("terminate-agreement", agreement_id)
        return code

    # --- firing faults ---------------------------------------------------------------------------

    def provider_names(self) -> list[str]:
        """The providers' names, sorted."""
        return sorted(agent.spec.name for agent in self._net().agents)

    def terminate_agreement(self, agreement_id: str, *, code: str = "Interrupted") -> str:
        """Make the provider of ``agreement_id`` (approved, not ended) terminate it, with
        ``golem.provider.code`` ``code``, on its next tick. :class:`FaultError` (404) when no
        provider serves such an agreement."""
        if agreement_id in self._terminations:
            raise FaultError(409, f"agreement {agreement_id} is being terminated already")
        for agent in self._net().agents:
            life = agent.lives.get(agreement_id)
            if life is None or life.end_code is not None or life.invoice_id is not None:
                continue
            self._terminations[agreement_id] = code
            life.wake()
            return agreement_id
        raise FaultError(404, f"no live agreement {agreement_id}")

    def kill_activity(self, agreement_id: str, *, reason: str = "exe-unit died") -> str:
        """Kill the live exe-unit of ``agreement_id``: it stops its runtime and reports the
        activity ``Terminated`` with ``reason`` to the daemon (in the background). The
        activity's id; :class:`FaultError` (404) when none is live."""
        nursery = self.nursery
        if nursery is None:
            raise FaultError(409, "the network is not running")
        for host in self._net().hosts:
            for unit in host.units.values():
                if unit.context.agreement_id == agreement_id and not unit.stopped:
                    if unit.state.value == "Terminated":
                        continue
                    nursery.start_soon(unit.terminate, reason, f"{reason} (LocalNet fault)")
                    self._fire("kill-activity", unit.activity_id)
                    return unit.activity_id
        raise FaultError(404, f"no live activity for agreement {agreement_id}")

    def dishonest(self, provider: str, kind: str, *, on: bool = True) -> None:
        """Make ``provider`` (a name) cheat on billing in way ``kind`` on every agreement it
        bills from now on, or stop."""
        if kind not in _CHEATS:
            raise ValueError(f"{kind} is not a dishonest billing kind")
        if provider not in self.provider_names():
            raise ValueError(f"no provider named {provider!r}")
        kinds = self._cheats.setdefault(provider, set())
        if on:
            kinds.add(kind)
            self._fire(kind, provider)
        else:
            kinds.discard(kind)

    def set_daemon_faults(self, entries: Iterable[DaemonFault]) -> None:
        """Apply these daemon faults (by operationId) to the requestor's requests from now
        on, through the attached proxy."""
        entries = tuple(entries)
        if self.proxy is None:
            if entries:
                raise FaultError(409, "daemon faults need a fault proxy (attach one)")
            return
        self.proxy.daemon = entries

    def _net(self) -> _Network:
        if self.net is None:
            raise FaultError(409, "the network is not running")
        return self.net

    def _fire(self, kind: str, target: str) -> None:
        self.fired.append(FiredYagnaFault(trio.current_time(), kind, target))


# --- the ledger ----------------------------------------------------------------------------------


async def yagna_ledger(net: _Network, *, allocations: Iterable[Mapping[str, Any]] = ()) -> Json:
    """What the requestor's daemon holds about everything LocalNet's providers did, in the
    shape of the emulator's ledger (``agreements``, ``activities``, ``debitNotes``,
    ``invoices``, ``allocations``), for :func:`golem_trio.testing.check_invariants`.

    Agreements are those the providers were asked to approve, activities those their
    exe-units served, documents those they issued (``honest`` as the provider meant it; one
    the daemon would not issue is listed with status ``REFUSED``); states and statuses are the
    requestor daemon's. The daemon does not say who sent which acceptance, so documents have
    no ``acceptRequests``. ``allocations`` (``id``, ``totalAmount``, ``spentAmount``) are the
    requestor's own account of its allocations (a released allocation is gone from the
    daemon); each gets ``released`` from the daemon: true when it no longer knows it.
    """
    async with provider_client(net.url, net.app_key) as client:

        async def get(path: str) -> Any:
            reply = await client.get(path)
            return reply.json() if reply.status_code == 200 else None

        book: Json = {
            "agreements": [],
            "activities": [],
            "debitNotes": [],
            "invoices": [],
            "allocations": [],
        }
        for agent in net.agents:
            for agreement_id in sorted(agent.agreements_seen):
                agreement = await get(f"/market-api/v1/agreements/{agreement_id}")
                state = "Unknown" if agreement is None else str(agreement.get("state"))
                book["agreements"].append(
                    {"id": agreement_id, "providerId": agent.node_id, "state": state}
                )
        for host in net.hosts:
            for activity_id, agreement_id in sorted(host.seen.items()):
                state = await get(f"/activity-api/v1/activity/{activity_id}/state")
                book["activities"].append(
                    {
                        "id": activity_id,
                        "agreementId": agreement_id,
                        "providerId": host.provider.node_id,
                        "state": "Unknown" if state is None else str(state["state"][0]),
                    }
                )
        for port in net.ports:
            for document in port.documents.values():
                status = document.status
                if status != "REFUSED":
                    path = "debitNotes" if document.kind == "debit-note" else "invoices"
                    held = await get(f"/payment-api/v1/{path}/{document.document_id}")
                    status = "UNKNOWN" if held is None else str(held.get("status"))
                entry: Json = {
                    "id": document.document_id,
                    "agreementId": document.agreement_id,
                    "status": status,
                    "honest": document.honest,
                }
                if document.kind == "debit-note":
                    entry["activityId"] = document.activity_id
                    entry["totalAmountDue"] = str(document.amount)
                    book["debitNotes"].append(entry)
                else:
                    entry["amount"] = str(document.amount)
                    book["invoices"].append(entry)
        for allocation in allocations:
            reply = await client.get(f"/payment-api/v1/allocations/{allocation['id']}")
            book["allocations"].append({**allocation, "released": reply.status_code in (404, 410)})
    return book
