"""Offers: reading them, filtering them, scoring them, banning providers and pooling proposals.

Everything here is plain, deterministic code. Times are floats on the caller's clock (pass
``trio.current_time()``), so the same code runs in virtual time under tests.

* :class:`OfferView` reads what a requestor decides on from a proposal's properties: the
  provider, its terms (prices per usage counter and fixed price, thread count, payment terms:
  :class:`~golem_trio.terms.Terms`, read as billing reads them), resources, runtime and
  capabilities. An offer whose terms cannot be read, and so could not be paid, gives a view
  without :attr:`OfferView.terms` and the reason in :attr:`OfferView.terms_error`; price
  filters and price scorers reject it, and negotiations never consider it.
* Filters (:class:`PriceCaps`, :class:`AllowList`, :class:`DenyList`, :class:`MinResources`,
  combined with :func:`all_of` and :func:`any_of`) return a :class:`FilterResult` with a reason.
* Scorers map a view to a float (higher is better) or ``None`` (reject): :func:`cheapest`,
  :func:`prefer`, combined with :func:`weighted` and :func:`chain`. Any callable of that shape
  is a scorer.
* :class:`ProviderBans` keeps temporary bans that grow with repeat offences and expire.
* :class:`OfferPool` keeps the best current proposal per provider, bounded in size and age.
"""

from __future__ import annotations

import fnmatch
import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Final, Protocol, TypeAlias

import attrs

from golem_trio.terms import CPU_SEC, CPU_THREADS, DURATION_SEC, Pricing, Terms, TermsError
from golem_trio.yagna import Proposal

__all__ = [
    "AllowList",
    "Ban",
    "DenyList",
    "FilterResult",
    "MinResources",
    "OfferError",
    "OfferFilter",
    "OfferPool",
    "OfferView",
    "PoolEntry",
    "PriceCaps",
    "ProviderBans",
    "Scorer",
    "all_of",
    "any_of",
    "chain",
    "cheapest",
    "estimate_cost",
    "prefer",
    "weighted",
]

_NAME: Final = "golem.node.id.name"
_MEM: Final = "golem.inf.mem.gib"
_STORAGE: Final = "golem.inf.storage.gib"
_RUNTIME: Final = "golem.runtime.name"
_RUNTIME_CAPS: Final = "golem.runtime.capabilities"

_HOUR: Final = Decimal(3600)

#: The market's name for :class:`~golem_trio.terms.TermsError` (the same class): an offer's
#: terms cannot be read.
OfferError = TermsError


# -- Reading offers ---------------------------------------------------------------------------


def _opt_number(properties: Mapping[str, Any], key: str) -> float | None:
    value = properties.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _opt_int(properties: Mapping[str, Any], key: str) -> int | None:
    value = properties.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _str_set(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list | tuple):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


