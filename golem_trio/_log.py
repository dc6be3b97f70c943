"""Logging for users of the engine: event loggers, a run summary and a default setup.

The names are those yapapi users know from ``yapapi.log``:

- :func:`log_event` and :func:`log_event_repr` log every event at DEBUG on the
  ``golem_trio.events`` logger;
- :func:`log_summary` returns a :class:`SummaryLogger`, which writes a short account of the run
  on the ``golem_trio.summary`` logger: which daemon and budget, how many providers answered,
  agreements, instances that started and stopped, failures, and a cost summary at shutdown;
- :func:`enable_default_logger` sends the ``golem_trio`` loggers to stderr (and a file).

Events never carry the app key or other secrets, and nothing here adds any: URLs are logged
without their user-info part.
"""

from __future__ import annotations

import logging
import sys
import urllib.parse
from decimal import Decimal
from typing import Final, TextIO

import attrs

from golem_trio.events import (
    ActivityCreated,
    AgreementSigned,
    AgreementTerminated,
    AgreementTerminatedForBilling,
    BudgetLimitReached,
    ClusterFinished,
    ClusterStarted,
    DaemonAvailable,
    DaemonUnavailable,
    DebitNoteRefused,
    EventConsumer,
    GolemStarted,
    HealthProbeFailed,
    InstanceRestarting,
    InvoiceRejected,
    ProposalReceived,
    ProviderBanned,
    ServiceStateChanged,
    ShutdownFinished,
    ShutdownStarted,
)
from golem_trio.payment import PaymentReport

__all__ = [
    "SummaryLogger",
    "enable_default_logger",
    "log_event",
    "log_event_repr",
    "log_summary",
]

event_logger = logging.getLogger("golem_trio.events")
summary_logger = logging.getLogger("golem_trio.summary")

#: The default format of :func:`enable_default_logger`'s handlers.
DEFAULT_FORMAT: Final = "[%(asctime)s %(levelname)s %(name)s] %(message)s"

# Longer texts from providers (stderr, messages) are cut to this many characters in the summary.
_MAX_TEXT = 500


# --- per-event loggers -------------------------------------------------------------------------


def _describe(event: object) -> str:
    """``ClassName: field=value, ...`` for attrs events (timestamp left out); else ``str``."""
    cls = type(event)
    if not attrs.has(cls):
        return str(event)
    fields = ", ".join(
        f"{field.name}={getattr(event, field.name)!r}"
        for field in attrs.fields(cls)
        if field.name != "timestamp"
    )
    return f"{type(event).__name__}: {fields}"


def log_event(event: object) -> None:
    """Log ``event`` in readable form at DEBUG on the ``golem_trio.events`` logger.

    An :data:`~golem_trio.events.EventConsumer`: pass it to
    :meth:`~golem_trio.events.Emitter.add_consumer`.
    """
    if event_logger.isEnabledFor(logging.DEBUG):
        event_logger.debug("%s", _describe(event))


def log_event_repr(event: object) -> None:
    """Log ``repr(event)`` at DEBUG on the ``golem_trio.events`` logger.

    An :data:`~golem_trio.events.EventConsumer`, like :func:`log_event`.
    """
    event_logger.debug("%r", event)


# --- the summary -------------------------------------------------------------------------------


def _short(identifier: str, keep: int = 8) -> str:
    """Long ids (agreement and activity ids are 64 hex digits) cut to their first characters."""
    if len(identifier) <= keep + 4:
        return identifier
    return identifier[:keep] + "…"


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) <= _MAX_TEXT:
        return text
    return text[:_MAX_TEXT] + f"… ({len(text) - _MAX_TEXT} more characters)"


