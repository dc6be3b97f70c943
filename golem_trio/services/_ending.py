"""Ending an instance's agreement, and finishing it later when the daemon kept the cleanup
from it.

The cleanup step of an instance's stopping phase (``services/_instance.py``) is made of the
steps here: :func:`destroy_activity`, then :func:`end_agreement` (terminate the agreement
unless someone else ended it, register it for payment if it is not yet, tell the payment
processor it ended). Each call rides out the daemon's faults (:func:`outlasting`) within the
cleanup's bound, ``Timeouts.cleanup``.

When the daemon stays away longer than that bound (an outage past the limit, ``DaemonLost``,
or a stop during a long outage), the cleanup is cut and the instance finishes anyway, so that
a stop never waits for the daemon longer than its bounds say. What the cut cleanup did not do
is handed to the engine's :class:`Leftovers`: a task in the engine's adoptions nursery (which
outlives the clusters) goes on with the same steps, riding out the outage, until the agreement
is terminated; then it is paid like any other. The instance's ``ServiceFinished`` has been
emitted by then; the ``AgreementTerminated`` event follows when the daemon took the
termination. At the engine's exit each leftover gets ``Timeouts.cleanup`` more seconds; one the
daemon still does not take is logged and left to the daemon (the agreement then expires).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import trio

from ..events import ActivityDestroyed, AgreementTerminated
from ..market import AgreementInfo
from ..payment import BillingTermsError, PaymentProcessor
from ..yagna import (
    DaemonTimeout,
    DaemonUnreachable,
    DecodeError,
    Reason,
    ServerError,
    YagnaClient,
    YagnaError,
)
from ._reasons import StopReason
from ._watcher import AgreementWatcher

__all__ = ["Ending", "Leftover", "Leftovers", "destroy_activity", "end_agreement", "outlasting"]

logger = logging.getLogger("golem_trio.services")


def _away(exc: YagnaError) -> bool:
    """Whether ``exc`` is what a daemon that is away answers: no answer, a reply that is not
    its JSON, or a :class:`ServerError` of status 502, 503 or 504."""
    if isinstance(exc, ServerError):
        return exc.status in (502, 503, 504)
    return isinstance(exc, (DaemonUnreachable, DaemonTimeout, DecodeError))


class EngineContext(Protocol):
    """The parts of the engine's context (``_context.EngineContext``) these steps use."""

    yagna: YagnaClient
    payments: PaymentProcessor
    watcher: AgreementWatcher
    emit: Callable[[object], None]


@attrs.frozen
class Ending:
    """Who ended an agreement the instance did not end, with the code and message given."""

    terminator: str
    code: str | None
    message: str | None


async def outlasting(
    engine: EngineContext,
    call: Callable[[], Awaitable[object]],
    operation: str,
    within: float | None,
) -> None:
    """Await ``call()``; while it fails because the daemon is away (no answer, a 502, 503 or
    504, a reply that is not its JSON), report it to the monitor and try again after a pause,
    for at most ``within`` seconds (``None``: until the caller's bound), then raise the last
    error.

    Cancellation: a checkpoint (the pauses); the caller bounds it.
    """
    ride = engine.yagna.monitor.ride_out(operation, give_up_after=within)
    while True:
        try:
            await call()
        except YagnaError as exc:
            if not _away(exc):
                raise
            await ride.failed(exc)
            continue
        ride.succeeded()
        return


async def destroy_activity(
    engine: EngineContext, info: AgreementInfo | None, activity_id: str, within: float | None
) -> bool:
    """Destroy the activity, riding out the daemon's faults for ``within`` seconds at most
    (the cleanup gives it half its bound: terminating the agreement matters more); a failure
    is logged. Emits :class:`ActivityDestroyed`. Returns ``False`` when the daemon stayed away
    (the activity may still be there), ``True`` when it answered (done, or refused for good).

    Cancellation: a checkpoint; the caller bounds it.
    """
    await trio.lowlevel.checkpoint()
    try:
        await outlasting(
            engine,
            functools.partial(engine.yagna.activity.destroy_activity, activity_id),
            "DestroyActivity",
            within,
        )
    except YagnaError as exc:
        if _away(exc):
            logger.info("destroying activity %s: the daemon is away: %s", activity_id, exc)
            return False
        logger.info("destroying activity %s: %s", activity_id, exc)
    engine.emit(
        ActivityDestroyed(
            agreement_id=info.agreement_id if info else "",
            activity_id=activity_id,
            provider_id=info.provider_id if info else "",
        )
    )
    return True


