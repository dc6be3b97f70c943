"""Tests for ``golem_trio.events`` (the emitter) and ``golem_trio._log`` (the loggers)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from golem_trio import _log
from golem_trio._log import (
    SummaryLogger,
    enable_default_logger,
    log_event,
    log_event_repr,
    log_summary,
)
from golem_trio.events import (
    ActivityCreated,
    AgreementSigned,
    AgreementTerminated,
    AgreementTerminatedForBilling,
    BudgetLimitReached,
    DebitNoteAccepted,
    DebitNoteRefused,
    Emitter,
    Event,
    GolemStarted,
    HealthProbeFailed,
    InstanceRestarting,
    InvoiceAccepted,
    InvoiceRejected,
    ProposalReceived,
    ServiceStateChanged,
    ShutdownFinished,
    ShutdownStarted,
)
from golem_trio.payment import PaymentReport, Unpaid

SUMMARY = "golem_trio.summary"
EVENTS = "golem_trio.events"

PROVIDER_A = "0x" + "a" * 40
PROVIDER_B = "0x" + "b" * 40
AGREEMENT_A = "1" * 64
AGREEMENT_B = "2" * 64


def started(*, localnet: bool = True, api_url: str = "http://127.0.0.1:7465") -> GolemStarted:
    return GolemStarted(
        api_url=api_url,
        localnet=localnet,
        budget=Decimal("5.5"),
        payment_platform="erc20-holesky-tglm",
        subnet_tag="public",
    )


def signed(agreement_id: str, provider_id: str, name: str) -> AgreementSigned:
    return AgreementSigned(agreement_id=agreement_id, provider_id=provider_id, provider_name=name)


def state_changed(new: str, *, reason: str | None = None) -> ServiceStateChanged:
    return ServiceStateChanged(
        cluster_id="c1",
        instance_id="i7",
        service_class="DateService",
        old="starting" if new == "running" else "running",
        new=new,
        trigger="provider_terminated" if new == "terminated" else "started",
        reason=reason,
        provider_id=PROVIDER_A,
        provider_name="alpha",
    )


def summary_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SUMMARY]


@pytest.fixture
def summary(caplog: pytest.LogCaptureFixture) -> SummaryLogger:
    caplog.set_level(logging.INFO, logger=SUMMARY)
    return SummaryLogger()


# --- events ------------------------------------------------------------------------------------


def test_each_event_takes_its_own_timestamp() -> None:
    first = ShutdownStarted(reason="one")
    time.sleep(0.002)
    second = ShutdownStarted(reason="two")
    assert first.timestamp.tzinfo is dt.UTC
    assert second.timestamp > first.timestamp
    assert abs(dt.datetime.now(dt.UTC) - second.timestamp) < dt.timedelta(seconds=5)


def test_events_are_frozen_and_keyword_only() -> None:
    event = ShutdownStarted(reason="done")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.reason = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ShutdownStarted("positional")  # type: ignore[call-arg, arg-type]
    assert isinstance(event, Event)


# --- the emitter -------------------------------------------------------------------------------


def test_emitter_calls_consumers_in_registration_order() -> None:
    calls: list[tuple[str, object]] = []
    emitter = Emitter()
    emitter.add_consumer(lambda e: calls.append(("first", e)))
    emitter.add_consumer(lambda e: calls.append(("second", e)))
    event = ShutdownStarted(reason="x")
    emitter.emit(event)
    assert calls == [("first", event), ("second", event)]


def test_emitter_filters_by_kinds_and_passes_layer_events_unchanged() -> None:
    engine: list[object] = []
    market: list[object] = []
    everything: list[object] = []
    emitter = Emitter()
    emitter.add_consumer(engine.append, kinds=(Event,))
    emitter.add_consumer(market.append, kinds=(ProposalReceived, AgreementSigned))
    emitter.add_consumer(everything.append)
    proposal = ProposalReceived(
        provider_id=PROVIDER_A, provider_name="alpha", proposal_id="p1", accepted=True
    )
    shutdown = ShutdownStarted(reason="x")
    invoice = InvoiceAccepted(invoice_id="inv", agreement_id=AGREEMENT_A, amount=Decimal(1))
    for event in (proposal, shutdown, invoice):
        emitter.emit(event)
    assert engine == [shutdown]
    assert market == [proposal]
    assert market[0] is proposal
    assert everything == [proposal, shutdown, invoice]


def test_failing_consumer_is_logged_once_and_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=EVENTS)
    heard: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("consumer bug")

    emitter = Emitter()
    emitter.add_consumer(broken)
    emitter.add_consumer(heard.append)
    first, second = ShutdownStarted(reason="1"), ShutdownStarted(reason="2")
    emitter.emit(first)
    emitter.emit(second)

    assert heard == [first, second]
    errors = [r for r in caplog.records if r.name == EVENTS and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert "broken" in errors[0].getMessage()
    later = [r for r in caplog.records if r.name == EVENTS and r.levelno == logging.DEBUG]
    assert len(later) == 1
    assert "failure 2" in later[0].getMessage()


def test_base_exceptions_from_consumers_propagate() -> None:
    class Stop(BaseException):
        pass

    def stopper(event: object) -> None:
        raise Stop

    heard: list[object] = []
    emitter = Emitter()
    emitter.add_consumer(stopper)
    emitter.add_consumer(heard.append)
    with pytest.raises(Stop):
        emitter.emit(ShutdownStarted(reason="x"))
    assert heard == []


def test_history_keeps_the_last_events() -> None:
    events = [ShutdownStarted(reason=str(i)) for i in range(5)]
    emitter = Emitter(keep=3)
    for event in events:
        emitter.emit(event)
    assert list(emitter.history) == events[2:]
    no_history = Emitter()
    no_history.emit(events[0])
    assert list(no_history.history) == []
    with pytest.raises(ValueError, match="keep"):
        Emitter(keep=-1)


def test_removed_consumer_hears_nothing_more() -> None:
    heard: list[object] = []
    emitter = Emitter()
    emitter.add_consumer(heard.append)
    emitter.emit(ShutdownStarted(reason="1"))
    emitter.remove_consumer(heard.append)
    emitter.emit(ShutdownStarted(reason="2"))
    assert len(heard) == 1


# --- per-event loggers -------------------------------------------------------------------------


def test_log_event_repr_logs_the_repr_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=EVENTS)
    event = ShutdownStarted(reason="block exited")
    log_event_repr(event)
    [record] = [r for r in caplog.records if r.name == EVENTS]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == repr(event)


def test_log_event_logs_a_readable_line_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=EVENTS)
    log_event(ShutdownStarted(reason="block exited"))
    log_event("plain object")
    records = [r for r in caplog.records if r.name == EVENTS]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert records[0].getMessage() == "ShutdownStarted: reason='block exited'"
    assert records[1].getMessage() == "plain object"


def test_log_event_is_silent_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=EVENTS)
    log_event(ShutdownStarted(reason="x"))
    log_event_repr(ShutdownStarted(reason="x"))
    assert [r for r in caplog.records if r.name == EVENTS] == []


# --- the summary -------------------------------------------------------------------------------


def test_summary_forwards_every_event_to_the_wrapped_consumer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=SUMMARY)
    heard: list[object] = []
    consumer = log_summary(heard.append)
    assert isinstance(consumer, SummaryLogger)
    events = [started(), object(), ShutdownStarted(reason="x")]
    for event in events:
        consumer(event)
    assert heard == events


def test_summary_still_counts_when_the_wrapped_consumer_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=SUMMARY)

    def broken(event: object) -> None:
        raise RuntimeError("wrapped bug")

    consumer = log_summary(broken)
    with pytest.raises(RuntimeError):
        consumer(ShutdownStarted(reason="cancelled"))
    assert [r.getMessage() for r in summary_lines(caplog)] == ["Shutting down: cancelled"]


def test_summary_golem_started_on_localnet(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(started())
    [record] = summary_lines(caplog)
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert "embedded LocalNet" in message
    assert "budget 5.5" in message
    assert "erc20-holesky-tglm" in message
    assert "subnet 'public'" in message


def test_summary_golem_started_on_a_daemon_hides_url_credentials(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(started(localnet=False, api_url="http://user:s3cret@yagna.example:7465/"))
    message = summary_lines(caplog)[0].getMessage()
    assert "the daemon at http://yagna.example:7465/" in message
    assert "s3cret" not in message
    assert "LocalNet" not in message


def test_summary_counts_providers_at_milestones(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    for index in range(12):
        for _ in range(3):  # repeated proposals from one provider count once
            summary(
                ProposalReceived(
                    provider_id=f"0x{index:040x}",
                    provider_name=f"p{index}",
                    proposal_id=f"prop-{index}-{_}",
                    accepted=True,
                )
            )
    assert [r.getMessage() for r in summary_lines(caplog)] == [
        "Received proposals from 1 provider so far",
        "Received proposals from 2 providers so far",
        "Received proposals from 5 providers so far",
        "Received proposals from 10 providers so far",
    ]


def test_summary_agreement_signed_and_activity_created(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(signed(AGREEMENT_A, PROVIDER_A, "alpha"))
    summary(
        ActivityCreated(
            agreement_id=AGREEMENT_A,
            activity_id="f" * 64,
            provider_id=PROVIDER_A,
            provider_name="alpha",
        )
    )
    signed_line, created = (r.getMessage() for r in summary_lines(caplog))
    assert (
        signed_line == f"Agreement signed with provider 'alpha' ({PROVIDER_A}): agreement 11111111…"
    )
    assert created == f"Activity ffffffff… created on provider 'alpha' ({PROVIDER_A})"


def test_summary_instance_running_and_terminated(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(state_changed("running"))
    summary(state_changed("stopping"))
    summary(state_changed("terminated", reason="the provider ended the activity"))
    running, terminated = (r.getMessage() for r in summary_lines(caplog))
    assert running == f"DateService instance i7 running on provider 'alpha' ({PROVIDER_A})"
    assert terminated == (
        f"DateService instance i7 terminated on provider 'alpha' ({PROVIDER_A}): "
        "the provider ended the activity"
    )


def test_summary_warns_when_the_provider_terminates(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    by_provider = AgreementTerminated(
        agreement_id=AGREEMENT_A,
        provider_id=PROVIDER_A,
        provider_name="alpha",
        terminator="Provider",
        code="Shutdown",
        message="provider is going offline",
    )
    by_us = attrs.evolve(by_provider, terminator="Requestor", code="Success", message="done")
    summary(by_provider)
    summary(by_us)
    [record] = summary_lines(caplog)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "'alpha'" in message
    assert "code Shutdown" in message
    assert "provider is going offline" in message


def test_summary_warns_about_billing_with_figures(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(signed(AGREEMENT_A, PROVIDER_A, "alpha"))
    caplog.clear()
    summary(
        DebitNoteAccepted(
            debit_note_id="dn0",
            agreement_id=AGREEMENT_A,
            activity_id=None,
            amount=Decimal("0.01"),
            increase=Decimal("0.01"),
        )
    )
    summary(
        DebitNoteRefused(
            debit_note_id="dn1",
            agreement_id=AGREEMENT_A,
            activity_id=None,
            amount=Decimal("0.125"),
            reason="BudgetExceeded",
            message="would exceed the budget",
        )
    )
    summary(
        InvoiceRejected(
            invoice_id="inv1",
            agreement_id=AGREEMENT_A,
            amount=Decimal("3.25"),
            amount_accepted=Decimal("1.5"),
            reason="AmountTooHigh",
            message="more than the debit notes",
            sent=True,
        )
    )
    summary(
        AgreementTerminatedForBilling(
            agreement_id=AGREEMENT_A,
            debit_note_id="dn2",
            code="TooManyDebitNotes",
            message="debit notes came too often",
            terminated=False,
        )
    )
    records = summary_lines(caplog)
    assert [r.levelno for r in records] == [logging.WARNING] * 3
    debit, invoice, terminated = (r.getMessage() for r in records)
    assert "Debit note dn1" in debit
    assert "'alpha'" in debit
    assert "amount 0.125" in debit
    assert "BudgetExceeded: would exceed the budget" in debit
    assert "Invoice inv1" in invoice
    assert "amount 3.25, acceptable 1.5" in invoice
    assert "AmountTooHigh" in invoice
    assert "rejection sent" in invoice
    assert "debit note dn2" in terminated
    assert "TooManyDebitNotes: debit notes came too often" in terminated
    assert "termination call failed" in terminated


@attrs.frozen
class CommandExecuted:
    """Stands in for the work layer's event, which the summary matches by class name."""

    activity_id: str
    agreement_id: str
    index: int
    command: str
    success: bool
    exit_code: int | None
    stdout: str | None
    stderr: str | None


