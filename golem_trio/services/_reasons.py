"""Why a service instance stopped: one typed reason per cause.

Every reason says whether it is a *failure* (the restart policy may act on it; a deliberate
stop never is one), the ``golem.requestor.code`` sent when we terminate the agreement, and a
human-readable message.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

__all__ = [
    "Aborted",
    "ActivityDied",
    "AgreementLost",
    "BudgetExhausted",
    "ClusterStopped",
    "DaemonLost",
    "Expired",
    "GolemExit",
    "HandlerFailed",
    "HealthCheckFailed",
    "Interrupted",
    "ProviderTerminated",
    "ProvisioningFailed",
    "RunFinished",
    "StopReason",
]


@attrs.frozen
class StopReason:
    """Base of every stop reason."""

    #: Short stable name of the cause (also the event's ``stop_code``).
    code: ClassVar[str] = "Stopped"
    #: A failure lets the restart policy restart the instance.
    failure: ClassVar[bool] = False
    #: What we send as ``golem.requestor.code`` when we terminate the agreement.
    requestor_code: ClassVar[str] = "Success"

    @property
    def message(self) -> str:
        return self.code

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class RunFinished(StopReason):
    """The ``run`` handler returned."""

    code: ClassVar[str] = "RunFinished"

    @property
    def message(self) -> str:
        return "the run handler finished"


@attrs.frozen
class ClusterStopped(StopReason):
    """``cluster.stop()``, ``stop_instance`` or a scale down."""

    code: ClassVar[str] = "ClusterStopped"
    detail: str = "stopped by the requestor"

    @property
    def message(self) -> str:
        return self.detail


@attrs.frozen
class GolemExit(StopReason):
    """The ``async with Golem`` block ended."""

    code: ClassVar[str] = "GolemExit"

    @property
    def message(self) -> str:
        return "the Golem engine is shutting down"


@attrs.frozen
class Interrupted(StopReason):
    """SIGINT or SIGTERM (Ctrl-C)."""

    code: ClassVar[str] = "Interrupted"
    requestor_code: ClassVar[str] = "Cancelled"
    signal: str = "SIGINT"

    @property
    def message(self) -> str:
        return f"interrupted by {self.signal}"


@attrs.frozen
class BudgetExhausted(StopReason):
    """The budget ledger says the final invoices would no longer fit otherwise."""

    code: ClassVar[str] = "BudgetExhausted"
    requestor_code: ClassVar[str] = "BudgetExhausted"
    detail: str = ""

    @property
    def message(self) -> str:
        return f"budget exhausted: {self.detail}" if self.detail else "budget exhausted"


@attrs.frozen
class DaemonLost(StopReason):
    """The daemon was unavailable for longer than the engine tolerates
    (``Golem(daemon_outage_limit=...)``): every service stops, and the agreements are
    terminated once the daemon answers again (within the cleanup bounds)."""

    code: ClassVar[str] = "DaemonLost"
    failure: ClassVar[bool] = True
    requestor_code: ClassVar[str] = "Cancelled"
    #: Seconds the outage had lasted when the services were stopped.
    outage: float = 0.0
    #: What the first failed call of the outage raised.
    error: str = ""

    @property
    def message(self) -> str:
        text = f"the daemon was unavailable for {self.outage:.0f} s"
        return f"{text}: {self.error}" if self.error else text


@attrs.frozen
class Expired(StopReason):
    """The agreement's expiration is near."""

    code: ClassVar[str] = "Expired"

    @property
    def message(self) -> str:
        return "the agreement is about to expire"


@attrs.frozen
class Aborted(StopReason):
    """Cancelled from outside the instance (an enclosing scope), with no recorded reason."""

    code: ClassVar[str] = "Aborted"
    requestor_code: ClassVar[str] = "Cancelled"

    @property
    def message(self) -> str:
        return "cancelled by an enclosing scope"


@attrs.frozen
class ProviderTerminated(StopReason):
    """The provider terminated the agreement."""

    code: ClassVar[str] = "ProviderTerminated"
    failure: ClassVar[bool] = True
    provider_code: str | None = None
    provider_message: str | None = None

    @property
    def message(self) -> str:
        text = f"the provider terminated the agreement ({self.provider_code or 'no code'})"
        return f"{text}: {self.provider_message}" if self.provider_message else text


@attrs.frozen
class AgreementLost(StopReason):
    """The agreement was terminated on the requestor's side while the instance ran, not by
    the instance: the payment processor broke it over a bad debit note (its GAP-3
    ``golem.requestor.code`` is ``code``), or another client of the same identity did."""

    code: ClassVar[str] = "AgreementLost"
    failure: ClassVar[bool] = True
    requestor_code: ClassVar[str] = "Cancelled"
    termination_code: str | None = None
    termination_message: str | None = None

    @property
    def message(self) -> str:
        text = f"the agreement was terminated ({self.termination_code or 'no code'})"
        return f"{text}: {self.termination_message}" if self.termination_message else text


@attrs.frozen
class ActivityDied(StopReason):
    """The activity is gone (terminated on the provider's side)."""

    code: ClassVar[str] = "ActivityDied"
    failure: ClassVar[bool] = True
    requestor_code: ClassVar[str] = "ActivityDied"
    detail: str = ""

    @property
    def message(self) -> str:
        return f"the activity died: {self.detail}" if self.detail else "the activity died"


@attrs.frozen
class HealthCheckFailed(StopReason):
    """The health probe failed ``failures`` times in a row."""

    code: ClassVar[str] = "HealthCheckFailed"
    failure: ClassVar[bool] = True
    requestor_code: ClassVar[str] = "HealthCheckFailed"
    failures: int = 0
    detail: str = ""

    @property
    def message(self) -> str:
        return f"the health check failed {self.failures} times: {self.detail}"


@attrs.frozen
class HandlerFailed(StopReason):
    """A handler (``start`` or ``run``) raised."""

    code: ClassVar[str] = "HandlerFailed"
    failure: ClassVar[bool] = True
    requestor_code: ClassVar[str] = "Cancelled"
    phase: str = "run"
    error: BaseException | None = attrs.field(default=None, eq=False)

    @property
    def message(self) -> str:
        return f"the {self.phase} handler raised {self.error!r}"


@attrs.frozen
class ProvisioningFailed(StopReason):
    """Getting the agreement or the activity ready failed."""

    code: ClassVar[str] = "ProvisioningFailed"
    failure: ClassVar[bool] = True
    requestor_code: ClassVar[str] = "Cancelled"
    detail: str = ""
    error: BaseException | None = attrs.field(default=None, eq=False)

    @property
    def message(self) -> str:
        return f"provisioning failed: {self.detail}"
