"""Agreement terms (:mod:`golem_trio.terms`): parsing offers and agreements, the linear pricing
model and its worst case, and the property that the market and billing agree on which terms
can be paid."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import golem_trio.market as market
import golem_trio.payment as payment
from golem_trio.market import OfferView, PriceCaps, cheapest
from golem_trio.terms import (
    ACCEPT_TIMEOUT,
    CPU_SEC,
    CPU_THREADS,
    DEBIT_NOTE_INTERVAL,
    DURATION_SEC,
    LINEAR_COEFFS,
    PAYMENT_TIMEOUT,
    PRICING_MODEL,
    USAGE_VECTOR,
    AgreementTerms,
    Pricing,
    Terms,
    TermsError,
    Tolerance,
)
from golem_trio.yagna import Agreement, AgreementState, Demand, Offer
from golem_trio.yagna._convert import decode

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PROVIDER = "0x" + "a" * 40
REQUESTOR = "0x" + "b" * 40
AGREEMENT = "ag-1"
STORAGE = "golem.usage.storage_gib"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def offer_props(**changes: Any) -> dict[str, Any]:
    """A well-formed offer; ``changes`` are by property name, ``None`` removes one."""
    props: dict[str, Any] = {
        PRICING_MODEL: "linear",
        LINEAR_COEFFS: [0.0001, 0.00005, 0.01],
        USAGE_VECTOR: [CPU_SEC, DURATION_SEC],
        CPU_THREADS: 4,
    }
    props.update(changes)
    return {k: v for k, v in props.items() if v is not None}


# --- the one error, the one set of names ------------------------------------------------------


def test_the_layers_share_the_names_and_the_error() -> None:
    assert payment.BillingTermsError is TermsError
    assert market.OfferError is TermsError
    assert issubclass(TermsError, ValueError)
    assert market.Pricing is Pricing
    assert payment.AgreementTerms is AgreementTerms
    assert payment.Tolerance is Tolerance
    assert (market.CPU_SEC, market.DURATION_SEC) == (CPU_SEC, DURATION_SEC)
    assert (payment.CPU_SEC, payment.DURATION_SEC) == (CPU_SEC, DURATION_SEC)
    assert (market.ACCEPT_TIMEOUT, market.DEBIT_NOTE_INTERVAL, market.PAYMENT_TIMEOUT) == (
        ACCEPT_TIMEOUT,
        DEBIT_NOTE_INTERVAL,
        PAYMENT_TIMEOUT,
    )


# --- Terms.from_properties: an offer on its own -----------------------------------------------


def test_offer_terms() -> None:
    terms = Terms.from_properties(
        offer_props(**{DEBIT_NOTE_INTERVAL: 120, ACCEPT_TIMEOUT: 240, PAYMENT_TIMEOUT: 18000})
    )
    assert terms.pricing == Pricing(
        counters=(CPU_SEC, DURATION_SEC),
        coefficients=(Decimal("0.0001"), Decimal("0.00005")),
        fixed=Decimal("0.01"),
    )
    assert terms.threads == 4
    assert (terms.debit_note_interval, terms.accept_timeout, terms.payment_timeout) == (
        120,
        240,
        18000,
    )
    # An offer on its own: a payment timeout it names is offered.
    assert terms.mid_agreement_payments
    bare = Terms.from_properties(offer_props())
    assert (bare.debit_note_interval, bare.accept_timeout, bare.payment_timeout) == (None,) * 3
    assert not bare.mid_agreement_payments


def test_the_pricing_model_may_be_left_out_or_nested() -> None:
    assert Terms.from_properties(offer_props(**{PRICING_MODEL: None})).pricing.fixed == Decimal(
        "0.01"
    )
    model = {"@tag": "linear", "linear": {"coeffs": [1, 2, 3]}}
    nested = {
        "golem": {
            "com": {"pricing": {"model": model}, "usage": {"vector": [CPU_SEC, DURATION_SEC]}},
            "inf": {"cpu": {"threads": 2}},
        }
    }
    terms = Terms.from_properties(nested)
    assert terms.pricing.coefficients == (Decimal(1), Decimal(2))
    assert terms.threads == 2
    with pytest.raises(TermsError, match="not linear"):
        Terms.from_properties({"golem": {"com": {"pricing": {"model": {"@tag": "fixed"}}}}})


def test_a_priced_counter_without_a_bound_is_refused() -> None:
    props = offer_props(
        **{USAGE_VECTOR: [CPU_SEC, STORAGE, DURATION_SEC], LINEAR_COEFFS: [0.0001, 0.5, 0, 0]}
    )
    with pytest.raises(TermsError) as info:
        Terms.from_properties(props)
    assert info.value.property == USAGE_VECTOR
    assert STORAGE in info.value.problem
    # The same counter, free, is fine (it costs nothing, whatever it counts).
    free = offer_props(
        **{USAGE_VECTOR: [CPU_SEC, STORAGE, DURATION_SEC], LINEAR_COEFFS: [0.0001, 0, 0, 0]}
    )
    assert Terms.from_properties(free).pricing.price_of(STORAGE) == 0


@pytest.mark.parametrize(
    ("changes", "prop", "problem"),
    [
        ({PRICING_MODEL: "fixed"}, PRICING_MODEL, "not linear"),
        ({LINEAR_COEFFS: None}, LINEAR_COEFFS, "missing"),
        ({LINEAR_COEFFS: []}, LINEAR_COEFFS, "not a non-empty list"),
        ({LINEAR_COEFFS: [0.1, 0.2]}, LINEAR_COEFFS, "2 coefficients for 2"),
        ({LINEAR_COEFFS: [0.1, "x", 0]}, LINEAR_COEFFS, "coefficient 1 is not a number"),
        ({LINEAR_COEFFS: [0.1, True, 0]}, LINEAR_COEFFS, "coefficient 1 is not a number"),
        ({LINEAR_COEFFS: [0.1, "NaN", 0]}, LINEAR_COEFFS, "coefficient 1 is not finite"),
        ({LINEAR_COEFFS: [0.1, -0.2, 0]}, LINEAR_COEFFS, "coefficient 1 is negative"),
        ({USAGE_VECTOR: CPU_SEC}, USAGE_VECTOR, "not a list"),
        ({USAGE_VECTOR: [CPU_SEC, 7]}, USAGE_VECTOR, "not a list of names"),
        ({USAGE_VECTOR: [CPU_SEC, CPU_SEC]}, USAGE_VECTOR, "named twice"),
        ({CPU_THREADS: None}, CPU_THREADS, "missing"),
        ({CPU_THREADS: "many"}, CPU_THREADS, "not a number"),
        ({CPU_THREADS: 0}, CPU_THREADS, "positive whole number"),
        ({CPU_THREADS: 2.5}, CPU_THREADS, "positive whole number"),
        ({DEBIT_NOTE_INTERVAL: 0}, DEBIT_NOTE_INTERVAL, "positive"),
        ({ACCEPT_TIMEOUT: "soon"}, ACCEPT_TIMEOUT, "not a number"),
        ({PAYMENT_TIMEOUT: -1}, PAYMENT_TIMEOUT, "positive"),
    ],
)
def test_unusable_offer_terms(changes: dict[str, Any], prop: str, problem: str) -> None:
    with pytest.raises(TermsError) as info:
        Terms.from_properties(offer_props(**changes))
    assert info.value.property == prop
    assert problem in info.value.problem
    assert str(info.value) == f"{prop}: {info.value.problem}"


# --- the pricing model and its worst case -----------------------------------------------------


def test_cost_of_a_usage_vector_and_of_named_counters() -> None:
    pricing = Pricing(
        counters=(DURATION_SEC, STORAGE, CPU_SEC),
        coefficients=(Decimal("0.5"), Decimal(0), Decimal(3)),
        fixed=Decimal("0.1"),
    )
    assert pricing.cost([Decimal(10), Decimal(7), Decimal(2)]) == Decimal("11.1")
    assert pricing.cost({CPU_SEC: 2, DURATION_SEC: 10.0}) == Decimal("11.1")
    assert pricing.cost({}) == Decimal("0.1")
    with pytest.raises(ValueError, match="zip"):
        pricing.cost([Decimal(1)])


def test_worst_case_over_a_window() -> None:
    terms = Terms(
        pricing=Pricing(
            counters=(CPU_SEC, STORAGE, DURATION_SEC),
            coefficients=(Decimal("0.0001"), Decimal(0), Decimal("0.00005")),
            fixed=Decimal("0.01"),
        ),
        threads=4,
    )
    assert terms.max_usage(CPU_SEC, Decimal(10)) == 40
    assert terms.max_usage(DURATION_SEC, Decimal(10)) == 10
    assert terms.max_usage(STORAGE, Decimal(10)) is None
    exact = Tolerance(relative=Decimal(0), absolute=Decimal(0))
    # 4 threads busy for 100 s: 400 CPU seconds and 100 s, plus the start price.
    assert terms.max_cost(Decimal(100), exact) == Decimal("0.01") + Decimal("0.04") + Decimal(
        "0.005"
    )
    tolerance = Tolerance()
    assert terms.max_rate(tolerance) == (Decimal("0.0004") + Decimal("0.00005")) * Decimal("1.01")
    for seconds in (0, 1, 60, 3600):
        elapsed = Decimal(seconds)
        assert terms.max_cost(elapsed, tolerance) == (
            terms.max_cost(Decimal(0), tolerance) + terms.max_rate(tolerance) * elapsed
        )


# --- AgreementTerms.from_agreement: both sides of an approved agreement -----------------------


def agreement_json(offer: dict[str, Any], demand: dict[str, Any] | None = None) -> dict[str, Any]:
    offer_props = {
        "golem.com.pricing.model": "linear",
        "golem.com.pricing.model.linear.coeffs": [0.0001, 0.00005, 0.01],
        "golem.com.usage.vector": [CPU_SEC, DURATION_SEC],
        "golem.com.scheme": "payu",
        "golem.com.scheme.payu.debit-note.interval-sec?": 120,
        "golem.com.payment.debit-notes.accept-timeout?": 240,
        "golem.com.scheme.payu.payment-timeout-sec?": 18000,
        "golem.inf.cpu.threads": 4,
        "golem.inf.cpu.cores": 2,
        "golem.inf.mem.gib": 8.0,
        "golem.runtime.name": "vm",
        "golem.node.id.name": "honest-provider",
        **offer,
    }
    demand_props = {
        "golem.srv.comp.expiration": 1767261600000,
        "golem.node.debug.subnet": "public",
        "golem.com.payment.chosen-platform": "erc20-holesky-tglm",
        "golem.com.scheme.payu.debit-note.interval-sec?": 120,
        "golem.com.payment.debit-notes.accept-timeout?": 180,
        "golem.com.scheme.payu.payment-timeout-sec?": 18000,
        **(demand or {}),
    }
    return {
        "agreementId": AGREEMENT,
        "demand": {
            "properties": {k: v for k, v in demand_props.items() if v is not None},
            "constraints": "(&(golem.inf.cpu.threads>=1)(golem.runtime.name=vm))",
            "demandId": "demand-1",
            "requestorId": REQUESTOR,
            "timestamp": "2026-01-01T00:00:00.000Z",
        },
        "offer": {
            "properties": {k: v for k, v in offer_props.items() if v is not None},
            "constraints": "(golem.srv.comp.expiration>1767225600000)",
            "offerId": "offer-1",
            "providerId": PROVIDER,
            "timestamp": "2025-12-31T23:59:00.000Z",
        },
        "validTo": "2026-01-01T10:00:00.000Z",
        "approvedDate": "2026-01-01T00:00:00.000Z",
        "state": "Approved",
        "timestamp": "2025-12-31T23:59:30.000Z",
        "appSessionId": "session-1",
    }


def parse(offer: dict[str, Any], demand: dict[str, Any] | None = None) -> AgreementTerms:
    agreement: Agreement = decode("getAgreement", agreement_json(offer, demand), Agreement)
    return AgreementTerms.from_agreement(agreement, REQUESTOR)


def test_from_agreement_realistic() -> None:
    terms = parse({})
    assert terms.agreement_id == AGREEMENT
    assert terms.provider_id == PROVIDER
    assert terms.requestor_id == REQUESTOR
    assert terms.pricing.counters == (CPU_SEC, DURATION_SEC)
    assert terms.pricing.coefficients == (Decimal("0.0001"), Decimal("0.00005"))
    assert terms.pricing.fixed == Decimal("0.01")
    assert terms.threads == 4
    assert terms.approved_at == T0
    assert terms.valid_to == at(10 * 3600)
    assert terms.debit_note_interval == 120
    assert terms.accept_timeout == 180  # the shorter of both sides
    assert terms.payment_timeout == 18000
    assert terms.mid_agreement_payments


def test_from_agreement_negotiated_values_pick_safe_side() -> None:
    terms = parse(
        {"golem.com.scheme.payu.debit-note.interval-sec?": 60},
        {"golem.com.scheme.payu.payment-timeout-sec?": None},
    )
    assert terms.debit_note_interval == 120  # the longer interval
    assert terms.payment_timeout is None  # only one side named it
    assert not terms.mid_agreement_payments
    none = parse(
        {
            "golem.com.scheme.payu.debit-note.interval-sec?": None,
            "golem.com.scheme.payu.payment-timeout-sec?": None,
        },
        {
            "golem.com.scheme.payu.debit-note.interval-sec?": None,
            "golem.com.scheme.payu.payment-timeout-sec?": None,
        },
    )
    assert none.debit_note_interval is None
    assert none.payment_timeout is None


def test_from_agreement_unknown_free_counter_is_fine() -> None:
    terms = parse(
        {
            "golem.com.usage.vector": [CPU_SEC, "golem.usage.storage_gib", DURATION_SEC],
            "golem.com.pricing.model.linear.coeffs": [0.0001, 0, 0.00005, 0.01],
        }
    )
    assert terms.pricing.counters[1] == "golem.usage.storage_gib"


@pytest.mark.parametrize(
    ("offer", "prop"),
    [
        ({"golem.com.pricing.model.linear.coeffs": None}, "golem.com.pricing.model.linear.coeffs"),
        ({"golem.com.pricing.model.linear.coeffs": [0.1]}, "golem.com.pricing.model.linear.coeffs"),
        (
            {"golem.com.pricing.model.linear.coeffs": [0.1, "x", 0]},
            "golem.com.pricing.model.linear.coeffs",
        ),
        (
            {"golem.com.pricing.model.linear.coeffs": [0.1, -1, 0]},
            "golem.com.pricing.model.linear.coeffs",
        ),
        (
            {"golem.com.pricing.model.linear.coeffs": [0.1, True, 0]},
            "golem.com.pricing.model.linear.coeffs",
        ),
        ({"golem.com.usage.vector": None}, "golem.com.usage.vector"),
        ({"golem.com.usage.vector": [CPU_SEC, CPU_SEC]}, "golem.com.usage.vector"),
        (
            {"golem.com.usage.vector": [CPU_SEC, "golem.usage.gib"]},
            "golem.com.usage.vector",
        ),
        ({"golem.com.pricing.model": "burn-rate"}, "golem.com.pricing.model"),
        ({"golem.inf.cpu.threads": None}, "golem.inf.cpu.threads"),
        ({"golem.inf.cpu.threads": 0}, "golem.inf.cpu.threads"),
        ({"golem.inf.cpu.threads": 2.5}, "golem.inf.cpu.threads"),
        (
            {"golem.com.scheme.payu.debit-note.interval-sec?": -5},
            "golem.com.scheme.payu.debit-note.interval-sec?",
        ),
    ],
)
def test_from_agreement_bad_properties(offer: dict[str, Any], prop: str) -> None:
    with pytest.raises(TermsError) as info:
        parse(offer)
    assert info.value.property == prop
    assert prop in str(info.value)


def test_from_agreement_requires_approval() -> None:
    data = agreement_json({})
    del data["approvedDate"]
    agreement: Agreement = decode("getAgreement", data, Agreement)
    with pytest.raises(TermsError, match="approvedDate"):
        AgreementTerms.from_agreement(agreement, REQUESTOR)


def test_from_agreement_nested_properties() -> None:
    data = agreement_json({})
    data["offer"]["properties"] = {
        "golem": {
            "com": {
                "pricing": {"model": {"linear": {"coeffs": [0.0001, 0.00005, 0.01]}}},
                "usage": {"vector": [CPU_SEC, DURATION_SEC]},
            },
            "inf": {"cpu": {"threads": 4}},
        }
    }
    agreement: Agreement = decode("getAgreement", data, Agreement)
    terms = AgreementTerms.from_agreement(agreement, REQUESTOR)
    assert terms.threads == 4
    assert terms.pricing.fixed == Decimal("0.01")
    assert terms.debit_note_interval == 120  # the demand's side only


# --- the market and billing agree -------------------------------------------------------------

#: Our side of an agreement, as :func:`golem_trio.market.build_demand` writes it.
DEMAND = {
    "golem.srv.comp.expiration": 1767261600000,
    "golem.com.payment.chosen-platform": "erc20-holesky-tglm",
    ACCEPT_TIMEOUT: 120,
    DEBIT_NOTE_INTERVAL: 120,
}


def approved(offer: dict[str, Any]) -> Agreement:
    return Agreement(
        agreement_id=AGREEMENT,
        demand=Demand(dict(DEMAND), "(golem.node.debug.subnet=public)", "d-1", REQUESTOR, T0),
        offer=Offer(dict(offer), "(golem.node.debug.subnet=public)", "o-1", PROVIDER, T0),
        valid_to=at(3600),
        state=AgreementState.APPROVED,
        timestamp=T0,
        approved_date=T0,
    )


ABSENT = object()


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` values, with about one ``bad`` one in eight."""
    return st.integers(0, 7).flatmap(lambda i: bad if i == 0 else good)