async def end_agreement(
    engine: EngineContext, info: AgreementInfo, reason: StopReason, ending: Ending | None
) -> None:
    """Terminate the agreement for ``reason`` unless it was ended elsewhere (``ending``, or a
    termination the engine's watcher saw), riding out the daemon's faults as long as the
    caller's bound allows; then register it for payment if it was not, and tell the payment
    processor it ended. Emits :class:`AgreementTerminated`. A termination the daemon refuses
    is logged (the provider may have ended it meanwhile); payment goes on either way.

    Cancellation: a checkpoint; if cut before the termination was taken, nothing after it was
    done (the caller hands the rest to :class:`Leftovers`).
    """
    await trio.lowlevel.checkpoint()
    if ending is None and engine.watcher.terminated(info.agreement_id) is None:
        code = reason.requestor_code
        try:
            await outlasting(
                engine,
                functools.partial(
                    engine.yagna.market.terminate_agreement,
                    info.agreement_id,
                    Reason(reason.message, {"golem.requestor.code": code}),
                ),
                "terminateAgreement",
                None,
            )
            engine.emit(
                AgreementTerminated(
                    agreement_id=info.agreement_id,
                    provider_id=info.provider_id,
                    provider_name=info.provider_name,
                    terminator="Requestor",
                    code=code,
                    message=reason.message,
                )
            )
        except YagnaError as exc:
            logger.warning("terminating agreement %s: %s", info.agreement_id, exc)
    elif ending is not None:
        engine.emit(
            AgreementTerminated(
                agreement_id=info.agreement_id,
                provider_id=info.provider_id,
                provider_name=info.provider_name,
                terminator=ending.terminator,
                code=ending.code,
                message=ending.message,
            )
        )
    payments = engine.payments
    if payments.billing.get(info.agreement_id) is None:
        # Stopped before it was registered for payment: its invoice must still be paid.
        try:
            await payments.add_agreement(info.agreement_id)
        except (YagnaError, BillingTermsError) as exc:
            logger.warning("agreement %s cannot be paid: %s", info.agreement_id, exc)
    payments.agreement_ended(info.agreement_id)
    engine.watcher.unwatch(info.agreement_id)


@attrs.frozen
class Leftover:
    """What a cut cleanup left: the agreement, the activity if it was not destroyed yet, why
    the instance stopped, and who ended the agreement if not the requestor."""

    agreement: AgreementInfo
    activity_id: str | None
    reason: StopReason
    ending: Ending | None = None


class Leftovers:
    """The agreements whose instance's cleanup was cut by its bound, ended in the background
    (see the module's docstring). The engine opens it on its adoptions nursery
    (:meth:`open`) and, once its clusters are gone, gives each what remains of it
    ``Timeouts.cleanup`` more seconds (:meth:`close`)."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._deadline = math.inf
        #: The agreements being ended now, by id.
        self.pending: dict[str, Leftover] = {}

    def open(self, nursery: trio.Nursery) -> None:
        """Run the leftovers in ``nursery`` (one that outlives the clusters)."""
        self._nursery = nursery

    def take(self, engine: EngineContext, leftover: Leftover) -> None:
        """End ``leftover`` in the background (shielded; unbounded until :meth:`close`).
        Sync."""
        agreement_id = leftover.agreement.agreement_id
        if self._nursery is None or agreement_id in self.pending:
            logger.warning("agreement %s is left to the daemon", agreement_id)
            return
        self.pending[agreement_id] = leftover
        logger.info("agreement %s will be terminated once the daemon answers", agreement_id)
        self._nursery.start_soon(self._end, engine, leftover, name=f"leftover-{agreement_id}")

    def close(self, bound: float) -> None:
        """The engine is closing: what is left of each leftover must end within ``bound``
        seconds from now. Sync."""
        self._deadline = trio.current_time() + bound
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self._deadline)

    async def _end(self, engine: EngineContext, leftover: Leftover) -> None:
        info = leftover.agreement
        with trio.CancelScope(shield=True, deadline=self._deadline) as scope:
            self._scopes.add(scope)
            try:
                if leftover.activity_id is not None:
                    await destroy_activity(engine, info, leftover.activity_id, None)
                await end_agreement(engine, info, leftover.reason, leftover.ending)
            finally:
                self._scopes.discard(scope)
                del self.pending[info.agreement_id]
        if scope.cancelled_caught:
            logger.warning(
                "agreement %s could not be terminated before the engine closed; the daemon "
                "keeps it until it expires",
                info.agreement_id,
            )
