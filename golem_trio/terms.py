"""Agreement terms: what an offer, and the agreement signed on it, say about money.

The market reads them to choose offers and payment reads them to pay, both with one parser,
:meth:`Terms.from_properties`, so that an offer the market may choose is one that billing can
pay, and the other way round:

* :class:`Pricing`: the linear pricing model, ``fixed + Σ coefficient_i · usage_i`` over the
  usage vector (``golem.com.usage.vector``);
* :class:`Terms`: the pricing, the provider's thread count and the negotiated payment terms
  (debit-note interval, debit-note accept timeout, payment timeout), and the most an honest
  provider can charge in a given time;
* :class:`AgreementTerms`: the terms of one approved agreement, with its parties and its
  approval and end (:meth:`AgreementTerms.from_agreement`);
* :class:`Tolerance`: the slack billing grants honest providers;
* :func:`terms_shortfall`: whether a provider's answer to our negotiable terms is as good or
  better for the requestor (the market signs only such answers, and billing reads the
  agreement made of them);
* :class:`TermsError`: terms that are missing or unusable, naming the property at fault.

**Usage counters.** Only :data:`CPU_SEC` and :data:`DURATION_SEC` (:data:`BOUNDED_COUNTERS`)
are bounded by the time that passed (and the thread count), so only they may have a price. A
non-zero price on any other counter makes the terms unusable: nothing would bound what such a
counter costs. An offer with one is never chosen and an agreement with one is not paid. Other
counters may be in the usage vector at price zero.

Properties are read flat (``"golem.com.usage.vector"``) or nested
(``{"golem": {"com": {"usage": {"vector": ...}}}}``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

import attrs

from golem_trio.yagna import Agreement

from ._errors import GolemError

__all__ = [
    "ACCEPT_TIMEOUT",
    "BOUNDED_COUNTERS",
    "CPU_SEC",
    "CPU_THREADS",
    "DEBIT_NOTE_INTERVAL",
    "DURATION_SEC",
    "LINEAR_COEFFS",
    "MAX_INTERVAL_FACTOR",
    "NEGOTIABLE_TERMS",
    "PAYMENT_TIMEOUT",
    "PRICING_MODEL",
    "USAGE_VECTOR",
    "AgreementTerms",
    "Pricing",
    "Terms",
    "TermsError",
    "Tolerance",
    "terms_shortfall",
]

PRICING_MODEL: Final = "golem.com.pricing.model"
LINEAR_COEFFS: Final = "golem.com.pricing.model.linear.coeffs"
USAGE_VECTOR: Final = "golem.com.usage.vector"
CPU_THREADS: Final = "golem.inf.cpu.threads"
DEBIT_NOTE_INTERVAL: Final = "golem.com.scheme.payu.debit-note.interval-sec?"
PAYMENT_TIMEOUT: Final = "golem.com.scheme.payu.payment-timeout-sec?"
ACCEPT_TIMEOUT: Final = "golem.com.payment.debit-notes.accept-timeout?"

#: The negotiable terms the market compares between its counter and the provider's Draft.
NEGOTIABLE_TERMS: Final = (ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, PAYMENT_TIMEOUT)
#: A provider may answer with a debit-note interval up to this many times the one asked for.
MAX_INTERVAL_FACTOR: Final = Decimal(2)

CPU_SEC: Final = "golem.usage.cpu_sec"
DURATION_SEC: Final = "golem.usage.duration_sec"
#: The usage counters bounded by elapsed time: the only ones that may have a price.
BOUNDED_COUNTERS: Final = frozenset({CPU_SEC, DURATION_SEC})


class TermsError(GolemError, ValueError):
    """An offer's or agreement's pricing or payment terms are missing or unusable.

    ``property`` names the property at fault and ``problem`` says what is wrong with it.
    """

    def __init__(self, prop: str, problem: str) -> None:
        super().__init__(f"{prop}: {problem}")
        self.property = prop
        self.problem = problem


@attrs.frozen
class Tolerance:
    """Slack granted to honest providers.

    ``relative`` multiplies usage bounds and usage-based costs (float rounding, timers);
    ``absolute`` is added to every amount comparison, in GLM; ``grace`` is added to elapsed time
    (clock skew, the time a document takes to reach us); ``interval_ratio`` is the fraction of the
    negotiated interval that two notes of one activity must be apart at least.
    """

    relative: Decimal = Decimal("0.01")
    absolute: Decimal = Decimal("0.000000001")
    grace: dt.timedelta = dt.timedelta(seconds=5)
    interval_ratio: Decimal = Decimal("0.8")


# --- reading properties ------------------------------------------------------------------------


def _lookup(props: Mapping[str, Any], key: str) -> Any:
    """A flat dotted key, or the same path through nested objects."""
    if key in props:
        return props[key]
    node: Any = props
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _number(prop: str, value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TermsError(prop, f"{what} is not a number: {value!r}")
    try:
        # str() first so that 0.0001 reads as Decimal("0.0001"), not its binary expansion.
        number = Decimal(str(value))
    except InvalidOperation:
        raise TermsError(prop, f"{what} is not a number: {value!r}") from None
    if not number.is_finite():
        raise TermsError(prop, f"{what} is not finite: {value!r}")
    return number


def _seconds(
    sides: tuple[Mapping[str, Any], ...], prop: str, pick: Literal["min", "max"]
) -> Decimal | None:
    """A negotiated duration in seconds: ``pick`` the larger or smaller of the sides' values."""
    values = [_number(prop, v, "the value") for p in sides if (v := _lookup(p, prop)) is not None]
    if not values:
        return None
    if any(v <= 0 for v in values):
        raise TermsError(prop, "must be a positive number of seconds")
    return max(values) if pick == "max" else min(values)


