"""Restart policies and health checks: plain configuration values.

Restart strategies use Erlang's names where they have one: ``TEMPORARY`` (never restart),
``TRANSIENT`` (restart after a failure), ``PERMANENT`` (restart whenever it ends), plus
yapapi's default, ``ON_FAILURE_BEFORE_RUNNING``. A deliberate stop (``cluster.stop()``, scale
down, Golem exit, Ctrl-C, budget exhaustion, expiration) never restarts anything.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Awaitable, Callable

import attrs

from .._errors import ConfigurationError, ConfigurationTypeError, check_count, check_seconds
from ._reasons import StopReason
from ._service import Service

__all__ = ["HealthCheck", "Restart", "RestartPolicy", "RestartTracker"]


class Restart(enum.StrEnum):
    TEMPORARY = "never"
    """Never restart."""
    ON_FAILURE_BEFORE_RUNNING = "on-failure-before-running"
    """Restart after a failure that happened before the instance ever reached ``running``
    (yapapi's default)."""
    TRANSIENT = "on-failure"
    """Restart after any failure."""
    PERMANENT = "always"
    """Restart whenever a life ends, failure or not (except deliberate stops)."""

    # yapapi-flavoured aliases
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


def _positive(inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(f"{type(inst).__name__}.{attribute.name}", value)


def _non_negative(inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(f"{type(inst).__name__}.{attribute.name}", value, zero=True)


def _strategy(value: object) -> Restart:
    """A :class:`Restart`, also from its value (``"on-failure"``)."""
    if isinstance(value, Restart):
        return value
    if isinstance(value, str):
        try:
            return Restart(value)
        except ValueError:
            pass
        choices = ", ".join(sorted({r.value for r in Restart}))
        raise ConfigurationError(
            "RestartPolicy.strategy", f"must be a Restart ({choices}), got {value!r}"
        )
    raise ConfigurationTypeError("RestartPolicy.strategy", f"must be a Restart, got {value!r}")


@attrs.frozen
class RestartPolicy:
    """When to give an instance a new life, and how often.

    At most ``max_restarts`` restarts within ``window`` seconds (Erlang's MaxR in MaxT); past
    that the instance stays terminated. Before restart ``n`` (1-based) the instance waits
    ``min(backoff * 2**(n-1), max_backoff)`` seconds, spread by up to ``jitter`` of itself.
    The provider of a failed life is banned (the ban grows with repeat offences), so the next
    life goes elsewhere when it can.

    ``window`` is a finite number > 0, ``backoff`` and ``max_backoff`` finite and >= 0,
    ``jitter`` between 0 and 1, ``max_restarts`` an integer >= 0; anything else raises
    :class:`~golem_trio.ConfigurationError` naming the field.
    """

    strategy: Restart = attrs.field(default=Restart.ON_FAILURE_BEFORE_RUNNING, converter=_strategy)
    max_restarts: int = attrs.field(default=5)
    window: float = attrs.field(default=300.0, validator=_positive)
    backoff: float = attrs.field(default=1.0, validator=_non_negative)
    max_backoff: float = attrs.field(default=60.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_non_negative)
    avoid_failed_provider: bool = True

    @max_restarts.validator
    def _check_max(self, _attribute: object, value: int) -> None:
        check_count("RestartPolicy.max_restarts", value)

    @jitter.validator
    def _check_jitter(self, _attribute: object, value: float) -> None:
        if value > 1:
            raise ConfigurationError("RestartPolicy.jitter", f"must be at most 1, got {value!r}")

    def wants(self, reason: StopReason, reached_running: bool) -> bool:
        """Whether the strategy restarts after a life that ended for ``reason``."""
        if self.strategy is Restart.TEMPORARY:
            return False
        if self.strategy is Restart.PERMANENT:
            return True
        if not reason.failure:
            return False
        if self.strategy is Restart.TRANSIENT:
            return True
        return not reached_running

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.backoff * 2 ** max(attempt - 1, 0), self.max_backoff)
        return base * (1 + rng.uniform(-self.jitter, self.jitter)) if base else 0.0


@attrs.define
class RestartTracker:
    """The restarts of one instance within the policy's window."""

    policy: RestartPolicy
    times: deque[float] = attrs.field(factory=deque)
    attempts: int = 0

    def allow(self, now: float) -> bool:
        """Record a restart at ``now`` if the budget allows it."""
        while self.times and self.times[0] <= now - self.policy.window:
            self.times.popleft()
        if len(self.times) >= self.policy.max_restarts:
            return False
        self.times.append(now)
        self.attempts += 1
        return True


Probe = Callable[[Service], Awaitable[bool]]


@attrs.frozen
class HealthCheck:
    """How a running instance is probed.

    Every ``interval`` seconds the probe runs (at most ``probe_timeout`` seconds); after
    ``failures`` failed probes in a row (``False``, an exception or a timeout) the instance is
    stopped with :class:`HealthCheckFailed`. The default probe is the service's
    ``is_activity_responsive()`` (the activity's state); ``probe`` replaces it with any async
    callable taking the service object. ``interval=None`` turns probing off (a dead activity is
    still noticed by the next command).

    ``interval`` and ``probe_timeout`` are finite numbers > 0, ``failures`` an integer >= 1;
    anything else raises :class:`~golem_trio.ConfigurationError` naming the field.
    """

    # A minute: the probe is one request per instance, which at hundreds of idle instances
    # is most of what they cost; a provider that ends the agreement is noticed at once anyway
    # (the agreement-event watcher), and a dead activity by the next command.
    interval: float | None = 60.0
    failures: int = 3
    probe_timeout: float = 10.0
    probe: Probe | None = None

    def __attrs_post_init__(self) -> None:
        check_seconds("HealthCheck.interval", self.interval, none=True)
        check_count("HealthCheck.failures", self.failures, minimum=1)
        check_seconds("HealthCheck.probe_timeout", self.probe_timeout)
        if self.probe is not None and not callable(self.probe):
            raise ConfigurationTypeError(
                "HealthCheck.probe", f"must be an async callable or None, got {self.probe!r}"
            )
