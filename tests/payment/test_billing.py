"""Billing rules: unit tests with concrete figures and Hypothesis properties.

Properties: any honest history is paid in full; any history with one dishonest item is never
paid more than the honest total, and the dishonest item is refused with the right reason.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import attrs
from hypothesis import event, given, settings
from hypothesis import strategies as st

from golem_trio.payment import (
    CPU_SEC,
    DURATION_SEC,
    INVALID_DEBIT_NOTE,
    TOO_MANY_DEBIT_NOTES,
    TOO_MANY_PAYABLE_DEBIT_NOTES,
    Accept,
    AgreementBilling,
    AgreementTerms,
    BillingLedger,
    Reject,
    Terminate,
    Tolerance,
)
from golem_trio.terms import Pricing
from golem_trio.yagna import DebitNote, DocumentStatus, Invoice, RejectionReason

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PROVIDER = "0x" + "a" * 40
REQUESTOR = "0x" + "b" * 40
AGREEMENT = "ag-1"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def linear(cpu: Decimal | str, duration: Decimal | str, fixed: Decimal | str) -> Pricing:
    return Pricing(
        counters=(CPU_SEC, DURATION_SEC),
        coefficients=(Decimal(cpu), Decimal(duration)),
        fixed=Decimal(fixed),
    )


def make_terms(**changes: Any) -> AgreementTerms:
    base = AgreementTerms(
        agreement_id=AGREEMENT,
        provider_id=PROVIDER,
        requestor_id=REQUESTOR,
        pricing=linear("0.0001", "0.00005", "0.01"),
        threads=4,
        approved_at=T0,
        valid_to=at(10 * 3600),
        debit_note_interval=Decimal(120),
        accept_timeout=Decimal(240),
        payment_timeout=None,
    )
    return attrs.evolve(base, **changes)


_counter = iter(range(10**9))


def note(
    amount: Decimal | str,
    ts: float,
    *,
    usage: list[float] | None = None,
    activity: str = "act-1",
    due: float | None = None,
    issuer: str = PROVIDER,
    agreement: str = AGREEMENT,
    note_id: str | None = None,
) -> DebitNote:
    return DebitNote(
        debit_note_id=note_id or f"dn-{next(_counter)}",
        issuer_id=issuer,
        recipient_id=REQUESTOR,
        payee_addr=PROVIDER,
        payer_addr=REQUESTOR,
        payment_platform="erc20-holesky-tglm",
        timestamp=at(ts),
        agreement_id=agreement,
        activity_id=activity,
        total_amount_due=Decimal(amount),
        status=DocumentStatus.RECEIVED,
        usage_counter_vector=usage,
        payment_due_date=None if due is None else at(due),
    )


def invoice(
    amount: Decimal | str,
    ts: float,
    *,
    issuer: str = PROVIDER,
    agreement: str = AGREEMENT,
    invoice_id: str | None = None,
) -> Invoice:
    return Invoice(
        invoice_id=invoice_id or f"inv-{next(_counter)}",
        issuer_id=issuer,
        recipient_id=REQUESTOR,
        payee_addr=PROVIDER,
        payer_addr=REQUESTOR,
        payment_platform="erc20-holesky-tglm",
        timestamp=at(ts),
        agreement_id=agreement,
        amount=Decimal(amount),
        payment_due_date=at(ts + 3600),
        status=DocumentStatus.RECEIVED,
    )


# --- rules with concrete figures ---------------------------------------------------------------

# Terms: cpu 0.0001/s, duration 0.00005/s, fixed 0.01, 4 threads, 120 s interval.
# At now = 100 s the bound uses 105 s (5 s grace): cpu <= 420, duration <= 105, so
# max = 0.01 + (0.042 + 0.00525) * 1.01 + 1e-9 = 0.057722501.
MAX_AT_100 = Decimal("0.057722501")


def test_max_cost_figures() -> None:
    billing = AgreementBilling(make_terms())
    assert isinstance(billing.check_debit_note(note(MAX_AT_100, 100), at(100)), Accept)
    above = AgreementBilling(make_terms())
    decision = above.check_debit_note(note(MAX_AT_100 + Decimal("1e-9"), 100), at(100))
    assert isinstance(decision, Terminate)
    assert decision.reason is RejectionReason.INCORRECT_AMOUNT
    assert decision.code == INVALID_DEBIT_NOTE
    assert decision.figures["max_amount"] == MAX_AT_100


def test_honest_note_with_usage_is_accepted_exactly() -> None:
    billing = AgreementBilling(make_terms())
    # 100 s of 3 busy threads: 0.01 + 300 * 0.0001 + 100 * 0.00005 = 0.045
    decision = billing.check_debit_note(note("0.045", 100, usage=[300.0, 100.0]), at(101))
    assert decision == Accept(Decimal("0.045"), decision.figures)
    assert billing.accepted_total == Decimal("0.045")


def test_amount_must_match_usage() -> None:
    billing = AgreementBilling(make_terms())
    decision = billing.check_debit_note(note("0.050", 100, usage=[300.0, 100.0]), at(101))
    assert isinstance(decision, Terminate)
    assert decision.reason is RejectionReason.INCORRECT_AMOUNT
    assert decision.figures["usage_price"] == Decimal("0.045")
    # within 1 % of the usage-based part (0.035): 0.00035 slack
    ok = AgreementBilling(make_terms())
    assert isinstance(
        ok.check_debit_note(note("0.04534", 100, usage=[300.0, 100.0]), at(101)), Accept
    )


def test_usage_beyond_time_bounds() -> None:
    billing = AgreementBilling(make_terms())
    # 4 threads for 100 s (+5 grace) allow 420 cpu-seconds (+1 %); 500 is too many.
    decision = billing.check_debit_note(note("0.065", 100, usage=[500.0, 100.0]), at(100))
    assert isinstance(decision, Terminate)
    assert decision.reason is RejectionReason.INCORRECT_AMOUNT
    assert decision.figures["counter"] == CPU_SEC
    dur = AgreementBilling(make_terms())
    decision = dur.check_debit_note(note("0.0175", 100, usage=[0.0, 150.0]), at(100))
    assert isinstance(decision, Terminate)
    assert decision.figures["counter"] == DURATION_SEC
    for bad in ([1.0], [-1.0, 1.0], [float("nan"), 1.0]):
        odd = AgreementBilling(make_terms())
        decision = odd.check_debit_note(note("0.01", 100, usage=bad), at(100))
        assert isinstance(decision, Terminate)
        assert decision.reason is RejectionReason.INCORRECT_AMOUNT


def test_activity_start_narrows_the_bound() -> None:
    billing = AgreementBilling(make_terms())
    billing.activity_started("act-1", at(50))
    # 100 s since the activity started (+5 grace): 420 cpu-seconds at most.
    decision = billing.check_debit_note(note("0.04", 150, usage=[500.0, 0.0]), at(150))
    assert isinstance(decision, Terminate)
    assert decision.figures["elapsed_sec"] == Decimal(105)


def test_the_first_note_is_paced_from_an_announced_start() -> None:
    billing = AgreementBilling(make_terms())
    billing.activity_started("act-1", at(50))
    decision = billing.check_debit_note(note("0.01", 100), at(100))
    assert isinstance(decision, Terminate)
    assert decision.code == TOO_MANY_DEBIT_NOTES
    # Without an announced start the first note is only bounded by the elapsed time.
    assert isinstance(
        AgreementBilling(make_terms()).check_debit_note(note("0.01", 100), at(100)), Accept
    )


def test_an_invoice_adds_at_most_what_accrued_since_the_last_note() -> None:
    terms = make_terms()
    billing = AgreementBilling(terms)
    assert isinstance(billing.check_debit_note(note("0.03", 120), at(120)), Accept)
    billing.agreement_ended(at(130))
    # 10 s after the last note (+5 grace) can add at most max_cost(15) - fixed.
    ceiling = Decimal("0.03") + terms.max_cost(Decimal(15), Tolerance()) - terms.pricing.fixed
    over = invoice(str(ceiling + Decimal("0.001")), 130)
    decision = billing.check_invoice(over, at(130))
    assert isinstance(decision, Reject)
    assert decision.reason is RejectionReason.INCORRECT_AMOUNT


def test_amounts_never_decrease() -> None:
    billing = AgreementBilling(make_terms())
    assert isinstance(billing.check_debit_note(note("0.03", 120), at(120)), Accept)
    decision = billing.check_debit_note(note("0.02", 240), at(240))
    assert isinstance(decision, Terminate)
    assert decision.reason is RejectionReason.BAD_SERVICE
    assert decision.code == INVALID_DEBIT_NOTE
    assert billing.accepted_total == Decimal("0.03")
    # another activity has its own cumulative amount
    assert isinstance(
        billing.check_debit_note(note("0.02", 240, activity="act-2"), at(240)), Accept
    )


def test_notes_no_faster_than_interval() -> None:
    billing = AgreementBilling(make_terms())
    assert isinstance(billing.check_debit_note(note("0.02", 120), at(120)), Accept)
    # 80 % of 120 s = 96 s
    too_fast = billing.check_debit_note(note("0.03", 215), at(215))
    assert isinstance(too_fast, Terminate)
    assert too_fast.reason is RejectionReason.BAD_SERVICE
    assert too_fast.code == TOO_MANY_DEBIT_NOTES
    assert too_fast.figures["min_gap_sec"] == Decimal(96)
    assert isinstance(billing.check_debit_note(note("0.03", 216), at(216)), Accept)


def test_payable_notes_need_mid_agreement_payments() -> None:
    billing = AgreementBilling(make_terms())
    decision = billing.check_debit_note(note("0.02", 120, due=120 + 3600), at(120))
    assert isinstance(decision, Terminate)
    assert decision.reason is RejectionReason.BAD_SERVICE
    assert decision.code == TOO_MANY_PAYABLE_DEBIT_NOTES


def test_payable_notes_pace_and_due_date() -> None:
    billing = AgreementBilling(make_terms(payment_timeout=Decimal(600)))
    assert isinstance(billing.check_debit_note(note("0.02", 120, due=720), at(120)), Accept)
    # the next payable note before 80 % of 600 s
    early = billing.check_debit_note(note("0.03", 240, due=840), at(240))
    assert isinstance(early, Terminate)
    assert early.code == TOO_MANY_PAYABLE_DEBIT_NOTES
    # a due date sooner than agreed
    soon = billing.check_debit_note(note("0.05", 700, due=710), at(700))
    assert isinstance(soon, Terminate)
    assert soon.code == TOO_MANY_PAYABLE_DEBIT_NOTES
    assert isinstance(billing.check_debit_note(note("0.05", 701, due=1301), at(701)), Accept)


def test_wrong_issuer_recipient_or_agreement() -> None:
    billing = AgreementBilling(make_terms())
    for doc in (note("0.01", 10, issuer="0xevil"), note("0.01", 10, agreement="other")):
        decision = billing.check_debit_note(doc, at(10))
        assert isinstance(decision, Reject)
        assert decision.reason is RejectionReason.UNSOLICITED_SERVICE
    stranger = attrs.evolve(note("0.01", 10), recipient_id="0xsomeone")
    decision = billing.check_debit_note(stranger, at(10))
    assert isinstance(decision, Reject)
    bad_invoice = billing.check_invoice(invoice("0.01", 10, issuer="0xevil"), at(10))
    assert isinstance(bad_invoice, Reject)
    assert bad_invoice.reason is RejectionReason.UNSOLICITED_SERVICE
    assert not billing.invoice_received  # a forged invoice does not close the agreement
    ledger = BillingLedger()
    ledger.add(make_terms())
    unknown = ledger.check_debit_note(note("0.01", 10, agreement="nobody"), at(10))
    assert isinstance(unknown, Reject)
    assert unknown.reason is RejectionReason.UNSOLICITED_SERVICE
    assert ledger.records[-1].agreement_id == "nobody"


def test_invoice_rules() -> None:
    billing = AgreementBilling(make_terms())
    assert isinstance(billing.check_debit_note(note("0.03", 120), at(120)), Accept)
    billing.agreement_ended(at(200))
    low = billing.check_invoice(invoice("0.02", 300), at(300))
    assert isinstance(low, Reject)
    assert low.reason is RejectionReason.INCORRECT_AMOUNT
    assert low.amount_accepted == Decimal("0.03")

    billing = AgreementBilling(make_terms())
    billing.agreement_ended(at(100))
    # the end at 100 s caps the bound even though the invoice comes at 1000 s
    high = billing.check_invoice(invoice(MAX_AT_100 + Decimal("0.001"), 1000), at(1000))
    assert isinstance(high, Reject)
    assert high.reason is RejectionReason.INCORRECT_AMOUNT
    assert high.figures["max_amount"] == MAX_AT_100

    billing = AgreementBilling(make_terms())
    billing.agreement_ended(at(100))
    first = invoice(MAX_AT_100, 1000)
    assert billing.check_invoice(first, at(1000)) == Accept(
        MAX_AT_100, billing.records[0].decision.figures
    )
    assert billing.check_invoice(first, at(1001)) is billing.records[0].decision  # idempotent
    second = billing.check_invoice(invoice("0.001", 1002), at(1002))
    assert isinstance(second, Reject)
    assert second.reason is RejectionReason.UNSOLICITED_SERVICE
    late = billing.check_debit_note(note("0.02", 1003), at(1003))
    assert isinstance(late, Reject)
    assert late.reason is RejectionReason.UNSOLICITED_SERVICE
    assert billing.accepted_total == MAX_AT_100
    assert [r.kind for r in billing.records] == ["invoice", "invoice", "debit_note"]


def test_strict_activities() -> None:
    billing = AgreementBilling(make_terms(), strict_activities=True)
    billing.activity_started("act-1", T0)
    assert isinstance(billing.check_debit_note(note("0.02", 120), at(120)), Accept)
    invented = billing.check_debit_note(note("0.02", 120, activity="act-9"), at(120))
    assert isinstance(invented, Terminate)
    assert invented.reason is RejectionReason.UNSOLICITED_SERVICE
    # a refused note does not make its activity count towards the invoice's bound
    billing.agreement_ended(at(100))
    too_much = billing.check_invoice(invoice(MAX_AT_100 * 2, 200), at(200))
    assert isinstance(too_much, Reject)
    assert too_much.figures["activities"] == 1


def test_duplicate_note_gets_the_same_decision() -> None:
    billing = AgreementBilling(make_terms())
    doc = note("0.02", 120, note_id="dn-dup")
    first = billing.check_debit_note(doc, at(120))
    assert isinstance(first, Accept)
    assert billing.check_debit_note(doc, at(130)) is first
    assert len(billing.records) == 1
    # a forged copy of a real note's id does not decide for the real one
    fresh = AgreementBilling(make_terms())
    forged = attrs.evolve(doc, issuer_id="0xevil")
    assert isinstance(fresh.check_debit_note(forged, at(120)), Reject)
    assert isinstance(fresh.check_debit_note(doc, at(120)), Accept)


def test_valid_to_caps_the_bound() -> None:
    billing = AgreementBilling(make_terms(valid_to=at(100)))
    decision = billing.check_debit_note(note(MAX_AT_100, 200), at(200))
    assert isinstance(decision, Accept)
    over = AgreementBilling(make_terms(valid_to=at(100)))
    decision = over.check_debit_note(note(MAX_AT_100 + Decimal("0.0001"), 200), at(200))
    assert isinstance(decision, Terminate)


# --- property tests ----------------------------------------------------------------------------


@attrs.frozen
class Doc:
    kind: str  # "note" or "invoice"
    doc: DebitNote | Invoice
    now: dt.datetime


@attrs.frozen
class History:
    terms: AgreementTerms
    starts: dict[str, float]
    docs: list[Doc]
    honest_total: Decimal
    end: float


def _price(terms: AgreementTerms, usage: list[float]) -> Decimal:
    return terms.pricing.fixed + sum(
        (c * Decimal(str(u)) for c, u in zip(terms.pricing.coefficients, usage, strict=True)),
        Decimal(0),
    )


@st.composite
def histories(draw: st.DrawFn) -> History:
    scale = Decimal("1e-9")
    cpu_c = draw(st.integers(0, 10**6)) * scale
    dur_c = draw(st.integers(0, 10**6)) * scale
    fixed = draw(st.integers(0, 10**8)) * scale
    threads = draw(st.integers(1, 16))
    interval = draw(st.integers(30, 600))
    payment_timeout = draw(st.none() | st.integers(60, 3600))
    terms = make_terms(
        pricing=linear(cpu_c, dur_c, fixed),
        threads=threads,
        debit_note_interval=Decimal(interval),
        payment_timeout=None if payment_timeout is None else Decimal(payment_timeout),
        valid_to=None,
    )
    notes: list[tuple[float, DebitNote]] = []
    starts: dict[str, float] = {}
    last_payable: float | None = None
    finals: list[tuple[str, float, float]] = []
    for index in range(draw(st.integers(1, 3))):
        activity = f"act-{index}"
        start = float(draw(st.integers(0, 100)))
        starts[activity] = start
        busy = draw(st.floats(0, 1))
        ts = start
        for _ in range(draw(st.integers(0, 5))):
            ts += interval + draw(st.integers(0, 120))
            elapsed = ts - start
            usage = [round(busy * threads * elapsed, 3), elapsed]
            notes.append((ts, note(_price(terms, usage), ts, usage=usage, activity=activity)))
        finals.append((activity, busy, ts))
    notes.sort(key=lambda pair: pair[0])
    docs: list[Doc] = []
    for ts, doc in notes:
        if payment_timeout is not None and (
            last_payable is None or ts - last_payable >= payment_timeout
        ):
            doc = attrs.evolve(doc, payment_due_date=at(ts + payment_timeout))
            last_payable = ts
        docs.append(Doc("note", doc, at(ts + draw(st.integers(0, 3)))))
    end = max([ts for ts, _ in notes] + list(starts.values())) + draw(st.integers(0, 200))
    total = Decimal(0)
    for activity, busy, _ in finals:
        elapsed = end - starts[activity]
        total += _price(terms, [round(busy * threads * elapsed, 3), elapsed])
    docs.append(Doc("invoice", invoice(total, end), at(end + draw(st.integers(0, 60)))))
    return History(terms, starts, docs, total, end)


def _ledger(history: History) -> tuple[BillingLedger, AgreementBilling]:
    ledger = BillingLedger(strict_activities=True)
    billing = ledger.add(history.terms)
    for activity, start in history.starts.items():
        billing.activity_started(activity, at(start))
    return ledger, billing


def _feed(ledger: BillingLedger, item: Doc) -> Accept | Reject | Terminate:
    if isinstance(item.doc, DebitNote):
        return ledger.check_debit_note(item.doc, item.now)
    return ledger.check_invoice(item.doc, item.now)


def _amount(doc: DebitNote | Invoice) -> Decimal:
    return doc.total_amount_due if isinstance(doc, DebitNote) else doc.amount


@settings(max_examples=500, deadline=None)
@given(histories())
def test_honest_history_is_paid_in_full(history: History) -> None:
    ledger, billing = _ledger(history)
    for item in history.docs:
        decision = _feed(ledger, item)
        assert isinstance(decision, Accept), decision
        assert decision.amount == _amount(item.doc)
    assert billing.accepted_total == history.honest_total
    assert len(ledger.records) == len(history.docs)


DISHONEST = [
    "inflated",
    "beyond_bounds",
    "too_fast",
    "payable",
    "second_invoice",
    "note_after_invoice",
    "wrong_issuer",
    "wrong_agreement",
    "decreasing",
    "invoice_above_max",
]


CODES = {"too_fast": TOO_MANY_DEBIT_NOTES, "payable": TOO_MANY_PAYABLE_DEBIT_NOTES}


def _bound(terms: AgreementTerms, seconds: float) -> Decimal:
    """An independent, generous upper bound of one activity's honest cost."""
    t = Decimal(str(seconds))
    cpu, duration = terms.pricing.coefficients
    return terms.pricing.fixed + cpu * terms.threads * t + duration * t