def test_summary_warns_about_failed_commands_by_class_name(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(signed(AGREEMENT_A, PROVIDER_A, "alpha"))
    caplog.clear()
    ok = CommandExecuted(
        activity_id="act1",
        agreement_id=AGREEMENT_A,
        index=0,
        command="run /bin/date",
        success=True,
        exit_code=0,
        stdout="Mon\n",
        stderr=None,
    )
    failed = attrs.evolve(
        ok, index=1, command="run /bin/false", success=False, exit_code=3, stderr="boom\n"
    )
    summary(ok)
    summary(failed)
    [record] = summary_lines(caplog)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "run /bin/false" in message
    assert "exit code 3" in message
    assert "stderr: boom" in message
    assert "'alpha'" in message


def test_summary_restarts_health_checks_and_budget(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(
        ProposalReceived(
            provider_id=PROVIDER_B, provider_name="beta", proposal_id="p", accepted=True
        )
    )
    caplog.clear()
    summary(
        InstanceRestarting(
            cluster_id="c1",
            instance_id="i7",
            service_class="DateService",
            attempt=2,
            delay=1.5,
            avoided_provider=PROVIDER_B,
        )
    )
    summary(
        HealthProbeFailed(
            cluster_id="c1", instance_id="i7", activity_id="act1", failures=3, detail="timed out"
        )
    )
    summary(
        BudgetLimitReached(budget=Decimal("5.5"), projected=Decimal("6.25"), detail="instance i9")
    )
    restart, health, budget = summary_lines(caplog)
    assert restart.levelno == logging.INFO
    assert restart.getMessage() == (
        f"DateService instance i7 restarting (attempt 2) in 1.5s, "
        f"avoiding provider 'beta' ({PROVIDER_B})"
    )
    assert health.levelno == logging.WARNING
    assert "instance i7" in health.getMessage()
    assert "3 failures in a row: timed out" in health.getMessage()
    assert budget.levelno == logging.WARNING
    assert budget.getMessage() == (
        "Budget exhausted: projected spend 6.25 exceeds budget 5.5: instance i9"
    )


def test_summary_shutdown_started(summary: SummaryLogger, caplog: pytest.LogCaptureFixture) -> None:
    summary(ShutdownStarted(reason="block exited"))
    [record] = summary_lines(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == "Shutting down: block exited"


def test_summary_cost_table_at_shutdown(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(started())
    summary(signed(AGREEMENT_A, PROVIDER_A, "alpha"))
    summary(signed(AGREEMENT_B, PROVIDER_B, "beta"))
    caplog.clear()
    report = PaymentReport(
        allocation_id="alloc-1",
        budget=Decimal("5.5"),
        spent=Decimal("0.123456789012345678"),
        debit_notes_accepted=4,
        debit_notes_refused=0,
        invoices_accepted={AGREEMENT_A: Decimal("0.123456789012345678")},
        invoices_rejected=0,
        unpaid=(Unpaid(agreement_id=AGREEMENT_B, reason="InvoiceTimeout", amount=Decimal("2")),),
        allocation_released=True,
    )
    summary(ShutdownFinished(payment_report=report))
    messages = [r.getMessage() for r in summary_lines(caplog)]
    assert messages[-1] == "Golem engine has shut down"
    table = messages[0].splitlines()
    assert table[0] == "Cost summary:"
    header, row = table[1], table[2]
    assert header.split() == ["Provider", "Agreement", "Accepted"]
    assert row.split() == [
        "'alpha'",
        f"({PROVIDER_A})",
        "11111111…",
        "0.123456789012345678",
    ]
    # The columns line up: each header starts where its column starts.
    assert header.index("Agreement") == row.index("11111111…")
    assert header.rstrip().endswith("Accepted")
    assert len(header.rstrip()) == len(row.rstrip())
    assert "  Total spent: 0.123456789012345678 of budget 5.5 (2.2%)" in table
    assert (
        f"    agreement 22222222… with provider 'beta' ({PROVIDER_B}): InvoiceTimeout, amount 2"
        in table
    )
    assert table[-1] == "  Allocation alloc-1 released"


def test_summary_shutdown_without_payments_and_with_error(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    report = PaymentReport(
        allocation_id="alloc-2",
        budget=Decimal(1),
        spent=Decimal(0),
        debit_notes_accepted=0,
        debit_notes_refused=0,
        invoices_accepted={},
        invoices_rejected=0,
        unpaid=(),
        allocation_released=False,
    )
    summary(ShutdownFinished(payment_report=report, error="daemon unreachable"))
    error, costs, done = summary_lines(caplog)
    assert error.levelno == logging.WARNING
    assert "daemon unreachable" in error.getMessage()
    assert "no invoices were accepted" in costs.getMessage()
    assert "Allocation alloc-2 NOT released" in costs.getMessage()
    assert done.getMessage() == "Golem engine has shut down"
    caplog.clear()
    summary(ShutdownFinished(payment_report=None))
    messages = [r.getMessage() for r in summary_lines(caplog)]
    assert messages == [
        "No payments were made: the payment processor never started",
        "Golem engine has shut down",
    ]


def test_summary_ignores_unknown_objects(
    summary: SummaryLogger, caplog: pytest.LogCaptureFixture
) -> None:
    summary(object())
    summary(state_changed("stopping"))
    assert summary_lines(caplog) == []


# --- the default logger ------------------------------------------------------------------------


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("golem_trio")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)


def test_enable_default_logger_is_idempotent(
    package_logger: logging.Logger, tmp_path: Path
) -> None:
    before = len(package_logger.handlers)
    enable_default_logger()
    enable_default_logger()
    assert len(package_logger.handlers) == before + 1
    assert package_logger.level == logging.INFO
    log_file = tmp_path / "golem.log"
    enable_default_logger(level=logging.WARNING, log_file=str(log_file))
    enable_default_logger(level=logging.WARNING, log_file=str(log_file))
    assert len(package_logger.handlers) == before + 2
    assert package_logger.level == logging.DEBUG
    logging.getLogger("golem_trio.summary").debug("into the file only")
    for handler in package_logger.handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert text.count("into the file only") == 1
    assert "DEBUG golem_trio.summary] into the file only" in text


def test_enable_default_logger_writes_to_stderr(
    package_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    enable_default_logger(format_="%(levelname)s|%(message)s")
    logging.getLogger("golem_trio.summary").info("hello")
    logging.getLogger("golem_trio.summary").debug("too detailed")
    err = capsys.readouterr().err
    assert "INFO|hello" in err
    assert "too detailed" not in err


def test_api_request_lines_only_for_the_apis_asked(
    package_logger: logging.Logger, tmp_path: Path
) -> None:
    log_file = tmp_path / "api.log"
    enable_default_logger(log_file=str(log_file), debug_market_api=True)
    yagna = logging.getLogger("golem_trio.yagna")
    for path in ("/market-api/v1/demands", "/activity-api/v1/activity"):
        yagna.debug("%s %s %s -> %d in %.3fs", "op", "GET", path, 200, 0.01)
    yagna.info("%s %s %s failed (%s); retry %d in %.2fs", "op", "GET", "/payment-api/x", "e", 1, 1)
    for handler in package_logger.handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert "/market-api/v1/demands" in text
    assert "/activity-api/v1/activity" not in text
    assert "/payment-api/x" in text


def test_the_default_format_is_the_documented_one() -> None:
    assert _log.DEFAULT_FORMAT == "[%(asctime)s %(levelname)s %(name)s] %(message)s"


def test_a_failing_summary_says_so_once_and_keeps_forwarding(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=SUMMARY)

    def broken(self: SummaryLogger, event: object) -> None:
        raise RuntimeError("summary bug")

    monkeypatch.setattr(SummaryLogger, "_handle", broken)
    heard: list[object] = []
    consumer = log_summary(heard.append)
    consumer(ShutdownStarted(reason="1"))
    consumer(ShutdownStarted(reason="2"))
    assert len(heard) == 2
    [record] = summary_lines(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