@attrs.frozen
class OfferView:
    """What a requestor decides on, read from one proposal.

    ``terms`` is ``None`` for an offer whose terms cannot be read, with the reason in
    ``terms_error``. Resources the offer does not state (or states with the wrong type) are
    ``None``.
    """

    provider_id: str
    proposal_id: str = ""
    name: str | None = None
    terms: Terms | None = None
    terms_error: str | None = None
    threads: int | None = None
    mem_gib: float | None = None
    storage_gib: float | None = None
    runtime: str | None = None
    capabilities: frozenset[str] = frozenset()
    properties: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def pricing(self) -> Pricing | None:
        """The offer's prices, ``None`` when its terms cannot be read."""
        return None if self.terms is None else self.terms.pricing

    @classmethod
    def from_properties(
        cls,
        provider_id: str,
        properties: Mapping[str, Any],
        *,
        proposal_id: str = "",
        strict: bool = False,
    ) -> OfferView:
        """Read an offer's flat properties; its terms with
        :meth:`~golem_trio.terms.Terms.from_properties`. With ``strict``, unusable terms raise
        :exc:`~golem_trio.terms.TermsError` instead of giving a view without terms."""
        terms: Terms | None = None
        error: str | None = None
        try:
            terms = Terms.from_properties(properties)
        except TermsError as exc:
            if strict:
                raise
            error = str(exc)
        name = properties.get(_NAME)
        runtime = properties.get(_RUNTIME)
        return cls(
            provider_id=provider_id,
            proposal_id=proposal_id,
            name=name if isinstance(name, str) else None,
            terms=terms,
            terms_error=error,
            threads=_opt_int(properties, CPU_THREADS),
            mem_gib=_opt_number(properties, _MEM),
            storage_gib=_opt_number(properties, _STORAGE),
            runtime=runtime if isinstance(runtime, str) else None,
            capabilities=_str_set(properties.get(_RUNTIME_CAPS)),
            properties=dict(properties),
        )

    @classmethod
    def from_proposal(cls, proposal: Proposal, *, strict: bool = False) -> OfferView:
        """Read a proposal (its issuer is the provider)."""
        return cls.from_properties(
            proposal.issuer_id,
            proposal.properties,
            proposal_id=proposal.proposal_id,
            strict=strict,
        )

    @property
    def label(self) -> str:
        """The provider's name and id, for messages."""
        return f"{self.name} ({self.provider_id})" if self.name else self.provider_id


# -- Filters ----------------------------------------------------------------------------------


@attrs.frozen
class FilterResult:
    """A filter's verdict on one offer; ``reason`` says why (always set on rejection)."""

    accepted: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.accepted


_ACCEPTED: Final = FilterResult(True)


class OfferFilter(Protocol):
    """Anything that judges an offer."""

    def __call__(self, offer: OfferView, /) -> FilterResult: ...


def _dec(value: Decimal | float | int | str | None) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


@attrs.frozen(init=False)
class PriceCaps:
    """Reject offers priced above a cap: per CPU second, per second of duration, fixed price,
    and any other usage counter in ``counters``. Caps left ``None`` are not checked. Offers
    whose terms cannot be read are rejected.

    Use :meth:`per_hour` to give the CPU and duration caps per hour."""

    max_cpu_sec: Decimal | None
    max_duration_sec: Decimal | None
    max_fixed: Decimal | None
    counters: Mapping[str, Decimal]

    def __init__(
        self,
        *,
        max_cpu_sec: Decimal | float | int | str | None = None,
        max_duration_sec: Decimal | float | int | str | None = None,
        max_fixed: Decimal | float | int | str | None = None,
        counters: Mapping[str, Decimal | float | int | str] | None = None,
    ) -> None:
        self.__attrs_init__(
            max_cpu_sec=_dec(max_cpu_sec),
            max_duration_sec=_dec(max_duration_sec),
            max_fixed=_dec(max_fixed),
            counters={k: Decimal(str(v)) for k, v in (counters or {}).items()},
        )

    @classmethod
    def per_hour(
        cls,
        *,
        max_cpu_hour: Decimal | float | int | str | None = None,
        max_duration_hour: Decimal | float | int | str | None = None,
        max_fixed: Decimal | float | int | str | None = None,
    ) -> PriceCaps:
        """Caps per CPU hour and per hour of duration (divided by 3600 exactly)."""
        cpu = _dec(max_cpu_hour)
        duration = _dec(max_duration_hour)
        return cls(
            max_cpu_sec=None if cpu is None else cpu / _HOUR,
            max_duration_sec=None if duration is None else duration / _HOUR,
            max_fixed=max_fixed,
        )

    def __call__(self, offer: OfferView) -> FilterResult:
        pricing = offer.pricing
        if pricing is None:
            return FilterResult(False, f"unusable terms: {offer.terms_error}")
        caps: list[tuple[str, Decimal | None, Decimal]] = [
            ("CPU second", self.max_cpu_sec, pricing.cpu_sec),
            ("second of duration", self.max_duration_sec, pricing.duration_sec),
            ("start (fixed price)", self.max_fixed, pricing.fixed),
        ]
        caps.extend(
            (counter, cap, pricing.price_of(counter)) for counter, cap in self.counters.items()
        )
        for what, cap, price in caps:
            if cap is not None and price > cap:
                return FilterResult(False, f"price per {what} {price} is over the cap {cap}")
        return _ACCEPTED