def _without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``, which must not reach a log."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _is_milestone(count: int) -> bool:
    """1, 2, 5, 10, 20, 50, 100, ...: the provider counts worth a line."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count in (1, 2, 5)


class SummaryLogger:
    """An event consumer that writes a short account of the run on ``golem_trio.summary``.

    Every event is first passed to ``wrapped`` (if given), unchanged; then the summary is
    updated. Routine progress is logged at INFO, failures at WARNING; most events write
    nothing, so the log stays readable. At :class:`~golem_trio.events.ShutdownFinished` it logs
    the cost of each agreement, the total spent against the budget, what stays unpaid and why,
    and finally ``"Golem engine has shut down"``.

    Work-layer events are recognised by class name, so this module does not depend on that
    layer.

    Args:
        wrapped: Another consumer that hears every event before the summary does.
    """

    def __init__(self, wrapped: EventConsumer | None = None) -> None:
        self._wrapped = wrapped
        self._budget: Decimal | None = None
        self._providers_seen: set[str] = set()
        self._provider_names: dict[str, str] = {}
        # agreement id -> provider id, from AgreementSigned (and ActivityCreated)
        self._agreement_providers: dict[str, str] = {}
        self._broken = False

    def __call__(self, event: object) -> None:
        """Pass ``event`` to the wrapped consumer, then add it to the summary."""
        try:
            if self._wrapped is not None:
                self._wrapped(event)
        finally:
            self._summarize(event)

    def _summarize(self, event: object) -> None:
        if self._broken:
            return
        try:
            self._handle(event)
        except Exception:
            # A bug in the summary must not cost the user the events; say so once and stop.
            self._broken = True
            summary_logger.exception("The summary logger failed; no more summary lines")

    # -- naming -------------------------------------------------------------------------------

    def _remember(self, provider_id: str | None, name: str | None) -> None:
        if provider_id is not None and name:
            self._provider_names[provider_id] = name

    def _provider(self, provider_id: str | None, name: str | None = None) -> str:
        """``'name' (id)``, from the event or from what earlier events said."""
        if provider_id is None:
            return f"'{name}'" if name else "unknown provider"
        name = name or self._provider_names.get(provider_id)
        return f"'{name}' ({provider_id})" if name else provider_id

    def _agreement(self, agreement_id: str) -> str:
        """``agreement <id> with provider 'name' (id)`` when the provider is known."""
        provider_id = self._agreement_providers.get(agreement_id)
        if provider_id is None:
            return f"agreement {_short(agreement_id)}"
        return f"agreement {_short(agreement_id)} with provider {self._provider(provider_id)}"

    # -- dispatch -----------------------------------------------------------------------------

    def _handle(self, event: object) -> None:
        log = summary_logger
        match event:
            case GolemStarted():
                self._budget = event.budget
                daemon = (
                    "the embedded LocalNet daemon"
                    if event.localnet
                    else f"the daemon at {_without_userinfo(event.api_url)}"
                )
                subnet = f"subnet '{event.subnet_tag}'" if event.subnet_tag else "any subnet"
                log.info(
                    "Golem engine started with %s; budget %s on %s, %s",
                    daemon,
                    event.budget,
                    event.payment_platform,
                    subnet,
                )
            case ProposalReceived():
                self._remember(event.provider_id, event.provider_name)
                if event.provider_id not in self._providers_seen:
                    self._providers_seen.add(event.provider_id)
                    count = len(self._providers_seen)
                    if _is_milestone(count):
                        log.info(
                            "Received proposals from %d provider%s so far",
                            count,
                            "" if count == 1 else "s",
                        )
            case AgreementSigned():
                self._remember(event.provider_id, event.provider_name)
                self._agreement_providers[event.agreement_id] = event.provider_id
                log.info(
                    "Agreement signed with provider %s: agreement %s",
                    self._provider(event.provider_id, event.provider_name),
                    _short(event.agreement_id),
                )
            case ProviderBanned():
                log.info(
                    "Provider %s will not be used for a while: %s",
                    self._provider(event.provider_id),
                    event.reason,
                )
            case ActivityCreated():
                self._remember(event.provider_id, event.provider_name)
                self._agreement_providers.setdefault(event.agreement_id, event.provider_id)
                log.info(
                    "Activity %s created on provider %s",
                    _short(event.activity_id),
                    self._provider(event.provider_id, event.provider_name),
                )
            case ClusterStarted():
                log.info(
                    "Cluster %s started: %d instance%s of %s",
                    event.cluster_id,
                    event.num_instances,
                    "" if event.num_instances == 1 else "s",
                    event.service_class,
                )
            case ClusterFinished():
                log.info("Cluster %s of %s stopped", event.cluster_id, event.service_class)
            case ServiceStateChanged():
                self._service_state_changed(event)
            case InstanceRestarting():
                avoiding = (
                    f", avoiding provider {self._provider(event.avoided_provider)}"
                    if event.avoided_provider
                    else ""
                )
                log.info(
                    "%s instance %s restarting (attempt %d) in %.1fs%s",
                    event.service_class,
                    event.instance_id,
                    event.attempt,
                    event.delay,
                    avoiding,
                )
            case HealthProbeFailed():
                log.warning(
                    "Health check failed for instance %s of cluster %s (activity %s), "
                    "%d failure%s in a row: %s",
                    event.instance_id,
                    event.cluster_id,
                    _short(event.activity_id),
                    event.failures,
                    "" if event.failures == 1 else "s",
                    _clip(event.detail),
                )
            case AgreementTerminated():
                self._remember(event.provider_id, event.provider_name)
                if event.terminator == "Provider":
                    log.warning(
                        "Provider %s terminated agreement %s: code %s, message %s",
                        self._provider(event.provider_id, event.provider_name),
                        _short(event.agreement_id),
                        event.code or "(none)",
                        _clip(event.message) if event.message else "(none)",
                    )
            case DebitNoteRefused():
                log.warning(
                    "Debit note %s for %s refused: amount %s, %s: %s",
                    _short(event.debit_note_id),
                    self._agreement(event.agreement_id),
                    event.amount,
                    event.reason,
                    _clip(event.message),
                )
            case InvoiceRejected():
                log.warning(
                    "Invoice %s for %s not paid: amount %s, acceptable %s, %s: %s (%s)",
                    _short(event.invoice_id),
                    self._agreement(event.agreement_id),
                    event.amount,
                    event.amount_accepted,
                    event.reason,
                    _clip(event.message),
                    "rejection sent" if event.sent else "no rejection sent",
                )
            case AgreementTerminatedForBilling():
                log.warning(
                    "Terminating %s over debit note %s: %s: %s%s",
                    self._agreement(event.agreement_id),
                    _short(event.debit_note_id),
                    event.code,
                    _clip(event.message),
                    "" if event.terminated else " (the termination call failed)",
                )
            case BudgetLimitReached():
                log.warning(
                    "Budget exhausted: projected spend %s exceeds budget %s: %s",
                    event.projected,
                    event.budget,
                    event.detail,
                )
            case DaemonUnavailable():
                log.warning(
                    "The daemon is unavailable since %s: %s failed: %s: %s",
                    event.since.isoformat(timespec="seconds"),
                    event.operation,
                    event.error_type,
                    _clip(event.error),
                )
            case DaemonAvailable():
                log.info(
                    "The daemon is available again, after %.1f s (%d failed calls)",
                    event.outage,
                    event.failures,
                )
            case ShutdownStarted():
                log.info("Shutting down: %s", event.reason)
            case ShutdownFinished():
                self._shutdown_finished(event)
            case _ if type(event).__name__ == "CommandExecuted":
                self._command_executed(event)

    def _service_state_changed(self, event: ServiceStateChanged) -> None:
        self._remember(event.provider_id, event.provider_name)
        if event.new == event.old:
            return
        if event.new == "running":
            summary_logger.info(
                "%s instance %s running on provider %s",
                event.service_class,
                event.instance_id,
                self._provider(event.provider_id, event.provider_name),
            )
        elif event.new == "terminated":
            where = (
                f" on provider {self._provider(event.provider_id, event.provider_name)}"
                if event.provider_id is not None
                else ""
            )
            summary_logger.info(
                "%s instance %s terminated%s: %s",
                event.service_class,
                event.instance_id,
                where,
                event.reason or event.trigger,
            )

    def _command_executed(self, event: object) -> None:
        if getattr(event, "success", True):
            return
        activity_id = getattr(event, "activity_id", None)
        agreement_id = getattr(event, "agreement_id", None)
        provider_id = (
            self._agreement_providers.get(agreement_id) if isinstance(agreement_id, str) else None
        )
        where = f" on provider {self._provider(provider_id)}" if provider_id else ""
        stderr = getattr(event, "stderr", None)
        summary_logger.warning(
            "Command %s failed%s (activity %s): exit code %s, stderr: %s",
            getattr(event, "command", "?"),
            where,
            _short(activity_id) if isinstance(activity_id, str) else "?",
            getattr(event, "exit_code", None),
            _clip(str(stderr)) if stderr else "(empty)",
        )

    def _shutdown_finished(self, event: ShutdownFinished) -> None:
        if event.error:
            summary_logger.warning("Shutdown finished with an error: %s", event.error)
        report = event.payment_report
        if report is None:
            summary_logger.info("No payments were made: the payment processor never started")
        else:
            summary_logger.info("%s", self._cost_summary(report))
        summary_logger.info("Golem engine has shut down")

    def _cost_summary(self, report: PaymentReport) -> str:
        """The cost table and the totals, as one multi-line message."""
        rows = [("Provider", "Agreement", "Accepted")]
        for agreement_id, amount in sorted(report.invoices_accepted.items()):
            provider_id = self._agreement_providers.get(agreement_id)
            provider = self._provider(provider_id) if provider_id else "unknown provider"
            rows.append((provider, _short(agreement_id), str(amount)))
        lines = ["Cost summary:"]
        if len(rows) == 1:
            lines.append("  no invoices were accepted")
        else:
            widths = [max(len(row[i]) for row in rows) for i in range(3)]
            for provider, agreement, accepted in rows:
                lines.append(
                    f"  {provider:<{widths[0]}}  {agreement:<{widths[1]}}  {accepted:>{widths[2]}}"
                )
        share = f" ({report.spent / report.budget:.1%})" if report.budget > 0 else ""
        lines.append(f"  Total spent: {report.spent} of budget {report.budget}{share}")
        if report.unpaid:
            lines.append(f"  Unpaid agreements ({len(report.unpaid)}):")
            for unpaid in report.unpaid:
                owed = f", amount {unpaid.amount}" if unpaid.amount is not None else ""
                lines.append(f"    {self._agreement(unpaid.agreement_id)}: {unpaid.reason}{owed}")
        lines.append(
            f"  Allocation {_short(report.allocation_id)} released"
            if report.allocation_released
            else f"  Allocation {_short(report.allocation_id)} NOT released"
        )
        return "\n".join(lines)


def log_summary(wrapped: EventConsumer | None = None) -> EventConsumer:
    """A :class:`SummaryLogger` that passes every event on to ``wrapped`` first.

    Use it as yapapi's ``log_summary``: ``emitter.add_consumer(log_summary(log_event_repr))``.
    """
    return SummaryLogger(wrapped)


# --- the default setup -------------------------------------------------------------------------

# The daemon APIs whose request lines the ``debug_*_api`` flags let through, by path segment.
_API_SEGMENTS: Final = {
    "activity-api": "activity",
    "market-api": "market",
    "payment-api": "payment",
    "net-api": "net",
}
_YAGNA_LOGGER: Final = "golem_trio.yagna"


class _ApiDebugFilter(logging.Filter):
    """Drops the per-request DEBUG lines of the daemon APIs not asked for.

    The yagna layer logs each request at DEBUG on ``golem_trio.yagna`` with the request path
    as its third argument; the path's ``*-api`` segment names the API.
    """

    def __init__(self, enabled: frozenset[str]) -> None:
        super().__init__()
        self.enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != _YAGNA_LOGGER or record.levelno > logging.DEBUG:
            return True
        args = record.args
        if not isinstance(args, tuple) or len(args) < 3 or not isinstance(args[2], str):
            return True
        for segment in args[2].split("/"):
            api = _API_SEGMENTS.get(segment)
            if api is not None:
                return api in self.enabled
        return True


class _DefaultHandler(logging.Handler):
    """Marks the handlers :func:`enable_default_logger` installed, so a new call replaces them."""


class _StderrHandler(logging.StreamHandler[TextIO], _DefaultHandler):
    pass


class _FileHandler(logging.FileHandler, _DefaultHandler):
    pass


def enable_default_logger(
    level: int = logging.INFO,
    log_file: str | None = None,
    format_: str = DEFAULT_FORMAT,
    debug_activity_api: bool = False,
    debug_market_api: bool = False,
    debug_payment_api: bool = False,
    debug_net_api: bool = False,
) -> None:
    """Send the ``golem_trio`` loggers to stderr, and to ``log_file`` if given.

    The stderr handler shows records at ``level`` and above. The file, if any, gets everything
    from DEBUG up, so it holds the full story of a run (add :func:`log_event` as a consumer to
    have every event in it). The daemon's per-request DEBUG lines appear only for the APIs
    whose ``debug_*_api`` flag is set.

    Calling it again replaces the handlers the previous call installed (closing its file), so
    handlers are never duplicated. Handlers installed by other code are left alone.

    Args:
        level: The lowest level shown on stderr.
        log_file: A file to append the DEBUG log to.
        format_: The :class:`logging.Formatter` format of both handlers.
        debug_activity_api: Log each Activity API request at DEBUG.
        debug_market_api: Log each Market API request at DEBUG.
        debug_payment_api: Log each Payment API request at DEBUG.
        debug_net_api: Log each Net API request at DEBUG.
    """
    logger = logging.getLogger("golem_trio")
    for old in [h for h in logger.handlers if isinstance(h, _DefaultHandler)]:
        logger.removeHandler(old)
        old.close()

    flags = {
        "activity": debug_activity_api,
        "market": debug_market_api,
        "payment": debug_payment_api,
        "net": debug_net_api,
    }
    api_filter = _ApiDebugFilter(frozenset(api for api, on in flags.items() if on))
    formatter = logging.Formatter(format_)

    handlers: list[logging.Handler] = [_StderrHandler(sys.stderr)]
    handlers[0].setLevel(level)
    if log_file is not None:
        file_handler = _FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        handlers.append(file_handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(api_filter)
        logger.addHandler(handler)
    logger.setLevel(min(level, logging.DEBUG) if log_file is not None else level)