@st.composite
def dishonest(draw: st.DrawFn) -> tuple[History, list[Doc], int, str, RejectionReason, type]:
    history = draw(histories())
    kind = draw(st.sampled_from(DISHONEST))
    docs = list(history.docs)
    terms = history.terms
    note_indices = [i for i, d in enumerate(docs) if d.kind == "note"]
    inv = docs[-1]
    assert isinstance(inv.doc, Invoice)
    needs_note = ("inflated", "beyond_bounds", "payable", "wrong_issuer", "wrong_agreement")
    if (kind in needs_note or kind in ("decreasing", "too_fast")) and not note_indices:
        kind = "invoice_above_max"
    if kind == "decreasing":
        # needs an earlier note of the same activity
        pairs = [
            (i, j)
            for i in note_indices
            for j in note_indices
            if j < i and docs[i].doc.activity_id == docs[j].doc.activity_id  # type: ignore[union-attr]
        ]
        if not pairs:
            kind = "second_invoice"
    index: int
    if kind == "inflated":
        index = draw(st.sampled_from(note_indices))
        item = docs[index]
        doc = item.doc
        assert isinstance(doc, DebitNote)
        docs[index] = attrs.evolve(
            item, doc=attrs.evolve(doc, total_amount_due=doc.total_amount_due * 2 + 1)
        )
        return history, docs, index, kind, RejectionReason.INCORRECT_AMOUNT, Terminate
    if kind == "beyond_bounds":
        index = draw(st.sampled_from(note_indices))
        item = docs[index]
        doc = item.doc
        assert isinstance(doc, DebitNote)
        elapsed = (item.now - T0).total_seconds() + 60
        # Never below the honest usage, so the amount does not fall (a different rule).
        cpu, duration = doc.usage_counter_vector or [0.0, 0.0]
        usage = draw(
            st.sampled_from(
                [
                    [terms.threads * elapsed * 2, duration],
                    [cpu, elapsed * 2],
                    [terms.threads * elapsed * 2, elapsed * 2],
                ]
            )
        )
        new = attrs.evolve(doc, usage_counter_vector=usage, total_amount_due=_price(terms, usage))
        docs[index] = attrs.evolve(item, doc=new)
        return history, docs, index, kind, RejectionReason.INCORRECT_AMOUNT, Terminate
    if kind == "payable":
        index = draw(st.sampled_from(note_indices))
        item = docs[index]
        doc = item.doc
        assert isinstance(doc, DebitNote)
        due = doc.timestamp + dt.timedelta(seconds=1)  # payable now, or due far too soon
        docs[index] = attrs.evolve(item, doc=attrs.evolve(doc, payment_due_date=due))
        return history, docs, index, kind, RejectionReason.BAD_SERVICE, Terminate
    if kind in ("wrong_issuer", "wrong_agreement"):
        index = draw(st.sampled_from(note_indices))
        item = docs[index]
        doc = item.doc
        assert isinstance(doc, DebitNote)
        change = {"issuer_id": "0xevil"} if kind == "wrong_issuer" else {"agreement_id": "ag-x"}
        docs[index] = attrs.evolve(item, doc=attrs.evolve(doc, **change))
        return history, docs, index, kind, RejectionReason.UNSOLICITED_SERVICE, Reject
    if kind == "decreasing":
        index, earlier = draw(st.sampled_from(pairs))
        item = docs[index]
        doc = item.doc
        prev = docs[earlier].doc
        assert isinstance(doc, DebitNote)
        assert isinstance(prev, DebitNote)
        lower = prev.total_amount_due / 2 if prev.total_amount_due > 0 else Decimal(-1)
        new = attrs.evolve(doc, total_amount_due=lower, usage_counter_vector=None)
        docs[index] = attrs.evolve(item, doc=new)
        return history, docs, index, kind, RejectionReason.BAD_SERVICE, Terminate
    if kind == "too_fast":
        j = draw(st.sampled_from(note_indices))
        prev = docs[j].doc
        assert isinstance(prev, DebitNote)
        ts = (prev.timestamp - T0).total_seconds() + float(terms.debit_note_interval or 0) * 0.5
        start = history.starts[prev.activity_id]
        elapsed = ts - start
        usage = [0.0, elapsed]
        extra = note(_price(terms, usage), ts, usage=usage, activity=prev.activity_id)
        docs.insert(j + 1, Doc("note", extra, at(ts)))
        return history, docs, j + 1, kind, RejectionReason.BAD_SERVICE, Terminate
    if kind == "second_invoice":
        extra = invoice(inv.doc.amount, history.end + 1)
        docs.append(Doc("invoice", extra, inv.now + dt.timedelta(seconds=1)))
        return history, docs, len(docs) - 1, kind, RejectionReason.UNSOLICITED_SERVICE, Reject
    if kind == "note_after_invoice":
        activity = next(iter(history.starts))
        extra = note(inv.doc.amount, history.end + 1000, activity=activity)
        docs.append(Doc("note", extra, at(history.end + 1000)))
        return history, docs, len(docs) - 1, kind, RejectionReason.UNSOLICITED_SERVICE, Reject
    # invoice above the maximum honest cost
    seconds = (inv.now - T0).total_seconds() + 60
    bound = sum((_bound(terms, seconds) for _ in history.starts), Decimal(0))
    docs[-1] = attrs.evolve(inv, doc=attrs.evolve(inv.doc, amount=bound * 2 + 1))
    return history, docs, len(docs) - 1, kind, RejectionReason.INCORRECT_AMOUNT, Reject


@settings(max_examples=1500, deadline=None)
@given(dishonest())
def test_one_dishonest_item_is_refused_and_never_overpaid(
    case: tuple[History, list[Doc], int, str, RejectionReason, type],
) -> None:
    history, docs, bad, kind, reason, refusal = case
    event(kind)
    ledger, billing = _ledger(history)
    for i, item in enumerate(docs):
        decision = _feed(ledger, item)
        if i == bad:
            assert isinstance(decision, refusal), (kind, decision)
            assert decision.reason is reason, (kind, decision)
            if isinstance(decision, Terminate):
                assert decision.code == CODES.get(kind, INVALID_DEBIT_NOTE), (kind, decision)
            assert decision.message
        elif i < bad:
            assert isinstance(decision, Accept), (kind, decision)
    assert ledger.accepted_total <= history.honest_total
    assert billing.accepted_total <= history.honest_total
    assert len(ledger.records) == len(docs)