def _norm_id(provider_id: str) -> str:
    return provider_id.lower()


class _Match:
    def __init__(self, ids: Iterable[str], names: Iterable[str], patterns: Iterable[str]) -> None:
        self.ids = frozenset(_norm_id(i) for i in ids)
        self.names = frozenset(names)
        self.patterns = tuple(patterns)

    def why(self, offer: OfferView) -> str | None:
        """Which entry matches the offer, or ``None``."""
        if _norm_id(offer.provider_id) in self.ids:
            return f"provider id {offer.provider_id}"
        if offer.name is not None and offer.name in self.names:
            return f"provider name {offer.name!r}"
        for pattern in self.patterns:
            if offer.name is not None and fnmatch.fnmatchcase(offer.name, pattern):
                return f"provider name {offer.name!r} (pattern {pattern!r})"
            if fnmatch.fnmatchcase(_norm_id(offer.provider_id), pattern.lower()):
                return f"provider id {offer.provider_id} (pattern {pattern!r})"
        return None


class AllowList:
    """Accept only providers listed by id (case-insensitive), exact name, or a glob pattern
    (``fnmatch``, case-sensitive on names) matched against the name or the id."""

    def __init__(
        self, ids: Iterable[str] = (), names: Iterable[str] = (), patterns: Iterable[str] = ()
    ) -> None:
        self._match = _Match(ids, names, patterns)

    def __call__(self, offer: OfferView) -> FilterResult:
        if self._match.why(offer) is None:
            return FilterResult(False, f"provider {offer.label} is not on the allow list")
        return _ACCEPTED


class DenyList:
    """Reject providers listed by id (case-insensitive), exact name, or a glob pattern
    (``fnmatch``, case-sensitive on names) matched against the name or the id."""

    def __init__(
        self, ids: Iterable[str] = (), names: Iterable[str] = (), patterns: Iterable[str] = ()
    ) -> None:
        self._match = _Match(ids, names, patterns)

    def __call__(self, offer: OfferView) -> FilterResult:
        why = self._match.why(offer)
        if why is not None:
            return FilterResult(False, f"{why} is on the deny list")
        return _ACCEPTED