price = mostly(
    st.one_of(
        st.just(0),
        st.decimals(min_value=0, max_value=1, places=6).map(str),
        st.floats(min_value=0, max_value=1),
    ),
    st.sampled_from([-0.5, "x", "NaN", "Infinity", True, None, [1]]),
)
unbounded_price = st.sampled_from([0, 0, "0", 0.0, 0.5, "1e-9"])
duration = st.one_of(
    st.just(ABSENT),
    mostly(st.integers(1, 100_000), st.sampled_from([0, -5, 0.5, "300", "x", True, [1]])),
)


@st.composite
def offers(draw: st.DrawFn) -> dict[str, Any]:
    """Offer properties: mostly well-formed, each property sometimes not."""
    vector: Any = draw(
        mostly(
            st.lists(
                st.sampled_from([CPU_SEC, DURATION_SEC, STORAGE, "golem.usage.gib"]),
                unique=True,
                max_size=3,
            ),
            st.sampled_from([ABSENT, CPU_SEC, [CPU_SEC, 7], [CPU_SEC, CPU_SEC]]),
        )
    )
    if isinstance(vector, list) and all(isinstance(c, str) for c in vector):
        coeffs: Any = [
            draw(price if counter in (CPU_SEC, DURATION_SEC) else unbounded_price)
            for counter in vector
        ]
        coeffs.append(draw(price))
    else:
        coeffs = [draw(price) for _ in range(3)]
    coeffs = draw(mostly(st.just(coeffs), st.sampled_from([ABSENT, "0.1", [], coeffs[:-1]])))
    props: dict[str, Any] = {
        PRICING_MODEL: draw(
            mostly(
                st.sampled_from([ABSENT, "linear", {"@tag": "linear"}]),
                st.sampled_from(["fixed", 3]),
            )
        ),
        LINEAR_COEFFS: coeffs,
        USAGE_VECTOR: vector,
        CPU_THREADS: draw(
            mostly(st.integers(1, 64), st.sampled_from([ABSENT, 0, -1, "4", 2.5, True, "many"]))
        ),
        DEBIT_NOTE_INTERVAL: draw(duration),
        ACCEPT_TIMEOUT: draw(duration),
        PAYMENT_TIMEOUT: draw(duration),
        "golem.node.id.name": "prov",
    }
    return {k: v for k, v in props.items() if v is not ABSENT}


@settings(max_examples=1000, deadline=None)
@given(offers())
def test_the_market_accepts_exactly_the_terms_billing_can_parse(props: dict[str, Any]) -> None:
    offer = OfferView.from_properties(PROVIDER, props)
    chosen = offer.terms is not None
    # What the market would do with it: scored and let through price caps, or rejected.
    assert (cheapest()(offer) is not None) == chosen
    assert PriceCaps()(offer).accepted == chosen
    billed: AgreementTerms | None = None
    refusal = ""
    try:
        billed = AgreementTerms.from_agreement(approved(props), REQUESTOR)
    except TermsError as exc:
        refusal = str(exc)
    assert (billed is not None) == chosen
    if billed is None:
        event("refused")
        assert offer.terms_error == refusal  # and for the same reason
        return
    event("accepted")
    assert offer.terms is not None
    assert billed.pricing == offer.terms.pricing
    assert billed.threads == offer.terms.threads
