"""Scenarios: a service, a provider population, a budget and faults on a time axis, read from
TOML.

A scenario file (see ``examples/bench/``)::

    name = "provider-churn"
    seed = 7
    duration = 1800                 # seconds of scenario

    [service]
    kind = "idle"                   # "idle", "echo" or "package.module:Class"
    instances = 4

    [service.restart]               # golem_trio.RestartPolicy's fields
    strategy = "always"
    max_restarts = 50

    [service.health]                # golem_trio.HealthCheck's fields
    interval = 10

    [budget]
    amount = "5"

    [providers]
    count = 12
    cpu_sec = ["0.00005", "0.0002"]
    dishonest = 0                   # providers cheating on billing from the start
    cheats = ["inflate"]

    [[faults]]
    kind = "provider-termination"
    rate_per_hour = 12

Every problem is one :class:`ScenarioError` naming the field (``faults[2].rate_per_hour``).
"""

from __future__ import annotations

import enum
import importlib
import math
import random
import tomllib
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs

from golem_trio._errors import GolemError
from golem_trio.localnet import FaultKind
from golem_trio.services import HealthCheck, Restart, RestartPolicy

__all__ = [
    "BUILTIN_SERVICES",
    "CHEATS",
    "FaultSpec",
    "FaultType",
    "Firing",
    "PopulationSpec",
    "Scenario",
    "ScenarioError",
    "ServiceSpec",
    "load_scenario",
    "parse_scenario",
]

#: The services a scenario may name without a module.
BUILTIN_SERVICES = ("idle", "echo")
#: The ways a provider may cheat on billing (LocalNet's dishonest fault kinds).
CHEATS = (
    "inflate",
    "too-fast",
    "payable-without-agreement",
    "second-invoice",
    "unknown-agreement",
    "invoice-above-usage",
)


class ScenarioError(GolemError, ValueError):
    """A scenario that cannot run: ``field`` is the dotted path of what is wrong (``""`` for
    the file as a whole), ``source`` the file it came from, if any."""

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}" if field else f"{where}{problem}")
        self.field = field
        self.problem = problem
        self.source = source


class FaultType(enum.StrEnum):
    """What a scenario's fault does."""

    PROVIDER_TERMINATION = "provider-termination"
    """A provider terminates the agreement of a running instance."""
    ACTIVITY_DEATH = "activity-death"
    """The activity of a running instance dies."""
    DAEMON_5XX = "daemon-5xx"
    """For ``duration`` seconds the daemon answers requests (each with probability ``rate``)
    with a 5xx status."""
    DAEMON_LATENCY = "daemon-latency"
    """For ``duration`` seconds requests wait ``seconds`` before they are served."""
    DAEMON_STALL = "daemon-stall"
    """For ``duration`` seconds requests hang ``seconds`` (then get no answer)."""
    DAEMON_OUTAGE = "daemon-outage"
    """For ``duration`` seconds every request is answered 503."""
    DISHONEST_BILLING = "dishonest-billing"
    """``providers`` providers start cheating on billing (``billing``) at ``at``."""


INSTANCE_FAULTS = frozenset({FaultType.PROVIDER_TERMINATION, FaultType.ACTIVITY_DEATH})
DAEMON_FAULTS = frozenset(
    {
        FaultType.DAEMON_5XX,
        FaultType.DAEMON_LATENCY,
        FaultType.DAEMON_STALL,
        FaultType.DAEMON_OUTAGE,
    }
)
#: The LocalNet daemon fault each daemon window applies.
DAEMON_KIND = {
    FaultType.DAEMON_5XX: FaultKind.DAEMON_5XX,
    FaultType.DAEMON_LATENCY: FaultKind.DAEMON_LATENCY,
    FaultType.DAEMON_STALL: FaultKind.DAEMON_STALL,
    FaultType.DAEMON_OUTAGE: FaultKind.DAEMON_5XX,
}


@attrs.frozen
class RestartSpec:
    """The restart policy's fields as the scenario gives them."""

    strategy: str = "always"
    max_restarts: int = 1000
    window: float = 3600.0
    backoff: float = 1.0
    max_backoff: float = 30.0
    #: Restart delays spread by up to this share. The engine draws the spread from a source
    #: the seed does not reach, so a report is reproducible only with 0 (the default here).
    jitter: float = 0.0

    def policy(self) -> RestartPolicy:
        return RestartPolicy(
            strategy=Restart(self.strategy),
            max_restarts=self.max_restarts,
            window=self.window,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            jitter=self.jitter,
        )


