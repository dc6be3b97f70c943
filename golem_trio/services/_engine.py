"""What the services layer needs from the engine that owns it (built by ``Golem``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ..payment import PaymentProcessor
from ..yagna import YagnaClient
from ._watcher import AgreementWatcher

__all__ = ["EngineContext", "Timeouts"]


@attrs.frozen
class Timeouts:
    """Bounds of the stopping phase, in seconds.

    ``shutdown`` bounds the user's ``shutdown`` handler; ``cleanup`` bounds destroying the
    activity and terminating the agreement (never cut short, not even by a second Ctrl-C);
    ``close`` bounds closing a handler's generator; ``probe`` is unused here (see
    ``HealthCheck``).
    """

    shutdown: float = 30.0
    cleanup: float = 20.0
    close: float = 5.0
    #: Stop this long before the agreement expires, so the stopping phase fits.
    expiration_margin: float = 60.0


def _wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.define(eq=False)
class EngineContext:
    """The engine's shared parts, as clusters and instances see them."""

    yagna: YagnaClient
    payments: PaymentProcessor
    watcher: AgreementWatcher
    emit: Callable[[object], None]
    platform: str
    subnet_tag: str | None = None
    storage: Any = None
    stream_output: bool = False
    timeouts: Timeouts = Timeouts()
    now: Callable[[], dt.datetime] = _wall_now
    #: Set by a second Ctrl-C (or ``Golem.hurry()``): skip the waits that may be skipped.
    hurry: trio.Event = attrs.field(factory=trio.Event)
    #: Set once the budget is exhausted: nothing new is signed.
    budget_exhausted: trio.Event = attrs.field(factory=trio.Event)

    def to_trio_time(self, when: dt.datetime) -> float:
        """The trio-clock time at which the wall clock (``now``) shows ``when``."""
        return trio.current_time() + (when - self.now()).total_seconds()
