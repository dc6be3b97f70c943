"""One agreement-event watcher for the whole engine.

It long-polls ``/agreementEvents`` (persistently, from the last event seen) and hands each
``AgreementTerminatedEvent`` to whoever watches that agreement, so a provider-side termination
cancels exactly the instance that holds the agreement.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import trio

from ..yagna import EVENT_WAIT, TRANSIENT_ERRORS, AgreementTerminatedEvent, YagnaClient

__all__ = ["AgreementWatcher"]

logger = logging.getLogger("golem_trio.services")

OnTerminated = Callable[[AgreementTerminatedEvent], None]


class AgreementWatcher:
    """Dispatches agreement terminations to their watchers.

    A termination that arrives before anyone watches the agreement is kept and delivered as
    soon as :meth:`watch` is called for it.
    """

    def __init__(
        self,
        yagna: YagnaClient,
        *,
        poll_wait: float = EVENT_WAIT,
        retry_delay: float = 1.0,
        on_any_termination: OnTerminated | None = None,
        now: Callable[[], dt.datetime] | None = None,
        app_session_id: str | None = None,
    ) -> None:
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        #: Only agreements confirmed under this application session are watched (``None``:
        #: every agreement of the identity).
        self._app_session_id = app_session_id
        self._yagna = yagna
        self._poll_wait = poll_wait
        self._retry_delay = retry_delay
        self._on_any = on_any_termination
        self._watchers: dict[str, OnTerminated] = {}
        self._terminated: dict[str, AgreementTerminatedEvent] = {}
        self._after: dt.datetime | None = None
        #: How many polls failed (daemon errors); the watcher keeps going.
        self.errors = 0

    def watch(self, agreement_id: str, callback: OnTerminated) -> None:
        """Call ``callback`` (once, synchronously) when the agreement is terminated."""
        event = self._terminated.get(agreement_id)
        if event is not None:
            callback(event)
            return
        self._watchers[agreement_id] = callback

    def unwatch(self, agreement_id: str) -> None:
        self._watchers.pop(agreement_id, None)
        self._terminated.pop(agreement_id, None)

    def terminated(self, agreement_id: str) -> AgreementTerminatedEvent | None:
        """The termination event seen for the agreement, if any."""
        return self._terminated.get(agreement_id)

    def _dispatch(self, event: object) -> None:
        if not isinstance(event, AgreementTerminatedEvent):
            return
        self._terminated[event.agreement_id] = event
        if self._on_any is not None:
            self._on_any(event)
        callback = self._watchers.pop(event.agreement_id, None)
        if callback is not None:
            callback(event)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled. A daemon that is unreachable, slow, failing (5xx, 408) or
        answering what is not its JSON (:data:`~golem_trio.yagna.TRANSIENT_ERRORS`) is
        logged, reported to the client's monitor and retried after a bounded, jittered pause;
        other API errors (a wrong app key) end the task."""
        # Start from now: terminations of agreements this engine did not make are not ours.
        self._after = self._now() - dt.timedelta(seconds=1)
        ride = self._yagna.monitor.ride_out("collectAgreementEvents")
        task_status.started()
        while True:
            try:
                events = await self._yagna.market.collect_agreement_events(
                    wait=self._poll_wait,
                    after_timestamp=self._after,
                    app_session_id=self._app_session_id,
                )
            except TRANSIENT_ERRORS as exc:
                self.errors += 1
                logger.warning("agreement events: %s; retrying", exc)
                await ride.failed(exc)
                continue
            ride.succeeded()
            for event in events:
                date = getattr(event, "event_date", None)
                if isinstance(date, dt.datetime) and (self._after is None or date > self._after):
                    self._after = date
                self._dispatch(event)