@attrs.frozen
class HealthSpec:
    """The health check's fields as the scenario gives them (``interval = 0``: no probes)."""

    interval: float = 10.0
    failures: int = 3
    probe_timeout: float = 10.0

    def check(self) -> HealthCheck:
        return HealthCheck(
            interval=self.interval or None,
            failures=self.failures,
            probe_timeout=self.probe_timeout,
        )


@attrs.frozen
class ServiceSpec:
    """Which service runs and how many instances of it; ``every``: seconds between the
    ``echo`` service's commands."""

    kind: str = "idle"
    instances: int = 1
    every: float = 30.0
    restart: RestartSpec = RestartSpec()
    health: HealthSpec = HealthSpec()

    @property
    def builtin(self) -> bool:
        return self.kind in BUILTIN_SERVICES


@attrs.frozen
class PopulationSpec:
    """The providers: how many, their price ranges (GLM per CPU-second, per second, at
    start), and how many of them cheat on billing from the start, and how."""

    count: int = 10
    cpu_sec: tuple[Decimal, Decimal] = (Decimal("0.00005"), Decimal("0.0002"))
    duration_sec: tuple[Decimal, Decimal] = (Decimal("0.00001"), Decimal("0.00005"))
    start: tuple[Decimal, Decimal] = (Decimal("0"), Decimal("0"))
    dishonest: int = 0
    cheats: tuple[str, ...] = ("inflate",)
    #: Seconds between a provider's debit notes.
    debit_note_interval: int = 120


@attrs.frozen
class FaultSpec:
    """One fault of the plan: ``kind``, when (``at``: fixed times; or ``rate_per_hour``
    between ``start`` and ``end``; or one window at ``start`` lasting ``duration``) and the
    kind's own settings."""

    kind: FaultType
    at: tuple[float, ...] = ()
    rate_per_hour: float = 0.0
    start: float = 0.0
    end: float | None = None
    duration: float = 0.0
    rate: float = 1.0
    status: int = 500
    seconds: float = 1.0
    operation: str = "*"
    providers: int = 1
    billing: str = "inflate"
    code: str = "Interrupted"


@attrs.frozen
class Firing:
    """One fault on the time axis: ``at`` seconds after the service was asked for; ``index``
    is the fault's position in the scenario."""

    at: float
    index: int
    kind: FaultType


@attrs.frozen
class Scenario:
    """A whole scenario (see the module doc)."""

    name: str
    duration: float
    seed: int = 0
    description: str = ""
    service: ServiceSpec = ServiceSpec()
    budget: Decimal = Decimal("5")
    providers: PopulationSpec = PopulationSpec()
    faults: tuple[FaultSpec, ...] = ()
    #: Where the scenario came from (not part of what it is).
    source: str | None = attrs.field(default=None, eq=False)

    def with_seed(self, seed: int) -> Scenario:
        return attrs.evolve(self, seed=seed)

    def firings(self) -> list[Firing]:
        """Every fault's times, drawn under the seed: the same scenario and seed give the
        same list. Instance faults at a rate come as a Poisson process between ``start`` and
        ``end`` (default: the scenario's end); windows and fixed times as given."""
        fired: list[Firing] = []
        for index, fault in enumerate(self.faults):
            if fault.rate_per_hour > 0:
                rng = random.Random(f"{self.seed}/{index}/{fault.kind.value}")
                end = self.duration if fault.end is None else min(fault.end, self.duration)
                at = fault.start
                while True:
                    at += rng.expovariate(fault.rate_per_hour / 3600.0)
                    if at >= end:
                        break
                    fired.append(Firing(round(at, 3), index, fault.kind))
            elif fault.at:
                fired.extend(Firing(t, index, fault.kind) for t in fault.at if t < self.duration)
            elif fault.start < self.duration:
                fired.append(Firing(fault.start, index, fault.kind))
        return sorted(fired, key=lambda f: (f.at, f.index))


# --- reading -----------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """The scenario in the TOML file at ``path``; :class:`ScenarioError` when it cannot be
    read or is not a scenario. Reads the file synchronously."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError("", f"cannot read it: {exc.strerror or exc}", source) from None
    except UnicodeDecodeError:
        raise ScenarioError("", "not UTF-8 text", source) from None
    default_name = Path(path).stem
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("", f"not TOML: {exc}", source) from None
    return parse_scenario(data, source=source, default_name=default_name)


