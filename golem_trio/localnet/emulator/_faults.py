"""Faults: what goes wrong on a LocalNet, on purpose.

A :class:`FaultPlan` says which faults happen: at given rates (drawn deterministically under
its ``seed``), at given times after start (:class:`ScheduledFault`) and on the daemon's
answers (:class:`DaemonFault`). :class:`Faults`, the running handle (``LocalNet.faults``),
applies the plan and also triggers every fault by hand, from Python or over HTTP
(``POST /localnet/faults/{kind}``; ``GET /localnet/faults`` lists what fired).

Every fault has one name, a :class:`FaultKind`:

* ``terminate-agreement``: the provider terminates an approved agreement
  (``golem.provider.code`` ``Interrupted`` unless told otherwise).
* ``kill-activity``: the activity dies (state ``Terminated`` with a reason).
* ``fail-command``: a command ends with an ``Error`` result without running.
* ``reject-proposals`` / ``never-approve``: a provider rejects proposals whatever their terms,
  or never approves the agreements it is sent.
* ``daemon-5xx``, ``daemon-408``, ``daemon-stall``, ``daemon-latency``: the daemon answers a
  chosen operation (a route's operationId, ``*`` for any) with a 5xx (``value``: the status,
  default 500) or a 408, or holds the request ``value`` seconds (stall: forever by default)
  or delays it ``value`` seconds (latency: 1 s by default) before serving it.
* dishonest billing: ``inflate`` (debit notes above the agreed price), ``too-fast`` (notes
  four times as often as agreed), ``payable-without-agreement`` (payable notes where no
  mid-agreement payments were agreed), ``second-invoice``, ``unknown-agreement`` (a note for
  an agreement the requestor never made), ``invoice-above-usage``. Such documents are
  ``honest: false`` in the ledger.
* ``huge-output`` / ``malformed-output``: a ``run`` command's stdout is replaced by a huge one
  or by bytes that are not UTF-8 text.

Rates are probabilities: per agreement (``terminate-agreement`` at a time drawn within
``window`` seconds of approval, ``never-approve``, each dishonest kind), per activity
(``kill-activity``, within ``window`` seconds), per proposal (``reject-proposals``), per
command (``fail-command``; ``huge-output`` and ``malformed-output`` per ``run``) and per
request (daemon faults). Each draw comes from its own generator, seeded by the plan's seed,
the fault kind, what it is drawn for (a provider name, an agreement, activity or operation
id) and how many were drawn for it before, so the same plan gives the same faults whatever
order concurrent tasks run in.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._activity import InjectedFault
from ._http import control_key_refusal, json_response

if TYPE_CHECKING:
    from ..providers import ProviderAgent
    from ._activity import ActivityState
    from ._core import Daemon, NodeIdentity
    from ._market import MarketState

__all__ = [
    "FAULTS_PATH",
    "PLANS",
    "DaemonFault",
    "DaemonFaultMiddleware",
    "FaultError",
    "FaultKind",
    "FaultPlan",
    "Faults",
    "FiredFault",
    "ScheduledFault",
    "fault_routes",
    "load_plan",
]

Json = dict[str, Any]

#: Where the faults control API is served.
FAULTS_PATH = "/localnet/faults"


class FaultKind(enum.StrEnum):
    TERMINATE_AGREEMENT = "terminate-agreement"
    KILL_ACTIVITY = "kill-activity"
    FAIL_COMMAND = "fail-command"
    REJECT_PROPOSALS = "reject-proposals"
    NEVER_APPROVE = "never-approve"
    DAEMON_5XX = "daemon-5xx"
    DAEMON_408 = "daemon-408"
    DAEMON_STALL = "daemon-stall"
    DAEMON_LATENCY = "daemon-latency"
    INFLATE = "inflate"
    TOO_FAST = "too-fast"
    PAYABLE_WITHOUT_AGREEMENT = "payable-without-agreement"
    SECOND_INVOICE = "second-invoice"
    UNKNOWN_AGREEMENT = "unknown-agreement"
    INVOICE_ABOVE_USAGE = "invoice-above-usage"
    HUGE_OUTPUT = "huge-output"
    MALFORMED_OUTPUT = "malformed-output"


DAEMON_KINDS = frozenset(
    {
        FaultKind.DAEMON_5XX,
        FaultKind.DAEMON_408,
        FaultKind.DAEMON_STALL,
        FaultKind.DAEMON_LATENCY,
    }
)
DISHONEST_KINDS = frozenset(
    {
        FaultKind.INFLATE,
        FaultKind.TOO_FAST,
        FaultKind.PAYABLE_WITHOUT_AGREEMENT,
        FaultKind.SECOND_INVOICE,
        FaultKind.UNKNOWN_AGREEMENT,
        FaultKind.INVOICE_ABOVE_USAGE,
    }
)
OUTPUT_KINDS = frozenset({FaultKind.HUGE_OUTPUT, FaultKind.MALFORMED_OUTPUT})
COMMAND_KINDS = OUTPUT_KINDS | {FaultKind.FAIL_COMMAND}
LIFETIME_KINDS = (FaultKind.TERMINATE_AGREEMENT, FaultKind.KILL_ACTIVITY)

#: What a malformed output is: invalid UTF-8, NULs, escape sequences, broken JSON.
MALFORMED_OUTPUT = (
    b'{"result": \xff\xfe\x00\x1b[31m\xc3\x28 [[[\x80\x81 "unterminated\n\xed\xa0\x80'
)


def _rates(value: Mapping[Any, float]) -> dict[FaultKind, float]:
    rates = {FaultKind(kind): float(rate) for kind, rate in value.items()}
    for kind, rate in rates.items():
        if kind in DAEMON_KINDS:
            raise ValueError(f"{kind}: daemon faults are given as DaemonFault entries")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{kind}: rate {rate} is not a probability")
    return rates


def _params(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


@attrs.frozen
class ScheduledFault:
    """Fire ``kind`` ``at`` seconds (trio time) after the LocalNet started, on ``target``: a
    provider name, an agreement or activity id, or ``"any"``. ``params`` are the parameters
    the HTTP endpoint takes (``code``, ``count``, ``size``, ``value``, ``on``...)."""

    at: float
    kind: FaultKind = attrs.field(converter=FaultKind)
    target: str = "any"
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=_params, hash=False)

    def to_json(self) -> Json:
        return {"at": self.at, "kind": self.kind.value, "target": self.target, **self._params()}

    def _params(self) -> Json:
        return {"params": dict(self.params)} if self.params else {}


@attrs.frozen
class DaemonFault:
    """Answer requests for ``operation`` (an operationId, ``*`` for any) with fault ``kind``
    (one of the ``daemon-*`` kinds) with probability ``rate``; ``value`` as for the kind."""

    operation: str
    kind: FaultKind = attrs.field(converter=FaultKind)
    rate: float = 1.0
    value: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in DAEMON_KINDS:
            raise ValueError(f"{self.kind} is not a daemon fault")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"{self.kind}: rate {self.rate} is not a probability")

    def to_json(self) -> Json:
        return {
            "operation": self.operation,
            "kind": self.kind.value,
            "rate": self.rate,
            "value": self.value,
        }


def _scheduled(value: Iterable[ScheduledFault]) -> tuple[ScheduledFault, ...]:
    return tuple(value)


def _daemon(value: Iterable[DaemonFault]) -> tuple[DaemonFault, ...]:
    return tuple(value)


@attrs.frozen
class FaultPlan:
    """Which faults happen on a LocalNet, deterministically under ``seed``.

    ``rates``: probability per fault kind (see the module doc for what each is per);
    ``scheduled``: faults fired at given times; ``daemon``: faults on the daemon's answers;
    ``window``: seconds after approval (or creation) within which a rate-drawn termination
    (or activity death) comes; ``inflation``: the factor of inflated amounts;
    ``huge_output_bytes``: the size of a huge output; ``tick``: how often (s) the scheduler
    looks.
    """

    seed: int = 0
    rates: Mapping[FaultKind, float] = attrs.field(factory=dict, converter=_rates, hash=False)
    scheduled: tuple[ScheduledFault, ...] = attrs.field(default=(), converter=_scheduled)
    daemon: tuple[DaemonFault, ...] = attrs.field(default=(), converter=_daemon)
    window: float = 600.0
    inflation: Decimal = attrs.field(default=Decimal("1.5"), converter=Decimal)
    huge_output_bytes: int = 4 * 1024 * 1024
    tick: float = 1.0

    def rate(self, kind: FaultKind) -> float:
        return self.rates.get(kind, 0.0)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultPlan:
        """A plan from its JSON form (what :meth:`to_json` writes; every key optional)."""
        known = {
            "seed",
            "rates",
            "scheduled",
            "daemon",
            "window",
            "inflation",
            "huge_output_bytes",
            "tick",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault plan keys: {', '.join(sorted(unknown))}")
        kwargs: Json = {key: data[key] for key in known if key in data and key != "inflation"}
        if "inflation" in data:
            kwargs["inflation"] = Decimal(str(data["inflation"]))
        kwargs["scheduled"] = tuple(
            ScheduledFault(
                float(entry["at"]),
                entry["kind"],
                str(entry.get("target", "any")),
                dict(entry.get("params") or {}),
            )
            for entry in data.get("scheduled") or ()
        )
        kwargs["daemon"] = tuple(
            DaemonFault(
                str(entry.get("operation", "*")),
                entry["kind"],
                float(entry.get("rate", 1.0)),
                None if entry.get("value") is None else float(entry["value"]),
            )
            for entry in data.get("daemon") or ()
        )
        return cls(**kwargs)

    def to_json(self) -> Json:
        return {
            "seed": self.seed,
            "rates": {kind.value: rate for kind, rate in self.rates.items()},
            "scheduled": [entry.to_json() for entry in self.scheduled],
            "daemon": [entry.to_json() for entry in self.daemon],
            "window": self.window,
            "inflation": str(self.inflation),
            "huge_output_bytes": self.huge_output_bytes,
            "tick": self.tick,
        }


#: Named plans, for ``golem-trio localnet --faults NAME``.
PLANS: dict[str, FaultPlan] = {
    "none": FaultPlan(),
    "flaky-providers": FaultPlan(
        seed=1,
        rates={
            FaultKind.TERMINATE_AGREEMENT: 0.2,
            FaultKind.KILL_ACTIVITY: 0.1,
            FaultKind.FAIL_COMMAND: 0.05,
            FaultKind.REJECT_PROPOSALS: 0.1,
            FaultKind.NEVER_APPROVE: 0.05,
        },
    ),
    "flaky-daemon": FaultPlan(
        seed=2,
        daemon=(
            DaemonFault("*", FaultKind.DAEMON_5XX, 0.05, 503),
            DaemonFault("*", FaultKind.DAEMON_LATENCY, 0.2, 0.5),
            DaemonFault("*", FaultKind.DAEMON_408, 0.02),
            DaemonFault("*", FaultKind.DAEMON_STALL, 0.005, 60),
        ),
    ),
    "dishonest": FaultPlan(seed=3, rates=dict.fromkeys(DISHONEST_KINDS, 0.2)),
    "chaos": FaultPlan(
        seed=4,
        rates={
            FaultKind.TERMINATE_AGREEMENT: 0.2,
            FaultKind.KILL_ACTIVITY: 0.1,
            FaultKind.FAIL_COMMAND: 0.05,
            FaultKind.REJECT_PROPOSALS: 0.1,
            FaultKind.NEVER_APPROVE: 0.05,
            FaultKind.HUGE_OUTPUT: 0.02,
            FaultKind.MALFORMED_OUTPUT: 0.02,
            **dict.fromkeys(DISHONEST_KINDS, 0.1),
        },
        daemon=(
            DaemonFault("*", FaultKind.DAEMON_5XX, 0.05, 503),
            DaemonFault("*", FaultKind.DAEMON_LATENCY, 0.2, 0.5),
            DaemonFault("*", FaultKind.DAEMON_408, 0.02),
        ),
    ),
}


def load_plan(name_or_path: str) -> FaultPlan:
    """A named plan from :data:`PLANS`, or the plan in a JSON file."""
    plan = PLANS.get(name_or_path)
    if plan is not None:
        return plan
    path = Path(name_or_path)
    if not path.is_file():
        names = ", ".join(sorted(PLANS))
        raise ValueError(f"no fault plan named {name_or_path!r} (known: {names}) and no such file")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a fault plan is a JSON object")
    return FaultPlan.from_json(data)


@attrs.frozen
class FiredFault:
    """A fault that took effect: when (trio seconds after start), which, on what."""

    at: float
    kind: FaultKind
    target: str
    detail: str = ""

    def to_json(self) -> Json:
        return {
            "at": self.at,
            "kind": self.kind.value,
            "target": self.target,
            "detail": self.detail,
        }


class FaultError(Exception):
    """A fault cannot be triggered (no such kind, nothing to target, bad parameters)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.define