def terms_shortfall(wanted: Mapping[str, Any], offered: Mapping[str, Any]) -> str | None:
    """Why the negotiable terms ``offered`` (a provider's Draft) are worse for the requestor than
    ``wanted`` (our counter), or ``None`` when they are as good or better.

    For each term ``wanted`` states, ``offered`` must state it too, as a positive number of
    seconds, and:

    - the debit-note accept timeout may be longer (more time to accept), not shorter;
    - the debit-note interval may be longer (fewer notes), up to :data:`MAX_INTERVAL_FACTOR`
      times the one asked for, not shorter;
    - the payment timeout may be longer (paid later), not shorter.

    Terms ``wanted`` leaves open are the provider's. :meth:`Terms.from_properties` reads the
    agreement made of such a Draft with the safer value of each term, so billing stays within
    what the requestor asked for.
    """
    for prop in NEGOTIABLE_TERMS:
        if _lookup(wanted, prop) is None:
            continue
        ours = _number(prop, _lookup(wanted, prop), "the value")
        raw = _lookup(offered, prop)
        if raw is None:
            return f"{prop}: missing, {ours} s asked for"
        try:
            theirs = _number(prop, raw, "the value")
        except TermsError as exc:
            return str(exc)
        if theirs < ours:
            return f"{prop}: {theirs} s is shorter than the {ours} s asked for"
        if prop == DEBIT_NOTE_INTERVAL and theirs > ours * MAX_INTERVAL_FACTOR:
            return (
                f"{prop}: {theirs} s is more than {MAX_INTERVAL_FACTOR} times the {ours} s "
                "asked for"
            )
    return None


# --- the pricing model -------------------------------------------------------------------------