def parse_scenario(
    data: Mapping[str, Any], *, source: str | None = None, default_name: str = "scenario"
) -> Scenario:
    """A :class:`Scenario` from a parsed TOML document."""
    try:
        return _Reader(source).scenario(data, default_name)
    except ScenarioError:
        raise
    except GolemError as exc:  # a setting the engine refuses (RestartPolicy's checks)
        field = getattr(exc, "parameter", "")
        raise ScenarioError(_engine_field(field), str(exc), source) from None


def _engine_field(parameter: str) -> str:
    if parameter.startswith("RestartPolicy."):
        return "service.restart." + parameter.removeprefix("RestartPolicy.")
    if parameter.startswith("HealthCheck."):
        return "service.health." + parameter.removeprefix("HealthCheck.")
    return parameter


class _Reader:
    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, field: str, problem: str) -> ScenarioError:
        return ScenarioError(field, problem, self.source)

    # --- tables --------------------------------------------------------------------------------

    def table(self, data: Mapping[str, Any], field: str, known: Sequence[str]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(field, f"must be a table, got {_shown(data)}")
        unknown = sorted(set(data) - set(known))
        if unknown:
            prefix = f"{field}." if field else ""
            raise self.fail(f"{prefix}{unknown[0]}", f"unknown field (known: {', '.join(known)})")
        return dict(data)

    def scenario(self, data: Mapping[str, Any], default_name: str) -> Scenario:
        known = (
            "name",
            "description",
            "seed",
            "duration",
            "service",
            "budget",
            "providers",
            "faults",
        )
        top = self.table(data, "", known)
        if "duration" not in top:
            raise self.fail("duration", "missing (seconds of scenario)")
        duration = self.seconds(top["duration"], "duration", positive=True)
        faults_data = top.get("faults", [])
        if not isinstance(faults_data, list):
            raise self.fail("faults", f"must be an array of tables, got {_shown(faults_data)}")
        budget = self.table(top.get("budget", {}), "budget", ("amount",))
        service = self.service(top.get("service", {}))
        providers = self.providers(top.get("providers", {}))
        faults = tuple(
            self.fault(entry, f"faults[{i}]", providers) for i, entry in enumerate(faults_data)
        )
        return Scenario(
            name=self.text(top.get("name", default_name), "name", nonempty=True),
            description=self.text(top.get("description", ""), "description"),
            seed=self.integer(top.get("seed", 0), "seed", minimum=0),
            duration=duration,
            service=service,
            budget=self.amount(budget.get("amount", "5"), "budget.amount", positive=True),
            providers=providers,
            faults=faults,
            source=self.source,
        )

    def service(self, data: Any) -> ServiceSpec:
        table = self.table(data, "service", ("kind", "instances", "every", "restart", "health"))
        kind = self.text(table.get("kind", "idle"), "service.kind", nonempty=True)
        if kind not in BUILTIN_SERVICES and not _looks_like_class(kind):
            raise self.fail(
                "service.kind",
                f"{kind!r} is neither a built-in service ({', '.join(BUILTIN_SERVICES)}) nor "
                "'package.module:Class'",
            )
        restart = self.table(table.get("restart", {}), "service.restart", _fields(RestartSpec))
        health = self.table(table.get("health", {}), "service.health", _fields(HealthSpec))
        restart_spec = RestartSpec(
            strategy=self.choice(
                restart.get("strategy", "always"),
                "service.restart.strategy",
                sorted({r.value for r in Restart}),
            ),
            max_restarts=self.integer(
                restart.get("max_restarts", 1000), "service.restart.max_restarts", minimum=0
            ),
            window=self.seconds(
                restart.get("window", 3600.0), "service.restart.window", positive=True
            ),
            backoff=self.seconds(restart.get("backoff", 1.0), "service.restart.backoff"),
            max_backoff=self.seconds(
                restart.get("max_backoff", 30.0), "service.restart.max_backoff"
            ),
            jitter=self.fraction(restart.get("jitter", 0.0), "service.restart.jitter"),
        )
        health_spec = HealthSpec(
            interval=self.seconds(health.get("interval", 10.0), "service.health.interval"),
            failures=self.integer(health.get("failures", 3), "service.health.failures", minimum=1),
            probe_timeout=self.seconds(
                health.get("probe_timeout", 10.0), "service.health.probe_timeout", positive=True
            ),
        )
        spec = ServiceSpec(
            kind=kind,
            instances=self.integer(table.get("instances", 1), "service.instances", minimum=1),
            every=self.seconds(table.get("every", 30.0), "service.every", positive=True),
            restart=restart_spec,
            health=health_spec,
        )
        # The engine's own checks, so that a bad setting is refused before anything runs.
        restart_spec.policy()
        health_spec.check()
        return spec

    def providers(self, data: Any) -> PopulationSpec:
        table = self.table(data, "providers", _fields(PopulationSpec))
        count = self.integer(table.get("count", 10), "providers.count", minimum=1)
        dishonest = self.integer(table.get("dishonest", 0), "providers.dishonest", minimum=0)
        if dishonest > count:
            raise self.fail("providers.dishonest", f"{dishonest} is more than providers.count")
        cheats = table.get("cheats", ["inflate"])
        if not isinstance(cheats, list) or not cheats:
            raise self.fail("providers.cheats", f"must be a non-empty array, got {_shown(cheats)}")
        defaults = PopulationSpec()
        return PopulationSpec(
            count=count,
            cpu_sec=self.price_range(table.get("cpu_sec", defaults.cpu_sec), "providers.cpu_sec"),
            duration_sec=self.price_range(
                table.get("duration_sec", defaults.duration_sec), "providers.duration_sec"
            ),
            start=self.price_range(table.get("start", defaults.start), "providers.start"),
            dishonest=dishonest,
            cheats=tuple(
                self.choice(c, f"providers.cheats[{i}]", CHEATS) for i, c in enumerate(cheats)
            ),
            debit_note_interval=self.integer(
                table.get("debit_note_interval", 120), "providers.debit_note_interval", minimum=1
            ),
        )

    def fault(self, data: Any, field: str, providers: PopulationSpec) -> FaultSpec:
        table = self.table(data, field, _fields(FaultSpec))
        if "kind" not in table:
            raise self.fail(f"{field}.kind", "missing")
        kind = FaultType(self.choice(table["kind"], f"{field}.kind", [k.value for k in FaultType]))
        allowed = {"kind", *_FAULT_FIELDS[kind]}
        for key in sorted(table):
            if key not in allowed:
                raise self.fail(
                    f"{field}.{key}",
                    f"not a field of a {kind.value} fault "
                    f"(its fields: {', '.join(sorted(allowed))})",
                )
        at_data = table.get("at", [])
        if isinstance(at_data, int | float) and not isinstance(at_data, bool):
            at_data = [at_data]
        if not isinstance(at_data, list):
            raise self.fail(f"{field}.at", f"must be seconds or an array, got {_shown(at_data)}")
        at = tuple(sorted(self.seconds(t, f"{field}.at[{i}]") for i, t in enumerate(at_data)))
        rate_per_hour = self.number(
            table.get("rate_per_hour", 0.0), f"{field}.rate_per_hour", minimum=0.0
        )
        if kind in INSTANCE_FAULTS and not at and rate_per_hour == 0:
            which = "at" if "at" in table else "rate_per_hour"
            raise self.fail(f"{field}.{which}", "give rate_per_hour > 0 or times in at")
        if at and rate_per_hour:
            raise self.fail(f"{field}.at", "give either at or rate_per_hour, not both")
        start = self.seconds(table.get("start", 0.0), f"{field}.start")
        end = table.get("end")
        end_s = None if end is None else self.seconds(end, f"{field}.end", positive=True)
        if end_s is not None and end_s <= start:
            raise self.fail(f"{field}.end", f"must be after start ({start:g}), got {end_s:g}")
        duration = 0.0
        if kind in DAEMON_FAULTS:
            if "duration" not in table:
                raise self.fail(f"{field}.duration", "missing (seconds the fault lasts)")
            duration = self.seconds(table["duration"], f"{field}.duration", positive=True)
        status = self.integer(table.get("status", 500), f"{field}.status", minimum=500)
        if status > 599:
            raise self.fail(f"{field}.status", f"must be a 5xx status, got {status}")
        count = self.integer(table.get("providers", 1), f"{field}.providers", minimum=1)
        if count > providers.count:
            raise self.fail(
                f"{field}.providers", f"{count} is more than providers.count ({providers.count})"
            )
        return FaultSpec(
            kind=kind,
            at=at,
            rate_per_hour=rate_per_hour,
            start=start,
            end=end_s,
            duration=duration,
            rate=self.fraction(table.get("rate", 1.0), f"{field}.rate"),
            status=status,
            seconds=self.seconds(table.get("seconds", 1.0), f"{field}.seconds", positive=True),
            operation=self.text(table.get("operation", "*"), f"{field}.operation", nonempty=True),
            providers=count,
            billing=self.choice(table.get("billing", "inflate"), f"{field}.billing", CHEATS),
            code=self.text(table.get("code", "Interrupted"), f"{field}.code", nonempty=True),
        )

    # --- values --------------------------------------------------------------------------------

    def text(self, value: Any, field: str, *, nonempty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"must be text, got {_shown(value)}")
        if nonempty and not value.strip():
            raise self.fail(field, "must not be empty")
        return value

    def choice(self, value: Any, field: str, choices: Sequence[str]) -> str:
        text = self.text(value, field)
        if text not in choices:
            raise self.fail(field, f"must be one of {', '.join(choices)}; got {text!r}")
        return text

    def number(self, value: Any, field: str, *, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(field, f"must be a number, got {_shown(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise self.fail(field, f"must be finite, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.fail(field, f"must be at least {minimum:g}, got {value!r}")
        return number

    def seconds(self, value: Any, field: str, *, positive: bool = False) -> float:
        seconds = self.number(value, field, minimum=0.0)
        if positive and seconds == 0:
            raise self.fail(field, "must be more than 0 seconds")
        return seconds

    def fraction(self, value: Any, field: str) -> float:
        number = self.number(value, field, minimum=0.0)
        if number > 1:
            raise self.fail(field, f"must be between 0 and 1, got {value!r}")
        return number

    def integer(self, value: Any, field: str, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"must be a whole number, got {_shown(value)}")
        if value < minimum:
            raise self.fail(field, f"must be at least {minimum}, got {value}")
        return value

    def amount(self, value: Any, field: str, *, positive: bool = False) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            raise self.fail(field, f'must be an amount (text such as "0.5"), got {_shown(value)}')
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(field, f"not an amount: {value!r}") from None
        if not amount.is_finite() or amount < 0 or (positive and amount == 0):
            bound = "more than 0" if positive else "at least 0"
            raise self.fail(field, f"must be a finite amount {bound}, got {value!r}")
        return amount

    def price_range(self, value: Any, field: str) -> tuple[Decimal, Decimal]:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise self.fail(field, f"must be [low, high], got {_shown(value)}")
        low = self.amount(value[0], f"{field}[0]")
        high = self.amount(value[1], f"{field}[1]")
        if high < low:
            raise self.fail(field, f"high ({high}) is below low ({low})")
        return low, high


#: Which settings each kind of fault takes besides ``kind``.
_FAULT_FIELDS: dict[FaultType, tuple[str, ...]] = {
    FaultType.PROVIDER_TERMINATION: ("at", "rate_per_hour", "start", "end", "code"),
    FaultType.ACTIVITY_DEATH: ("at", "rate_per_hour", "start", "end"),
    FaultType.DAEMON_5XX: ("start", "duration", "rate", "status", "operation"),
    FaultType.DAEMON_LATENCY: ("start", "duration", "rate", "seconds", "operation"),
    FaultType.DAEMON_STALL: ("start", "duration", "rate", "seconds", "operation"),
    FaultType.DAEMON_OUTAGE: ("start", "duration"),
    FaultType.DISHONEST_BILLING: ("at", "providers", "billing"),
}


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in attrs.fields(cls))


def _looks_like_class(kind: str) -> bool:
    module, sep, name = kind.partition(":")
    return bool(sep) and all(p.isidentifier() for p in module.split(".")) and name.isidentifier()


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def resolve_service(kind: str) -> type[Any]:
    """The service class a scenario's ``service.kind`` names (a built-in, or
    ``package.module:Class``, imported now); :class:`ScenarioError` if it cannot be found."""
    from golem_trio.services import Service

    from ._services import EchoService, IdleService

    if kind == "idle":
        return IdleService
    if kind == "echo":
        return EchoService
    module_name, _, name = kind.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScenarioError("service.kind", f"cannot import {module_name}: {exc}") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Service)):
        raise ScenarioError("service.kind", f"{kind} is not a Service class")
    return cls