class _Pending:
    """Faults triggered by hand and waiting for their occasion."""

    kind: FaultKind
    target: str | None
    count: float
    value: float | None = None


class Faults:
    """The faults of a running LocalNet: applies a :class:`FaultPlan` and triggers faults by
    hand. Must be created inside ``trio.run``; :meth:`attach` connects it to the network."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.started = trio.current_time()
        #: Every fault that took effect, in order.
        self.fired: list[FiredFault] = []
        self._draws: dict[tuple[FaultKind, str], int] = {}
        self._market: MarketState | None = None
        self._activity: ActivityState | None = None
        self._providers: dict[str, str] = {}  # node id -> name
        self._agents: list[ProviderAgent] = []
        self._rejecting: set[str] = set()
        self._withholding: set[str] = set()
        self._cheats: dict[str, set[str]] = {}  # provider -> dishonest kinds switched on
        self._drawn_cheats: dict[str, frozenset[str]] = {}  # agreement -> drawn kinds
        self._reported_cheats: set[tuple[str, str]] = set()
        self._terminations: dict[str, str] = {}  # agreement -> code
        self._pending: list[_Pending] = []
        self._timers: list[tuple[float, int, FaultKind, str]] = []  # rate-drawn, by due time
        self._drawn_for: set[str] = set()

    def __repr__(self) -> str:
        return f"<Faults seed={self.plan.seed} fired={len(self.fired)}>"

    # --- wiring ----------------------------------------------------------------------------------

    def attach(
        self,
        market: MarketState,
        activity: ActivityState,
        providers: list[tuple[NodeIdentity, ProviderAgent]],
    ) -> None:
        self._market = market
        self._activity = activity
        self._providers = {identity.node_id: agent.spec.name for identity, agent in providers}
        self._agents = [agent for _identity, agent in providers]

    def needs_scheduler(self) -> bool:
        """Whether :meth:`run` has anything to do."""
        return bool(self.plan.scheduled) or self._rated()

    def _rated(self) -> bool:
        """Whether the plan draws terminations or activity deaths."""
        return any(self.plan.rate(kind) > 0 for kind in LIFETIME_KINDS)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fire the scheduled faults and the rate-drawn terminations and activity deaths."""
        await trio.lowlevel.checkpoint()
        task_status.started()
        scheduled = sorted(self.plan.scheduled, key=lambda entry: entry.at)
        rated = self._rated()
        while scheduled or rated:
            now = self._now()
            while scheduled and scheduled[0].at <= now:
                entry = scheduled.pop(0)
                try:
                    self.trigger(entry.kind, {"target": entry.target, **entry.params})
                except FaultError as exc:
                    self._fire(entry.kind, entry.target, f"nothing to do: {exc.message}")
            if rated:
                self._draw_lifetimes(now)
                self._fire_timers(now)
            wait = self.plan.tick if rated else scheduled[0].at - now if scheduled else 0.0
            await trio.sleep(max(wait, 0.0))

    # --- draws -----------------------------------------------------------------------------------

    def _now(self) -> float:
        return trio.current_time() - self.started

    def _draw(self, kind: FaultKind, key: str) -> float:
        """A uniform draw in [0, 1) for ``kind`` on ``key``: the same plan gives the same n-th
        draw for the same key, whatever order tasks run in."""
        count = self._draws.get((kind, key), 0)
        self._draws[(kind, key)] = count + 1
        return random.Random(f"{self.plan.seed}/{kind.value}/{key}/{count}").random()

    def _happens(self, kind: FaultKind, key: str) -> bool:
        rate = self.plan.rate(kind)
        return rate > 0 and self._draw(kind, key) < rate

    def _fire(self, kind: FaultKind, target: str, detail: str = "") -> FiredFault:
        fired = FiredFault(round(self._now(), 6), kind, target, detail)
        self.fired.append(fired)
        return fired

    def _draw_lifetimes(self, now: float) -> None:
        for agent in self._agents:
            for agreement_id in list(agent.lives):
                if agreement_id in self._drawn_for:
                    continue
                self._drawn_for.add(agreement_id)
                kind = FaultKind.TERMINATE_AGREEMENT
                if self._happens(kind, agreement_id):
                    delay = self._draw(kind, agreement_id) * self.plan.window
                    self._timers.append((now + delay, len(self._timers), kind, agreement_id))
        if self._activity is not None:
            for activity in list(self._activity.activities.values()):
                if activity.activity_id in self._drawn_for:
                    continue
                self._drawn_for.add(activity.activity_id)
                kind = FaultKind.KILL_ACTIVITY
                if self._happens(kind, activity.activity_id):
                    delay = self._draw(kind, activity.activity_id) * self.plan.window
                    self._timers.append(
                        (now + delay, len(self._timers), kind, activity.activity_id)
                    )
        self._timers.sort()

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _due, _n, kind, target = self._timers.pop(0)
            with contextlib.suppress(FaultError):  # it may have ended already
                self.trigger(kind, {"target": target})

    # --- triggering by hand ----------------------------------------------------------------------

    def trigger(self, kind: FaultKind | str, params: Mapping[str, Any] | None = None) -> Json:
        """Trigger fault ``kind`` with ``params`` (the HTTP endpoint's body): ``target`` (a
        provider name, agreement or activity id; ``"any"`` or absent for any), and as the kind
        needs ``code``, ``reason``, ``count``, ``size``, ``operation``, ``value``, ``on``.
        What was done, as JSON; :class:`FaultError` when it cannot be done."""
        try:
            kind = FaultKind(kind)
        except ValueError:
            raise FaultError(404, f"no fault kind {kind!r}") from None
        params = dict(params or {})
        target = params.pop("target", None)
        if target is not None and not isinstance(target, str):
            raise FaultError(400, "target: a string")
        target = None if target in (None, "", "any") else target
        try:
            return self._trigger(kind, target, params)
        except (TypeError, ValueError) as exc:
            raise FaultError(400, f"{kind}: bad parameters: {exc}") from None

    def _trigger(self, kind: FaultKind, target: str | None, params: Json) -> Json:
        if kind is FaultKind.TERMINATE_AGREEMENT:
            agreement_id = self.terminate_agreement(
                target, code=str(params.get("code", "Interrupted"))
            )
            return {"kind": kind.value, "agreementId": agreement_id}
        if kind is FaultKind.KILL_ACTIVITY:
            activity_id = self.kill_activity(
                target, reason=str(params.get("reason", "exe-unit died"))
            )
            return {"kind": kind.value, "activityId": activity_id}
        if kind in COMMAND_KINDS:
            count = int(params.get("count", 1))
            size = params.get("size")
            self._command(kind, target, count, None if size is None else int(size))
            return {"kind": kind.value, "target": target or "any", "count": count}
        if kind in DAEMON_KINDS:
            value = params.get("value")
            operation = str(params.get("operation", target or "*"))
            count = int(params.get("count", 1))
            self.daemon_fault(operation, kind, None if value is None else float(value), count)
            return {"kind": kind.value, "operation": operation, "count": count}
        on = bool(params.get("on", True))
        provider = self._provider_name(target)
        if kind is FaultKind.REJECT_PROPOSALS:
            self.reject_proposals(provider, on=on)
        elif kind is FaultKind.NEVER_APPROVE:
            self.never_approve(provider, on=on)
        else:
            self.dishonest(provider, kind, on=on)
        return {"kind": kind.value, "provider": provider, "on": on}

    def _provider_name(self, target: str | None) -> str:
        if target is None:
            raise FaultError(400, "which provider? (target: a provider name)")
        if target in self._providers:
            return self._providers[target]
        if target not in self._providers.values():
            raise FaultError(404, f"no provider {target!r}")
        return target

    def _matches(self, target: str | None, provider_id: str, *ids: str) -> bool:
        return target is None or target in ids or target in (provider_id, self._name(provider_id))

    def _name(self, provider_id: str) -> str:
        return self._providers.get(provider_id, provider_id)

    def terminate_agreement(self, target: str | None = None, *, code: str = "Interrupted") -> str:
        """Make a provider terminate an approved agreement (``target``: its id, or a provider
        name: its first live one; ``None``: any) on its next tick, with ``golem.provider.code``
        ``code``. The agreement's id."""
        for agent in self._agents:
            for agreement_id in agent.lives:
                if agreement_id in self._terminations or not self._approved(agreement_id):
                    continue
                if self._matches(target, agent.node_id, agreement_id):
                    self._terminations[agreement_id] = code
                    agent.lives[agreement_id].wake()
                    return agreement_id
        raise FaultError(404, f"no live agreement for {target or 'any'}")

    def _approved(self, agreement_id: str) -> bool:
        agreement = None if self._market is None else self._market.agreements.get(agreement_id)
        return agreement is not None and agreement.state.value == "Approved"

    def kill_activity(self, target: str | None = None, *, reason: str = "exe-unit died") -> str:
        """Kill a live activity (``target``: its id, its agreement's id or a provider name;
        ``None``: any): it becomes ``Terminated`` with ``reason``. The activity's id."""
        assert self._activity is not None, "not attached"
        for activity in self._activity.activities.values():
            if activity.state.value == "Terminated":
                continue
            if self._matches(
                target, activity.provider_id, activity.activity_id, activity.agreement_id
            ):
                self._activity.kill(activity.activity_id, reason, f"{reason} (LocalNet fault)")
                self._fire(FaultKind.KILL_ACTIVITY, activity.activity_id, reason)
                return activity.activity_id
        raise FaultError(404, f"no live activity for {target or 'any'}")

    def fail_next_command(self, target: str | None = None, *, count: int = 1) -> None:
        """Fail the next ``count`` commands (``target``: an activity or agreement id, or a
        provider name; ``None``: any) with an ``Error`` result."""
        self._command(FaultKind.FAIL_COMMAND, target, count, None)

    def huge_output(
        self, target: str | None = None, *, count: int = 1, size: int | None = None
    ) -> None:
        """Make the next ``count`` ``run`` commands write ``size`` bytes (default: the plan's
        ``huge_output_bytes``) to stdout."""
        self._command(FaultKind.HUGE_OUTPUT, target, count, size)

    def malformed_output(self, target: str | None = None, *, count: int = 1) -> None:
        """Make the next ``count`` ``run`` commands write bytes that are not text to stdout."""
        self._command(FaultKind.MALFORMED_OUTPUT, target, count, None)

    def _command(self, kind: FaultKind, target: str | None, count: int, size: int | None) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._pending.append(_Pending(kind, target, count, None if size is None else float(size)))

    def reject_proposals(self, provider: str, *, on: bool = True) -> None:
        """Make ``provider`` (a name) reject every proposal, or stop."""
        self._switch(self._rejecting, self._provider_name(provider), on)

    def never_approve(self, provider: str, *, on: bool = True) -> None:
        """Make ``provider`` (a name) never approve an agreement, or stop."""
        self._switch(self._withholding, self._provider_name(provider), on)

    def dishonest(self, provider: str, kind: FaultKind | str, *, on: bool = True) -> None:
        """Make ``provider`` (a name) cheat on billing in way ``kind`` (a dishonest kind), on
        every agreement it bills from now on, or stop."""
        kind = FaultKind(kind)
        if kind not in DISHONEST_KINDS:
            raise ValueError(f"{kind} is not a dishonest billing kind")
        name = self._provider_name(provider)
        kinds = self._cheats.setdefault(name, set())
        if on:
            kinds.add(kind.value)
        else:
            kinds.discard(kind.value)

    def daemon_fault(
        self,
        operation: str = "*",
        kind: FaultKind | str = FaultKind.DAEMON_5XX,
        value: float | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` requests for ``operation`` (an operationId, ``*`` for
        any) with daemon fault ``kind`` (``value``: the status of a 5xx, the seconds of a
        stall or latency)."""
        kind = FaultKind(kind)
        if kind not in DAEMON_KINDS:
            raise ValueError(f"{kind} is not a daemon fault")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind is FaultKind.DAEMON_5XX and value is not None and not 500 <= value <= 599:
            raise ValueError(f"{value:g} is not a 5xx status")
        self._pending.append(_Pending(kind, operation, count, value))

    @staticmethod
    def _switch(names: set[str], name: str, on: bool) -> None:
        if on:
            names.add(name)
        else:
            names.discard(name)

    def _take(
        self, kinds: frozenset[FaultKind], match: Callable[[_Pending], bool]
    ) -> _Pending | None:
        for pending in self._pending:
            if pending.kind in kinds and match(pending):
                pending.count -= 1
                if pending.count <= 0:
                    self._pending.remove(pending)
                return pending
        return None

    # --- hooks: the provider model ---------------------------------------------------------------

    def reject_proposal(self, provider: str) -> bool:
        if provider in self._rejecting or self._happens(FaultKind.REJECT_PROPOSALS, provider):
            self._fire(FaultKind.REJECT_PROPOSALS, provider)
            return True
        return False

    def withhold_approval(self, provider: str, agreement_id: str) -> bool:
        if provider in self._withholding or self._happens(FaultKind.NEVER_APPROVE, agreement_id):
            self._fire(FaultKind.NEVER_APPROVE, agreement_id, provider)
            return True
        return False

    def dishonesty(self, provider: str, agreement_id: str) -> frozenset[str]:
        drawn = self._drawn_cheats.get(agreement_id)
        if drawn is None:
            drawn = frozenset(
                kind.value for kind in sorted(DISHONEST_KINDS) if self._happens(kind, agreement_id)
            )
            self._drawn_cheats[agreement_id] = drawn
        kinds = drawn | self._cheats.get(provider, set())
        for kind in sorted(kinds):
            if (agreement_id, kind) not in self._reported_cheats:
                self._reported_cheats.add((agreement_id, kind))
                self._fire(FaultKind(kind), agreement_id, provider)
        return frozenset(kinds)

    def inflation(self) -> Decimal:
        return self.plan.inflation

    def termination(self, agreement_id: str) -> str | None:
        code = self._terminations.pop(agreement_id, None)
        if code is not None:
            self._fire(FaultKind.TERMINATE_AGREEMENT, agreement_id, code)
        return code

    # --- hooks: the activity API -----------------------------------------------------------------

    def command_fault(
        self, provider_id: str, activity_id: str, command: str
    ) -> InjectedFault | None:
        assert self._activity is not None, "not attached"
        agreement_id = self._activity.agreement_of(activity_id)
        kinds = COMMAND_KINDS if command == "run" else frozenset({FaultKind.FAIL_COMMAND})
        pending = self._take(
            kinds, lambda p: self._matches(p.target, provider_id, activity_id, agreement_id)
        )
        kind: FaultKind | None = None if pending is None else pending.kind
        size = None if pending is None or pending.value is None else int(pending.value)
        if kind is None:
            for candidate in sorted(kinds):
                if self._happens(candidate, activity_id):
                    kind = candidate
                    break
        if kind is None:
            return None
        self._fire(kind, activity_id, command)
        if kind is FaultKind.FAIL_COMMAND:
            return InjectedFault(failure=f"{command} failed: the exe-unit reported an error")
        if kind is FaultKind.HUGE_OUTPUT:
            size = self.plan.huge_output_bytes if size is None else size
            line = b"x" * 1023 + b"\n"
            return InjectedFault(stdout=(line * (size // len(line) + 1))[:size])
        return InjectedFault(stdout=MALFORMED_OUTPUT)

    # --- hooks: the daemon -----------------------------------------------------------------------

    def may_act_on_daemon(self) -> bool:
        """Whether any daemon fault is planned or waiting: if not, requests need no look."""
        return bool(self.plan.daemon) or any(p.kind in DAEMON_KINDS for p in self._pending)

    def daemon_action(self, operation: str) -> tuple[FaultKind, float | None] | None:
        """The fault to apply to this request for ``operation``, if any."""
        pending = self._take(DAEMON_KINDS, lambda p: p.target in ("*", operation))
        if pending is not None:
            self._fire(pending.kind, operation)
            return pending.kind, pending.value
        for entry in self.plan.daemon:
            if (
                entry.operation in ("*", operation)
                and entry.rate > 0
                and self._draw(entry.kind, f"{entry.operation}/{operation}") < entry.rate
            ):
                self._fire(entry.kind, operation)
                return entry.kind, entry.value
        return None

    def json(self) -> Json:
        """The plan and what fired, JSON-able."""
        return {"plan": self.plan.to_json(), "fired": [fired.to_json() for fired in self.fired]}


# --- the daemon's side ---------------------------------------------------------------------------


def _operation(scope: Scope) -> str | None:
    """The operationId (route name) a request goes to."""
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        match, _child = route.matches(scope)
        if match is Match.FULL:
            name = getattr(route, "name", None)
            return name if isinstance(name, str) else None
    return None


class DaemonFaultMiddleware:
    """Applies daemon faults to requests, by operationId, on trio's clock. LocalNet's own
    control API (``localnet…`` operations) is left alone."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Finding the operation means matching the routes once more: skipped when no daemon
        # fault can apply (the common case, and every request pays for it).
        if scope["type"] != "http" or not self.faults.may_act_on_daemon():
            await self.app(scope, receive, send)
            return
        operation = _operation(scope)
        action = None
        if operation is not None and not operation.startswith("localnet"):
            action = self.faults.daemon_action(operation)
        if action is None:
            await self.app(scope, receive, send)
            return
        kind, value = action
        if kind is FaultKind.DAEMON_5XX:
            status = 500 if value is None else int(value)
            message = "Internal Server Error" if status == 500 else "Service Unavailable"
            await json_response({"message": message}, status)(scope, receive, send)
        elif kind is FaultKind.DAEMON_408:
            await json_response({"message": "Timeout"}, 408)(scope, receive, send)
        else:
            default = math.inf if kind is FaultKind.DAEMON_STALL else 1.0
            await trio.sleep(default if value is None else value)
            await self.app(scope, receive, send)


def _from_loopback(request: Request) -> bool:
    client = request.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        # Not an address: an in-process client or a socket path.
        return client.host in ("", "localhost", "testclient")


def fault_routes(faults: Faults, daemon: Daemon) -> list[Route]:
    """``GET /localnet/faults`` (``localnetFaults``): the plan and the faults that fired;
    ``POST /localnet/faults/{kind}`` (``localnetTriggerFault``): trigger one, with its
    parameters as a JSON object body. LocalNet's own control API: for loopback clients only
    (403 otherwise) that send an app key of ``daemon``'s network (the daemon's plain-text 401
    otherwise)."""

    async def list_faults(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        if not _from_loopback(request):
            return json_response({"message": "LocalNet faults answer loopback only"}, 403)
        refusal = control_key_refusal(daemon, request)
        if refusal is not None:
            return refusal
        return json_response(faults.json())

    async def trigger_fault(request: Request) -> Response:
        raw = await request.body()
        if not _from_loopback(request):
            return json_response({"message": "LocalNet faults answer loopback only"}, 403)
        refusal = control_key_refusal(daemon, request)
        if refusal is not None:
            return refusal
        try:
            params = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return json_response({"message": "the body is not JSON"}, 400)
        if not isinstance(params, dict):
            return json_response({"message": "the body is a JSON object of parameters"}, 400)
        try:
            return json_response(faults.trigger(request.path_params["kind"], params))
        except FaultError as exc:
            return json_response({"message": exc.message}, exc.status)

    return [
        Route(FAULTS_PATH, list_faults, methods=["GET"], name="localnetFaults"),
        Route(
            FAULTS_PATH + "/{kind}", trigger_fault, methods=["POST"], name="localnetTriggerFault"
        ),
    ]