@attrs.frozen
class Pricing:
    """A linear price: ``fixed + Σ coefficients[i] · usage[counters[i]]``.

    ``counters`` is the usage vector (``golem.com.usage.vector``), ``coefficients`` the price
    per unit of each counter (``golem.com.pricing.model.linear.coeffs`` without its last entry)
    and ``fixed`` that last entry, charged once per activity.
    """

    counters: tuple[str, ...]
    coefficients: tuple[Decimal, ...]
    fixed: Decimal

    @property
    def per_counter(self) -> dict[str, Decimal]:
        return dict(zip(self.counters, self.coefficients, strict=True))

    def price_of(self, counter: str) -> Decimal:
        """The price per unit of ``counter``; zero when the offer does not bill it."""
        return self.per_counter.get(counter, Decimal(0))

    @property
    def cpu_sec(self) -> Decimal:
        return self.price_of(CPU_SEC)

    @property
    def duration_sec(self) -> Decimal:
        return self.price_of(DURATION_SEC)

    def cost(
        self, usage: Mapping[str, Decimal | float | int] | Sequence[Decimal | float | int]
    ) -> Decimal:
        """The linear cost of one activity's ``usage``: a mapping of counters to amounts
        (counters missing from it count as zero), or a usage vector (one amount per counter, in
        the order of :attr:`counters`, as debit notes report it)."""
        if isinstance(usage, Mapping):
            amounts = [usage.get(counter, 0) for counter in self.counters]
        else:
            amounts = list(usage)
        total = self.fixed
        for coefficient, used in zip(self.coefficients, amounts, strict=True):
            total += coefficient * (used if isinstance(used, Decimal) else Decimal(str(used)))
        return total

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> Pricing:
        """Read an offer's pricing, by the rules of :meth:`Terms.from_properties` (of which it
        is a part); raises :exc:`TermsError` naming the property at fault."""
        model = _lookup(properties, PRICING_MODEL)
        if isinstance(model, Mapping):  # nested form: {"@tag": "linear", "linear": {...}}
            model = model.get("@tag", "linear" if "linear" in model else None)
        if model is not None and model != "linear":
            raise TermsError(PRICING_MODEL, f"pricing model {model!r} is not linear")
        raw_coeffs = _lookup(properties, LINEAR_COEFFS)
        raw_vector = _lookup(properties, USAGE_VECTOR)
        if not isinstance(raw_coeffs, list | tuple) or not raw_coeffs:
            raise TermsError(LINEAR_COEFFS, f"missing or not a non-empty list: {raw_coeffs!r}")
        if not isinstance(raw_vector, list | tuple) or not all(
            isinstance(c, str) for c in raw_vector
        ):
            raise TermsError(USAGE_VECTOR, f"missing or not a list of names: {raw_vector!r}")
        if len(set(raw_vector)) != len(raw_vector):
            raise TermsError(USAGE_VECTOR, f"a counter is named twice: {raw_vector!r}")
        if len(raw_coeffs) != len(raw_vector) + 1:
            raise TermsError(
                LINEAR_COEFFS,
                f"{len(raw_coeffs)} coefficients for {len(raw_vector)} usage counters "
                "(expected one per counter and the fixed price)",
            )
        numbers = tuple(
            _number(LINEAR_COEFFS, c, f"coefficient {i}") for i, c in enumerate(raw_coeffs)
        )
        for i, number in enumerate(numbers):
            if number < 0:
                raise TermsError(LINEAR_COEFFS, f"coefficient {i} is negative: {raw_coeffs[i]!r}")
        for counter, number in zip(raw_vector, numbers, strict=False):
            if counter not in BOUNDED_COUNTERS and number != 0:
                # Nothing bounds such a counter, so nothing would bound what we pay.
                raise TermsError(
                    USAGE_VECTOR,
                    f"counter {counter!r} has a price ({number}) but no known bound; only "
                    f"{', '.join(sorted(BOUNDED_COUNTERS))} may have one",
                )
        return cls(counters=tuple(raw_vector), coefficients=numbers[:-1], fixed=numbers[-1])