def _str_frozenset(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@attrs.frozen
class MinResources:
    """Reject offers with fewer resources than asked, another runtime, or missing runtime
    capabilities. Unstated resources count as missing."""

    threads: int | None = None
    mem_gib: float | None = None
    storage_gib: float | None = None
    runtime: str | None = None
    capabilities: frozenset[str] = attrs.field(default=frozenset(), converter=_str_frozenset)

    def __call__(self, offer: OfferView) -> FilterResult:
        checks: list[tuple[str, float | None, float | None]] = [
            ("CPU threads", self.threads, offer.threads),
            ("memory (GiB)", self.mem_gib, offer.mem_gib),
            ("storage (GiB)", self.storage_gib, offer.storage_gib),
        ]
        for what, wanted, offered in checks:
            if wanted is not None and (offered is None or offered < wanted):
                return FilterResult(False, f"{what}: offers {offered}, needs {wanted}")
        if self.runtime is not None and offer.runtime != self.runtime:
            return FilterResult(False, f"runtime {offer.runtime!r} is not {self.runtime!r}")
        missing = self.capabilities - offer.capabilities
        if missing:
            return FilterResult(False, f"missing runtime capabilities {sorted(missing)}")
        return _ACCEPTED


def all_of(*filters: OfferFilter) -> OfferFilter:
    """Accept when every filter accepts; the first rejection's reason is given."""

    def check(offer: OfferView) -> FilterResult:
        for f in filters:
            result = f(offer)
            if not result.accepted:
                return result
        return _ACCEPTED

    return check


def any_of(*filters: OfferFilter) -> OfferFilter:
    """Accept when some filter accepts (none given: reject); rejections' reasons are joined."""

    def check(offer: OfferView) -> FilterResult:
        reasons = []
        for f in filters:
            result = f(offer)
            if result.accepted:
                return result
            reasons.append(result.reason)
        return FilterResult(False, "; ".join(reasons) or "no filter accepts")

    return check


# -- Scoring ----------------------------------------------------------------------------------

#: A scorer: higher is better, ``None`` rejects the offer.
Scorer: TypeAlias = Callable[[OfferView], float | None]


def estimate_cost(
    offer: OfferView, duration_s: float, cpu_seconds: float | None = None
) -> Decimal | None:
    """The linear cost of running ``duration_s`` seconds using ``cpu_seconds`` CPU seconds
    (default: ``duration_s``, one busy thread); ``None`` for an offer whose terms cannot be
    read."""
    if offer.pricing is None:
        return None
    cpu = duration_s if cpu_seconds is None else cpu_seconds
    return offer.pricing.cost({DURATION_SEC: Decimal(str(duration_s)), CPU_SEC: Decimal(str(cpu))})


def cheapest(expected_duration_s: float = 60.0, expected_cpu_share: float = 1.0) -> Scorer:
    """Score by the estimated cost of ``expected_duration_s`` seconds with
    ``expected_duration_s * expected_cpu_share`` CPU seconds (a share above 1 means more than one
    busy thread): ``1 / (1 + cost)``, in (0, 1], higher for cheaper offers. Offers whose terms
    cannot be read are rejected. Other usage counters are taken as unused (terms that can be
    read price them at zero)."""
    if expected_duration_s < 0 or expected_cpu_share < 0:
        raise ValueError("expected duration and CPU share must not be negative")
    cpu_seconds = expected_duration_s * expected_cpu_share

    def score(offer: OfferView) -> float | None:
        cost = estimate_cost(offer, expected_duration_s, cpu_seconds)
        if cost is None:
            return None
        return 1.0 / (1.0 + float(cost))

    return score


def prefer(providers: Iterable[str], bonus: float = 1.0) -> Scorer:
    """``bonus`` for providers listed by id (case-insensitive) or name, 0 for the others."""
    wanted = frozenset(providers)
    ids = frozenset(_norm_id(p) for p in wanted)

    def score(offer: OfferView) -> float | None:
        if _norm_id(offer.provider_id) in ids or (offer.name is not None and offer.name in wanted):
            return bonus
        return 0.0

    return score


def weighted(*parts: tuple[Scorer, float]) -> Scorer:
    """The weighted sum of scorers; rejected when any of them rejects."""

    def score(offer: OfferView) -> float | None:
        total = 0.0
        for scorer, weight in parts:
            value = scorer(offer)
            if value is None:
                return None
            total += weight * value
        return total

    return score


def chain(*steps: OfferFilter | Scorer) -> Scorer:
    """Filters and scorers in order: a filter's rejection or a scorer's ``None`` rejects the
    offer; otherwise the score is the sum of the scorers' (0 with none)."""

    def score(offer: OfferView) -> float | None:
        total = 0.0
        for step in steps:
            result = step(offer)
            if isinstance(result, FilterResult):
                if not result.accepted:
                    return None
            elif result is None:
                return None
            else:
                total += result
        return total

    return score


# -- Bans -------------------------------------------------------------------------------------


@attrs.frozen
class Ban:
    """A provider's ban: from ``since`` to ``until``; ``offences`` counts it and the earlier
    ones not yet forgotten."""

    provider_id: str
    reason: str
    since: float
    until: float
    offences: int

    @property
    def duration(self) -> float:
        return self.until - self.since


class ProviderBans:
    """Temporary bans on providers that failed (signing, agreements, starts).

    The first offence bans for ``base`` seconds; each repeat multiplies the last duration by
    ``factor``, up to ``max_ban``. A provider with no offence for ``forget_after`` seconds after
    its ban ended starts over. Records of forgotten providers are dropped; at most
    ``max_entries`` providers are remembered (the ones whose bans end first are dropped first).
    """

    def __init__(
        self,
        base: float = 60.0,
        factor: float = 2.0,
        max_ban: float = 3600.0,
        forget_after: float = 3600.0,
        max_entries: int = 10_000,
    ) -> None:
        if not (0 < base <= max_ban) or not math.isfinite(max_ban):
            raise ValueError("need 0 < base <= max_ban < inf")
        if not (factor >= 1 and math.isfinite(factor)):
            raise ValueError("factor must be a finite number >= 1")
        if not (forget_after >= 0) or max_entries < 1:
            raise ValueError("forget_after must be >= 0 and max_entries >= 1")
        self.base = base
        self.factor = factor
        self.max_ban = max_ban
        self.forget_after = forget_after
        self.max_entries = max_entries
        self._bans: dict[str, Ban] = {}

    def duration_for(self, offences: int) -> float:
        """How long the ``offences``-th offence (1 for the first) bans for."""
        duration = self.base
        for _ in range(offences - 1):
            if duration >= self.max_ban:
                break
            duration *= self.factor
        return min(duration, self.max_ban)

    def _forgotten(self, ban: Ban, now: float) -> bool:
        return now >= ban.until + self.forget_after

    def ban(self, provider_id: str, reason: str, now: float) -> Ban:
        """Record an offence at ``now`` and ban the provider; returns the ban in force."""
        key = _norm_id(provider_id)
        self.prune(now)
        previous = self._bans.get(key)
        if previous is None:
            duration = self.base
            offences = 1
        else:
            duration = min(self.max_ban, previous.duration * self.factor)
            offences = previous.offences + 1
        until = now + duration
        if previous is not None:
            until = max(until, previous.until)
        ban = Ban(provider_id, reason, now, until, offences)
        self._bans.pop(key, None)
        self._bans[key] = ban
        while len(self._bans) > self.max_entries:
            oldest = min(self._bans, key=lambda k: (self._bans[k].until, k))
            del self._bans[oldest]
        return ban

    def is_banned(self, provider_id: str, now: float) -> Ban | None:
        """The ban in force on the provider at ``now``, or ``None``."""
        ban = self._bans.get(_norm_id(provider_id))
        if ban is not None and ban.since <= now < ban.until:
            return ban
        return None

    def record(self, provider_id: str) -> Ban | None:
        """The provider's latest ban, in force or not, unless forgotten and pruned."""
        return self._bans.get(_norm_id(provider_id))

    def forgive(self, provider_id: str) -> None:
        """Lift the provider's ban and forget its offences."""
        self._bans.pop(_norm_id(provider_id), None)

    def prune(self, now: float) -> None:
        """Drop the records of providers whose offences are forgotten at ``now``."""
        for key in [k for k, b in self._bans.items() if self._forgotten(b, now)]:
            del self._bans[key]

    def banned(self, now: float) -> Iterator[Ban]:
        """The bans in force at ``now``."""
        return (b for b in list(self._bans.values()) if b.since <= now < b.until)

    def __len__(self) -> int:
        return len(self._bans)


# -- Pool -------------------------------------------------------------------------------------


@attrs.frozen
class PoolEntry:
    offer: OfferView
    score: float
    added: float
    seq: int = attrs.field(eq=False, repr=False)

    @property
    def _rank(self) -> tuple[float, int]:
        # Best first: higher score, then newer.
        return (self.score, self.seq)


class OfferPool:
    """The best current proposal per provider.

    :meth:`add` scores an offer with ``scorer`` (rejected offers are not kept) and replaces the
    provider's earlier proposal (the newest wins, whatever its score). Entries older than
    ``ttl`` seconds are dropped. The pool never holds more than ``max_size`` entries: adding to
    a full pool evicts the worst (lowest score, then oldest), which may be the new offer itself.
    :meth:`pop_best` takes the best entry of a provider not banned in ``bans``.
    """

    def __init__(
        self,
        max_size: int,
        ttl: float,
        scorer: Scorer | None = None,
        bans: ProviderBans | None = None,
    ) -> None:
        if max_size < 1 or not ttl > 0:
            raise ValueError("max_size must be >= 1 and ttl > 0")
        self.max_size = max_size
        self.ttl = ttl
        self.scorer: Scorer = scorer if scorer is not None else cheapest()
        self.bans = bans
        # In the order they were added (a provider's new entry goes last).
        self._entries: dict[str, PoolEntry] = {}
        # Best first: (-score, -seq, key), with entries since replaced or removed left in
        # until they come to the top (``seq`` tells them apart).
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        # While entries come with ``now`` that never goes back, the oldest is first in
        # ``_entries`` and pruning stops at the first one still young.
        self._ordered = True
        self._last_added = -math.inf

    def add(self, offer: OfferView, now: float, score: float | None = None) -> PoolEntry | None:
        """Score (unless ``score`` is given) and keep the offer; ``None`` if it is rejected or
        is the worst offer of a full pool."""
        self.prune(now)
        if score is None:
            score = self.scorer(offer)
            if score is None:
                return None
        if math.isnan(score):
            return None
        self._seq += 1
        entry = PoolEntry(offer, score, now, self._seq)
        key = _norm_id(offer.provider_id)
        self._entries.pop(key, None)
        self._entries[key] = entry
        if now < self._last_added:
            self._ordered = False
        self._last_added = max(self._last_added, now)
        heapq.heappush(self._heap, (-score, -self._seq, key))
        if len(self._entries) > self.max_size:
            worst = min(self._entries, key=lambda k: self._entries[k]._rank)
            del self._entries[worst]
            if worst == key:
                return None
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [(-e.score, -e.seq, k) for k, e in self._entries.items()]
            heapq.heapify(self._heap)
        return entry

    def prune(self, now: float) -> None:
        """Drop entries older than ``ttl``."""
        if self._ordered:
            while self._entries:
                key = next(iter(self._entries))
                if now - self._entries[key].added < self.ttl:
                    return
                del self._entries[key]
            return
        for key in [k for k, e in self._entries.items() if now - e.added >= self.ttl]:
            del self._entries[key]

    def _best_key(self, now: float) -> str | None:
        self.prune(now)
        heap = self._heap
        banned: list[tuple[float, int, str]] = []
        best: str | None = None
        while heap:
            _score, neg_seq, key = heap[0]
            entry = self._entries.get(key)
            if entry is None or entry.seq != -neg_seq:
                heapq.heappop(heap)  # replaced, taken or dropped since
            elif self.bans is not None and self.bans.is_banned(entry.offer.provider_id, now):
                banned.append(heapq.heappop(heap))  # kept, but not for now
            else:
                best = key
                break
        for item in banned:
            heapq.heappush(heap, item)
        return best

    def peek_best(self, now: float) -> PoolEntry | None:
        """The best entry of a provider not banned at ``now``, left in the pool."""
        key = self._best_key(now)
        return None if key is None else self._entries[key]

    def pop_best(self, now: float) -> PoolEntry | None:
        """Take the best entry of a provider not banned at ``now`` out of the pool."""
        key = self._best_key(now)
        return None if key is None else self._entries.pop(key)

    def remove(self, provider_id: str) -> PoolEntry | None:
        """Drop the provider's entry (e.g. its proposal was rejected or expired)."""
        return self._entries.pop(_norm_id(provider_id), None)

    def entries(self) -> list[PoolEntry]:
        """The entries, best first (including banned providers' and unpruned old ones)."""
        return sorted(self._entries.values(), key=lambda e: e._rank, reverse=True)

    def __contains__(self, provider_id: object) -> bool:
        return isinstance(provider_id, str) and _norm_id(provider_id) in self._entries

    def __len__(self) -> int:
        return len(self._entries)
