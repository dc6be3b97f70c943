"""Demands: the properties and constraints a requestor publishes, as yapapi builds them.

:func:`build_demand` puts together, in yapapi's order: the agreement's expiration (ms since the
epoch) and multi-activity, the subnet property and constraint, the payment decoration's
properties and constraints (``GET /demandDecorations``), the payload's properties and clauses,
and the negotiable payment terms (the ``…?`` properties). The constraint is one ``(&…)`` of all
clauses. :func:`counter_properties` gives the properties of a counter-proposal to an offer: the
demand's, the chosen payment platform, and the negotiable terms settled against the offer's.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from golem_trio._errors import GolemError
from golem_trio.terms import ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, PAYMENT_TIMEOUT
from golem_trio.yagna import DemandOfferBase, MarketDecoration

from ._constraints import (
    And,
    Constraint,
    ConstraintError,
    Present,
    as_constraint,
    prop,
    render,
)
from ._payload import Payload

__all__ = [
    "CHOSEN_PLATFORM",
    "DEFAULT_ACCEPT_TIMEOUT",
    "EXPIRATION",
    "MULTI_ACTIVITY",
    "SUBNET",
    "DemandBuilder",
    "DemandError",
    "InvalidPlatform",
    "build_demand",
    "counter_properties",
    "platform_address_property",
]

EXPIRATION: Final = "golem.srv.comp.expiration"
MULTI_ACTIVITY: Final = "golem.srv.caps.multi-activity"
SUBNET: Final = "golem.node.debug.subnet"
CHOSEN_PLATFORM: Final = "golem.com.payment.chosen-platform"
#: yapapi's debit-note accept timeout (s).
DEFAULT_ACCEPT_TIMEOUT: Final = 120

# erc20-<network>-<token>, e.g. erc20-holesky-tglm, erc20-polygon-glm.
_PLATFORM_RE = re.compile(r"[a-z0-9]+-[a-z0-9]+-[a-z0-9]+", re.ASCII)
_PLATFORM_ADDRESS_RE = re.compile(r"golem\.com\.payment\.platform\.[^.]+\.address")
_SUBNET_RE = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)


class DemandError(GolemError, ValueError):
    """A demand cannot be built from what was given."""


class InvalidPlatform(DemandError):
    """A payment platform name is not ``<driver>-<network>-<token>`` (``erc20-holesky-tglm``)."""


def _check_platform(platform: str) -> str:
    if not isinstance(platform, str) or _PLATFORM_RE.fullmatch(platform) is None:
        raise InvalidPlatform(
            f"a payment platform must look like 'erc20-holesky-tglm', got {platform!r}"
        )
    return platform


def platform_address_property(platform: str) -> str:
    """``golem.com.payment.platform.<platform>.address``."""
    return f"golem.com.payment.platform.{_check_platform(platform)}.address"


def _check_seconds(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DemandError(f"{what} must be a whole number of seconds, got {value!r}")
    if value <= 0:
        raise DemandError(f"{what} must be positive, got {value!r}")
    return value


@attrs.define
class DemandBuilder:
    """Properties and constraint clauses being gathered into a demand.

    A property may be set twice only to the same value; :meth:`build` ANDs the clauses.
    """

    properties: dict[str, Any] = attrs.field(factory=dict)
    constraints: list[Constraint] = attrs.field(factory=list)

    def add(self, key: str, value: Any) -> None:
        """Set one property; a different value for a key already set is a :exc:`DemandError`."""
        if not isinstance(key, str) or not key or any(c.isspace() for c in key):
            raise DemandError(f"invalid property name {key!r}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DemandError(f"property {key!r} must have a JSON value: {exc}") from None
        if key in self.properties and self.properties[key] != value:
            raise DemandError(f"property {key!r} set twice: {self.properties[key]!r} and {value!r}")
        self.properties[key] = value

    def add_properties(self, properties: Mapping[str, Any]) -> None:
        """Set each property of ``properties`` as :meth:`add` does."""
        for key, value in properties.items():
            self.add(key, value)

    def ensure(self, constraint: Constraint | str) -> None:
        """Add a clause (a tree, or text that is parsed)."""
        try:
            self.constraints.append(as_constraint(constraint))
        except ConstraintError as exc:
            raise DemandError(f"invalid constraint {constraint!r}: {exc}") from exc

    def build(self) -> DemandOfferBase:
        """The demand: a copy of the properties and ``(&…)`` of the clauses."""
        return DemandOfferBase(
            properties=dict(self.properties), constraints=render(And(tuple(self.constraints)))
        )


def build_demand(
    payload: Payload,
    *,
    expiration: dt.datetime,
    payment_platform: str,
    subnet_tag: str | None = "public",
    decorations: MarketDecoration | None = None,
    accept_timeout: int | None = DEFAULT_ACCEPT_TIMEOUT,
    debit_note_interval: int | None = None,
    payment_timeout: int | None = None,
    extra_properties: Mapping[str, Any] | None = None,
    extra_constraints: Iterable[Constraint | str] = (),
    now: dt.datetime | None = None,
) -> DemandOfferBase:
    """The demand yapapi would publish for ``payload``.

    ``expiration`` (timezone-aware, after ``now``, default the current time) becomes
    ``golem.srv.comp.expiration`` in ms. ``subnet_tag`` (``None`` for none) is both a property
    and a ``(golem.node.debug.subnet=<tag>)`` clause. ``decorations`` are the payment API's
    demand decorations; without them an ``(golem.com.payment.platform.<platform>.address=*)``
    clause still asks for offers that take ``payment_platform``. ``accept_timeout``,
    ``debit_note_interval`` and ``payment_timeout`` (seconds, ``None`` to leave out) are the
    negotiable ``…?`` terms; mid-agreement payments need both of the last two. Extra properties
    and clauses come last; a property set twice to different values is an error.

    Raises :exc:`DemandError` (:exc:`InvalidPlatform` for a malformed platform name).
    """
    _check_platform(payment_platform)
    if not isinstance(expiration, dt.datetime) or expiration.tzinfo is None:
        raise DemandError(f"expiration must be a timezone-aware datetime, got {expiration!r}")
    current = dt.datetime.now(dt.UTC) if now is None else now
    if expiration <= current:
        raise DemandError(f"expiration {expiration.isoformat()} is not in the future")
    accept = _check_seconds(accept_timeout, "accept_timeout")
    interval = _check_seconds(debit_note_interval, "debit_note_interval")
    payment = _check_seconds(payment_timeout, "payment_timeout")
    if (interval is None) != (payment is None):
        raise DemandError(
            "debit_note_interval and payment_timeout go together (mid-agreement payments)"
        )

    builder = DemandBuilder()
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    builder.add(EXPIRATION, (expiration - epoch) // dt.timedelta(milliseconds=1))
    builder.add(MULTI_ACTIVITY, True)
    if subnet_tag is not None:
        if not isinstance(subnet_tag, str) or _SUBNET_RE.fullmatch(subnet_tag) is None:
            raise DemandError(f"invalid subnet tag {subnet_tag!r}")
        builder.add(SUBNET, subnet_tag)
        builder.ensure(prop(SUBNET) == subnet_tag)
    if decorations is None:
        builder.ensure(Present(platform_address_property(payment_platform)))
    else:
        for decoration in decorations.properties:
            builder.add(decoration.key, decoration.value)
        for clause in decorations.constraints:
            builder.ensure(clause)
    payload_clauses = [_payload_clause(c) for c in payload.constraints()]
    builder.add_properties(payload.properties())
    if payload_clauses:
        # yapapi nests the payload's clauses in their own (&…).
        builder.ensure(And(tuple(payload_clauses)))
    for key, value in ((ACCEPT_TIMEOUT, accept), (DEBIT_NOTE_INTERVAL, interval)):
        if value is not None:
            builder.add(key, value)
    if payment is not None:
        builder.add(PAYMENT_TIMEOUT, payment)
    builder.add_properties(extra_properties or {})
    for extra in extra_constraints:
        builder.ensure(extra)
    return builder.build()


def _payload_clause(clause: str) -> Constraint:
    try:
        return as_constraint(clause)
    except ConstraintError as exc:
        raise DemandError(f"the payload's constraint {clause!r} is invalid: {exc}") from exc


def _int_term(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def counter_properties(
    demand: DemandOfferBase, offer_properties: Mapping[str, Any], platform: str
) -> dict[str, Any]:
    """The properties to counter an offer with.

    The demand's properties, ``golem.com.payment.chosen-platform`` set to ``platform`` (which
    the offer must accept: it has ``golem.com.payment.platform.<platform>.address``; so must
    the demand if it names any platform address), and the
    negotiable terms the demand sets settled against the offer's: the debit-note accept
    timeout is at most the offer's, the debit-note interval at least the offer's, and the
    payment timeout is the offer's when it states one.

    Raises :exc:`InvalidPlatform` for a malformed platform name and :exc:`DemandError` if the
    offer or the demand does not take ``platform``.
    """
    address = platform_address_property(platform)
    if address not in offer_properties:
        raise DemandError(f"the offer does not accept payments on {platform!r}")
    offered = [key for key in demand.properties if _PLATFORM_ADDRESS_RE.fullmatch(key)]
    if offered and address not in offered:
        raise DemandError(f"the demand does not offer payments on {platform!r}")
    properties = dict(demand.properties)
    properties[CHOSEN_PLATFORM] = platform
    ours = _int_term(properties.get(ACCEPT_TIMEOUT))
    theirs = _int_term(offer_properties.get(ACCEPT_TIMEOUT))
    if ours is not None and theirs is not None:
        properties[ACCEPT_TIMEOUT] = min(ours, theirs)
    ours = _int_term(properties.get(DEBIT_NOTE_INTERVAL))
    theirs = _int_term(offer_properties.get(DEBIT_NOTE_INTERVAL))
    if ours is not None and theirs is not None:
        properties[DEBIT_NOTE_INTERVAL] = max(ours, theirs)
    theirs = _int_term(offer_properties.get(PAYMENT_TIMEOUT))
    if PAYMENT_TIMEOUT in properties and theirs is not None:
        properties[PAYMENT_TIMEOUT] = theirs
    return properties