# --- terms -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Terms:
    """What an offer, or an agreement, says about money.

    Durations are in seconds. ``payment_timeout`` set means mid-agreement payments (payable
    debit notes) are offered, or, for an agreement, were agreed.
    """

    pricing: Pricing
    threads: int
    debit_note_interval: Decimal | None = None
    accept_timeout: Decimal | None = None
    payment_timeout: Decimal | None = None

    @property
    def mid_agreement_payments(self) -> bool:
        return self.payment_timeout is not None

    @classmethod
    def from_properties(
        cls, offer: Mapping[str, Any], demand: Mapping[str, Any] | None = None
    ) -> Terms:
        """Read the terms of an offer, or of an agreement from both of its sides.

        Raises :exc:`TermsError` naming the first property that is missing or unusable:

        - the pricing model must be linear (or left out), with one price per counter of the
          usage vector plus the fixed price, each a finite number, none negative; a counter is
          named once, and only the counters of :data:`BOUNDED_COUNTERS` may have a price;
        - ``golem.inf.cpu.threads`` must be a positive whole number (it bounds CPU time);
        - the negotiated durations, where stated, must be positive numbers of seconds.

        With ``demand``, negotiated durations are read from both sides and where they differ
        the safer value for the requestor is kept: the longest debit-note interval, the
        shortest accept timeout and the longest payment timeout (mid-agreement payments count
        as agreed only if both sides name a payment timeout).
        """
        pricing = Pricing.from_properties(offer)
        raw_threads = _lookup(offer, CPU_THREADS)
        if raw_threads is None:
            raise TermsError(CPU_THREADS, "missing")
        threads = _number(CPU_THREADS, raw_threads, "the thread count")
        if threads != threads.to_integral_value() or threads < 1:
            raise TermsError(CPU_THREADS, f"expected a positive whole number, got {raw_threads!r}")
        sides = (offer,) if demand is None else (offer, demand)
        payment_timeout = _seconds(sides, PAYMENT_TIMEOUT, "max")
        if payment_timeout is not None and any(_lookup(p, PAYMENT_TIMEOUT) is None for p in sides):
            payment_timeout = None
        return cls(
            pricing=pricing,
            threads=int(threads),
            debit_note_interval=_seconds(sides, DEBIT_NOTE_INTERVAL, "max"),
            accept_timeout=_seconds(sides, ACCEPT_TIMEOUT, "min"),
            payment_timeout=payment_timeout,
        )

    def max_usage(self, counter: str, elapsed: Decimal) -> Decimal | None:
        """The most of ``counter`` an honest provider can report after ``elapsed`` seconds, or
        ``None`` for a counter without a time bound (only allowed when it is free)."""
        if counter == DURATION_SEC:
            return elapsed
        if counter == CPU_SEC:
            return elapsed * self.threads
        return None

    def max_cost(self, elapsed: Decimal, tolerance: Tolerance) -> Decimal:
        """The most one activity can honestly cost after ``elapsed`` seconds (grace excluded),
        tolerance included: ``fixed + Σ coeff * max_usage * (1 + relative) + absolute``."""
        pricing = self.pricing
        variable = Decimal(0)
        for counter, coeff in zip(pricing.counters, pricing.coefficients, strict=True):
            bound = self.max_usage(counter, elapsed)
            if bound is not None:
                variable += coeff * bound
        return pricing.fixed + variable * (1 + tolerance.relative) + tolerance.absolute

    def max_rate(self, tolerance: Tolerance) -> Decimal:
        """The most one activity can honestly cost per second, tolerance included: how fast
        :meth:`max_cost` grows with the elapsed time."""
        pricing = self.pricing
        rate = Decimal(0)
        for counter, coeff in zip(pricing.counters, pricing.coefficients, strict=True):
            bound = self.max_usage(counter, Decimal(1))
            if bound is not None:
                rate += coeff * bound
        return rate * (1 + tolerance.relative)


@attrs.frozen(kw_only=True)
class AgreementTerms(Terms):
    """The terms of one approved agreement: who bills whom, from when (``approved_at``) and
    until when at most (``valid_to``), at what prices."""

    agreement_id: str
    provider_id: str
    requestor_id: str
    approved_at: dt.datetime
    valid_to: dt.datetime | None = None

    @classmethod
    def from_agreement(cls, agreement: Agreement, requestor_id: str) -> AgreementTerms:
        """Read an approved agreement's terms from both of its sides, by the rules of
        :meth:`Terms.from_properties`; raises :exc:`TermsError` naming a bad or missing
        property (``approvedDate`` for an agreement that is not approved)."""
        if agreement.approved_date is None:
            raise TermsError("approvedDate", "the agreement is not approved")
        return cls.from_sides(
            agreement.agreement_id,
            agreement.offer.properties,
            agreement.demand.properties,
            provider_id=agreement.offer.provider_id,
            requestor_id=requestor_id,
            approved_at=agreement.approved_date,
            valid_to=agreement.valid_to,
        )

    @classmethod
    def from_sides(
        cls,
        agreement_id: str,
        offer: Mapping[str, Any],
        demand: Mapping[str, Any],
        *,
        provider_id: str,
        requestor_id: str,
        approved_at: dt.datetime,
        valid_to: dt.datetime | None,
    ) -> AgreementTerms:
        """The terms of an agreement made of the proposals ``offer`` (the provider's Draft)
        and ``demand`` (the requestor's last counter), as :meth:`from_agreement` reads them
        from the daemon's copy."""
        terms = Terms.from_properties(offer, demand)
        return cls(
            pricing=terms.pricing,
            threads=terms.threads,
            debit_note_interval=terms.debit_note_interval,
            accept_timeout=terms.accept_timeout,
            payment_timeout=terms.payment_timeout,
            agreement_id=agreement_id,
            provider_id=provider_id,
            requestor_id=requestor_id,
            approved_at=approved_at,
            valid_to=valid_to,
        )
