"""Offers: reading proposals, price caps, allow/deny lists, scoring, bans and the offer pool."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_trio.localnet.providers import ProviderSpec, offer_properties
from golem_trio.market import (
    CPU_SEC,
    DURATION_SEC,
    AllowList,
    DenyList,
    FilterResult,
    MinResources,
    OfferError,
    OfferPool,
    OfferView,
    PriceCaps,
    Pricing,
    ProviderBans,
    all_of,
    any_of,
    chain,
    cheapest,
    estimate_cost,
    prefer,
    weighted,
)
from golem_trio.terms import Terms
from golem_trio.yagna import Proposal, ProposalState

NODE = "0x" + "ab" * 20


def node(i: int) -> str:
    return f"0x{i:040x}"


def proposal(spec: ProviderSpec, node_id: str = NODE, **extra: Any) -> Proposal:
    props = offer_properties(spec, node_id)
    props.update(extra)
    return Proposal(
        properties=props,
        constraints="(golem.node.debug.subnet=public)",
        proposal_id="R-" + "1" * 64,
        issuer_id=node_id,
        state=ProposalState.DRAFT,
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def view(
    provider_id: str = NODE,
    *,
    cpu: str = "0.0001",
    duration: str = "0.00002",
    fixed: str = "0",
    name: str | None = "prov",
) -> OfferView:
    return OfferView(
        provider_id=provider_id,
        name=name,
        terms=Terms(
            pricing=Pricing(
                counters=(CPU_SEC, DURATION_SEC),
                coefficients=(Decimal(cpu), Decimal(duration)),
                fixed=Decimal(fixed),
            ),
            threads=4,
        ),
    )


# -- Reading offers -----------------------------------------------------------------------------


def test_view_of_localnet_offer() -> None:
    spec = ProviderSpec(
        name="testnet-a",
        cpu_threads=8,
        mem_gib=16.0,
        storage_gib=100.0,
        price_cpu_sec=Decimal("0.0001"),
        price_duration_sec=Decimal("0.00002"),
        price_start=Decimal("0.01"),
    )
    offer = OfferView.from_proposal(proposal(spec))
    assert offer.provider_id == NODE
    assert offer.proposal_id == "R-" + "1" * 64
    assert offer.name == "testnet-a"
    assert offer.terms_error is None
    assert offer.terms is not None
    assert offer.pricing is offer.terms.pricing
    # Float coefficients read as the decimals they print as.
    assert offer.pricing.cpu_sec == Decimal("0.0001")
    assert offer.pricing.duration_sec == Decimal("0.00002")
    assert offer.pricing.fixed == Decimal("0.01")
    assert offer.pricing.per_counter == {
        CPU_SEC: Decimal("0.0001"),
        DURATION_SEC: Decimal("0.00002"),
    }
    assert (offer.threads, offer.mem_gib, offer.storage_gib) == (8, 16.0, 100.0)
    assert offer.terms.threads == 8
    assert offer.terms.debit_note_interval == 120
    assert offer.terms.accept_timeout == 240
    assert offer.terms.payment_timeout == 18000
    assert offer.runtime == "vm"
    assert offer.capabilities == {"vpn", "inet", "manifest-support"}
    assert offer.label == f"testnet-a ({NODE})"


def test_usage_vector_order_is_followed() -> None:
    props = {
        "golem.com.pricing.model": "linear",
        "golem.com.usage.vector": [DURATION_SEC, "golem.usage.storage_gib", CPU_SEC],
        "golem.com.pricing.model.linear.coeffs": [0.5, 0, 3, "0.1"],
    }
    pricing = Pricing.from_properties(props)
    assert pricing.counters == (DURATION_SEC, "golem.usage.storage_gib", CPU_SEC)
    assert pricing.duration_sec == Decimal("0.5")
    assert pricing.price_of("golem.usage.storage_gib") == 0
    assert pricing.cpu_sec == Decimal(3)
    assert pricing.fixed == Decimal("0.1")
    assert pricing.cost({CPU_SEC: 2, DURATION_SEC: Decimal(10)}) == Decimal("11.1")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"golem.com.pricing.model": "fixed"}, "not linear"),
        ({"golem.com.pricing.model.linear.coeffs": None}, "missing"),
        ({"golem.com.pricing.model.linear.coeffs": [0.1, 0.2]}, "2 coefficients for 2"),
        ({"golem.com.pricing.model.linear.coeffs": [0.1, "x", 0]}, "not a number"),
        ({"golem.com.pricing.model.linear.coeffs": [0.1, True, 0]}, "not a number"),
        ({"golem.com.pricing.model.linear.coeffs": [0.1, -0.2, 0]}, "negative"),
        ({"golem.com.pricing.model.linear.coeffs": [0.1, "NaN", 0]}, "not finite"),
        ({"golem.com.usage.vector": "golem.usage.cpu_sec"}, "not a list"),
        ({"golem.com.usage.vector": [CPU_SEC, CPU_SEC]}, "twice"),
        # A price on a counter nothing bounds: billing could not bound what it pays.
        (
            {
                "golem.com.usage.vector": [CPU_SEC, DURATION_SEC, "golem.usage.gib"],
                "golem.com.pricing.model.linear.coeffs": [0.0001, 0.00002, 0.5, 0],
            },
            "no known bound",
        ),
        ({"golem.inf.cpu.threads": None}, "golem.inf.cpu.threads: missing"),
    ],
)
def test_unusable_terms_give_a_view_without_terms(override: dict[str, Any], message: str) -> None:
    p = proposal(ProviderSpec(name="bad"), **override)
    with pytest.raises(OfferError, match=message):
        OfferView.from_proposal(p, strict=True)
    offer = OfferView.from_proposal(p)
    assert offer.terms is None
    assert offer.pricing is None
    assert offer.terms_error is not None
    assert message in offer.terms_error
    result = PriceCaps(max_fixed=1)(offer)
    assert not result.accepted
    assert "unusable terms" in result.reason
    assert cheapest()(offer) is None
    assert estimate_cost(offer, 60) is None


def test_missing_resources_are_none() -> None:
    offer = OfferView.from_properties(
        NODE, {"golem.inf.cpu.threads": "4", "golem.inf.mem.gib": True, _NAME_KEY: 7}
    )
    assert offer.threads is None
    assert offer.mem_gib is None
    assert offer.name is None
    assert offer.label == NODE
    assert not MinResources(threads=1)(offer).accepted


_NAME_KEY = "golem.node.id.name"


# -- Filters ------------------------------------------------------------------------------------


def test_price_caps() -> None:
    offer = view(cpu="0.0001", duration="0.00002", fixed="0.01")
    assert PriceCaps()(offer) == FilterResult(True)
    assert PriceCaps(max_cpu_sec="0.0001", max_duration_sec=0.00002, max_fixed=Decimal("0.01"))(
        offer
    ).accepted
    result = PriceCaps(max_cpu_sec="0.00009")(offer)
    assert not result
    assert "CPU second" in result.reason
    assert "0.0001" in result.reason
    assert not PriceCaps(max_duration_sec="0.00001")(offer).accepted
    assert not PriceCaps(max_fixed=0)(offer).accepted
    # Per hour: 0.36 per CPU hour is 0.0001 per CPU second.
    assert PriceCaps.per_hour(max_cpu_hour="0.36")(offer).accepted
    assert not PriceCaps.per_hour(max_cpu_hour="0.359")(offer).accepted
    assert PriceCaps.per_hour(max_duration_hour="0.072", max_fixed="0.01")(offer).accepted
    # Other counters: unbilled counters cost nothing.
    assert PriceCaps(counters={"golem.usage.storage_gib": 0})(offer).accepted


prices = st.decimals(min_value=0, max_value=10, places=6)
caps = st.none() | prices


@given(cpu=prices, duration=prices, fixed=prices, max_cpu=caps, max_dur=caps, max_fixed=caps)
def test_price_caps_agree_with_direct_computation(
    cpu: Decimal,
    duration: Decimal,
    fixed: Decimal,
    max_cpu: Decimal | None,
    max_dur: Decimal | None,
    max_fixed: Decimal | None,
) -> None:
    offer = OfferView.from_properties(
        NODE,
        {
            "golem.com.pricing.model": "linear",
            "golem.com.usage.vector": [CPU_SEC, DURATION_SEC],
            "golem.com.pricing.model.linear.coeffs": [str(cpu), str(duration), str(fixed)],
            "golem.inf.cpu.threads": 4,
        },
    )
    expected = all(
        cap is None or price <= cap
        for price, cap in ((cpu, max_cpu), (duration, max_dur), (fixed, max_fixed))
    )
    result = PriceCaps(max_cpu_sec=max_cpu, max_duration_sec=max_dur, max_fixed=max_fixed)(offer)
    assert result.accepted == expected
    assert result.accepted or result.reason


def test_allow_and_deny_lists() -> None:
    a = view(node(1), name="testnet-a")
    b = view(node(2), name="golem-b")
    c = view(node(3), name=None)
    by_id = AllowList(ids=[node(1).upper().replace("0X", "0x")])
    assert by_id(a).accepted
    assert not by_id(b).accepted
    assert "not on the allow list" in by_id(b).reason
    by_name = AllowList(names=["golem-b"])
    assert [by_name(o).accepted for o in (a, b, c)] == [False, True, False]
    by_pattern = AllowList(patterns=["testnet-*"])
    assert [by_pattern(o).accepted for o in (a, b, c)] == [True, False, False]
    id_pattern = AllowList(patterns=["0x000000000000000000000000000000000000000[23]"])
    assert [id_pattern(o).accepted for o in (a, b, c)] == [False, True, True]

    deny = DenyList(ids=[node(3)], patterns=["test*"])
    assert [deny(o).accepted for o in (a, b, c)] == [False, True, False]
    assert "pattern 'test*'" in deny(a).reason
    assert "deny list" in deny(c).reason
    assert AllowList()(a).accepted is False
    assert DenyList()(a).accepted is True


def test_min_resources() -> None:
    offer = OfferView.from_proposal(proposal(ProviderSpec(name="p", cpu_threads=4, mem_gib=8.0)))
    assert MinResources(threads=4, mem_gib=8, storage_gib=1, runtime="vm")(offer).accepted
    assert "CPU threads" in MinResources(threads=5)(offer).reason
    assert "memory" in MinResources(mem_gib=8.5)(offer).reason
    assert "runtime" in MinResources(runtime="wasmtime")(offer).reason
    assert MinResources(capabilities={"vpn"})(offer).accepted
    assert "gpu" in MinResources(capabilities=["vpn", "gpu"])(offer).reason


def test_composition() -> None:
    offer = view(name="testnet-a", cpu="0.0002")
    cheap = PriceCaps(max_cpu_sec="0.0001")
    trusted = AllowList(names=["testnet-a"])
    assert not all_of(trusted, cheap)(offer).accepted
    assert all_of(trusted, cheap)(offer).reason == cheap(offer).reason
    assert all_of()(offer).accepted
    assert any_of(cheap, trusted)(offer).accepted
    rejected = any_of(cheap, DenyList(names=["testnet-a"]))(offer)
    assert not rejected.accepted
    assert "over the cap" in rejected.reason
    assert "deny list" in rejected.reason
    assert not any_of()(offer).accepted


# -- Scoring ------------------------------------------------------------------------------------


def test_cheapest_orders_by_linear_cost() -> None:
    costly_start = view(cpu="0.0001", duration="0.00002", fixed="1")
    costly_cpu = view(cpu="0.001", duration="0.00002", fixed="0")
    assert estimate_cost(costly_start, 60) == Decimal("1.0072")
    assert estimate_cost(costly_cpu, 60, cpu_seconds=30) == Decimal("0.0312")
    short = cheapest(expected_duration_s=60)
    long = cheapest(expected_duration_s=36_000)
    s1, s2 = short(costly_start), short(costly_cpu)
    assert s1 is not None
    assert s2 is not None
    assert s1 < s2  # a one-minute job minds the start price
    l1, l2 = long(costly_start), long(costly_cpu)
    assert l1 is not None
    assert l2 is not None
    assert l1 > l2  # a ten-hour job minds the CPU price
    assert cheapest(0)(view(fixed="0")) == 1.0
    idle = cheapest(3600, expected_cpu_share=0)
    assert idle(costly_cpu) == idle(view(cpu="0", duration="0.00002"))
    with pytest.raises(ValueError, match="negative"):
        cheapest(-1)


def test_prefer_weighted_and_chain() -> None:
    a = view(node(1), name="a", cpu="0.0001")
    b = view(node(2), name="b", cpu="0.0002")
    price = cheapest(3600)
    favourite = prefer([node(2).upper().replace("0X", "0x")])
    assert favourite(b) == 1.0
    assert favourite(a) == 0.0
    assert prefer(["a"], bonus=5)(a) == 5
    combined = weighted((price, 1.0), (favourite, 0.5))
    ca, cb = combined(a), combined(b)
    assert ca is not None
    assert cb is not None
    assert cb > ca
    assert weighted((price, 1.0), (lambda o: None, 1.0))(a) is None

    gated = chain(DenyList(names=["b"]), price, favourite)
    assert gated(a) == price(a)
    assert gated(b) is None
    assert chain()(a) == 0.0
    assert chain(price, lambda o: None)(a) is None

    # A user's scorer is any callable of the same shape.
    def by_threads(o: OfferView) -> float | None:
        return None if o.threads is None else float(o.threads)

    assert chain(by_threads)(a) is None


# -- Bans ---------------------------------------------------------------------------------------


def test_ban_grows_and_expires() -> None:
    bans = ProviderBans(base=60, factor=2, max_ban=300, forget_after=600)
    first = bans.ban(NODE, "failed signing", now=0)
    assert (first.since, first.until, first.offences) == (0, 60, 1)
    assert bans.is_banned(NODE, 59.9) == first
    assert bans.is_banned(NODE.upper().replace("0X", "0x"), 30) == first
    assert bans.is_banned(NODE, 60) is None
    second = bans.ban(NODE, "broken agreement", now=100)
    assert (second.duration, second.offences, second.reason) == (120, 2, "broken agreement")
    third = bans.ban(NODE, "failed start", now=300)
    assert third.duration == 240
    fourth = bans.ban(NODE, "failed start", now=600)
    assert fourth.duration == 300  # capped
    assert [b.provider_id for b in bans.banned(700)] == [NODE]
    # Quiet for forget_after after the ban ended: offences forgotten, record pruned.
    bans.prune(900 + 600)
    assert len(bans) == 0
    assert bans.ban(NODE, "again", now=2000).duration == 60


def test_ban_while_banned_never_shortens() -> None:
    bans = ProviderBans(base=100, factor=1, max_ban=100)
    bans.ban(NODE, "x", now=0)
    again = bans.ban(NODE, "y", now=10)
    assert again.until == 110
    assert again.offences == 2
    bans.forgive(NODE)
    assert bans.is_banned(NODE, 20) is None
    assert bans.record(NODE) is None


def test_bans_memory_is_bounded() -> None:
    bans = ProviderBans(base=10, max_ban=10, forget_after=0, max_entries=50)
    for i in range(1000):
        bans.ban(node(i), "failed", now=float(i))
        assert len(bans) <= 10 + 1
    full = ProviderBans(base=1000, max_ban=1000, max_entries=50)
    for i in range(1000):
        full.ban(node(i), "failed", now=float(i))
    assert len(full) == 50
    assert full.is_banned(node(999), 999) is not None


@pytest.mark.parametrize(
    "kwargs",
    [{"base": 0}, {"base": 10, "max_ban": 5}, {"factor": 0.5}, {"forget_after": -1}],
)
def test_bad_ban_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ProviderBans(**kwargs)  # type: ignore[arg-type]


@given(
    base=st.floats(0.001, 1000),
    factor=st.floats(1, 10),
    extra=st.floats(0, 1e6),
    gaps=st.lists(st.floats(0, 100), min_size=1, max_size=40),
)
@settings(max_examples=200)
def test_ban_durations_monotone_and_bounded(
    base: float, factor: float, extra: float, gaps: list[float]
) -> None:
    max_ban = base + extra
    bans = ProviderBans(base=base, factor=factor, max_ban=max_ban, forget_after=1e9)
    now = 0.0
    previous = 0.0
    for i, gap in enumerate(gaps, start=1):
        now += gap
        ban = bans.ban(NODE, "failed", now=now)
        assert ban.offences == i
        assert base * (1 - 1e-9) <= ban.duration <= max_ban * (1 + 1e-9) + gap
        assert ban.until >= now
        assert bans.is_banned(NODE, now) == ban
        # The offence's own duration (without carry-over) is monotone in offences.
        own = bans.duration_for(i)
        assert previous <= own <= max_ban
        assert ban.duration == pytest.approx(own)
        previous = own


# -- Pool ---------------------------------------------------------------------------------------


def test_pool_keeps_newest_per_provider_and_best_first() -> None:
    pool = OfferPool(max_size=10, ttl=100)
    assert pool.add(view(node(1), cpu="0.0001"), now=0) is not None
    assert pool.add(view(node(2), cpu="0.0002"), now=1) is not None
    # A newer proposal from provider 1 replaces its earlier one, even if worse.
    assert pool.add(view(node(1), cpu="0.0003"), now=2) is not None
    assert len(pool) == 2
    assert node(1) in pool
    best = pool.pop_best(now=3)
    assert best is not None
    assert best.offer.provider_id == node(2)
    assert [e.offer.provider_id for e in pool.entries()] == [node(1)]
    assert pool.remove(node(1)) is not None
    assert pool.pop_best(now=3) is None


def test_pool_expires_and_rejects() -> None:
    pool = OfferPool(max_size=10, ttl=30, scorer=chain(PriceCaps(max_fixed=0), cheapest()))
    assert pool.add(view(node(1), fixed="1"), now=0) is None
    assert pool.add(view(node(2)), now=0) is not None
    assert pool.add(view(node(3)), now=0, score=float("nan")) is None
    assert pool.peek_best(now=29.9) is not None
    assert pool.peek_best(now=30) is None
    assert len(pool) == 0


def test_pool_expires_by_age_even_when_the_clock_stepped_back() -> None:
    pool = OfferPool(max_size=10, ttl=10)
    pool.add(view(node(1)), now=5.0, score=1.0)
    pool.add(view(node(2)), now=0.0, score=2.0)  # added later, but older
    pool.prune(now=12.0)
    assert [e.offer.provider_id for e in pool.entries()] == [node(1)]
    assert pool.pop_best(now=12.0) is not None
    assert pool.pop_best(now=12.0) is None


def test_pool_skips_banned() -> None:
    bans = ProviderBans(base=60)
    pool = OfferPool(max_size=10, ttl=1000, bans=bans)
    pool.add(view(node(1), cpu="0.0001"), now=0)
    pool.add(view(node(2), cpu="0.0002"), now=0)
    bans.ban(node(1), "failed start", now=0)
    best = pool.pop_best(now=10)
    assert best is not None
    assert best.offer.provider_id == node(2)
    assert pool.pop_best(now=10) is None
    assert len(pool) == 1  # the banned provider's offer waits out the ban
    again = pool.pop_best(now=60)
    assert again is not None
    assert again.offer.provider_id == node(1)


def test_pool_evicts_worst_when_full() -> None:
    pool = OfferPool(max_size=2, ttl=1000)
    pool.add(view(node(1)), now=0, score=1)
    pool.add(view(node(2)), now=0, score=3)
    assert pool.add(view(node(3)), now=0, score=0) is None  # the worst of a full pool
    assert pool.add(view(node(4)), now=0, score=2) is not None
    assert sorted(e.score for e in pool.entries()) == [2, 3]


def test_localnet_market_end_to_end() -> None:
    specs = [
        ProviderSpec(name="testnet-cheap", price_cpu_sec=Decimal("0.00005")),
        ProviderSpec(name="testnet-pricey", price_start=Decimal("0.5")),
        ProviderSpec(name="testnet-small", cpu_threads=1, price_cpu_sec=Decimal("0.00001")),
        ProviderSpec(name="evil-1", price_cpu_sec=Decimal("0")),
        ProviderSpec(name="testnet-wasm", runtime="wasmtime", price_cpu_sec=Decimal("0")),
    ]
    offers = [OfferView.from_proposal(proposal(s, node(i))) for i, s in enumerate(specs)]
    accept = all_of(
        PriceCaps.per_hour(max_cpu_hour="0.5", max_duration_hour="0.1", max_fixed="0.1"),
        DenyList(patterns=["evil-*"]),
        MinResources(threads=2, runtime="vm"),
    )
    verdicts = {o.name: accept(o) for o in offers}
    assert [n for n, v in verdicts.items() if v.accepted] == ["testnet-cheap"]
    assert "start" in verdicts["testnet-pricey"].reason
    assert "CPU threads" in verdicts["testnet-small"].reason
    assert "deny list" in verdicts["evil-1"].reason
    assert "runtime" in verdicts["testnet-wasm"].reason

    bans = ProviderBans()
    pool = OfferPool(
        max_size=3, ttl=300, scorer=chain(DenyList(patterns=["evil-*"]), cheapest(600)), bans=bans
    )
    kept = [o.name for o in offers if pool.add(o, now=0) is not None]
    assert len(pool) == 3
    assert "evil-1" not in kept
    bans.ban(node(4), "failed start", now=1)  # testnet-wasm, the cheapest
    best = pool.pop_best(now=2)
    assert best is not None
    assert best.offer.name == "testnet-small"


def test_bad_pool_settings() -> None:
    with pytest.raises(ValueError, match="max_size"):
        OfferPool(max_size=0, ttl=1)


op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 15), st.integers(0, 100), st.floats(-2, 5)),
    st.tuples(st.just("ban"), st.integers(0, 15), st.just(0), st.floats(-2, 5)),
    st.tuples(st.just("pop"), st.just(0), st.just(0), st.floats(-2, 5)),
)


@given(max_size=st.integers(1, 8), ops=st.lists(op, max_size=60), backwards=st.booleans())
@settings(max_examples=300)
def test_pool_bounded_and_pops_best_unbanned(
    max_size: int, ops: list[tuple[str, int, int, float]], backwards: bool
) -> None:
    """Against a model; ``backwards``: the clock may also step back (the pool then cannot
    rely on its entries being in the order of their age)."""
    ttl = 20.0
    bans = ProviderBans(base=5, factor=2, max_ban=30)
    pool = OfferPool(max_size=max_size, ttl=ttl, bans=bans)
    # Model: provider -> (score, added, seq), newest wins per provider.
    model: dict[str, tuple[float, float, int]] = {}
    now = 0.0
    seq = 0
    for kind, who, score, gap in ops:
        now += gap if backwards else abs(gap)
        model = {k: v for k, v in model.items() if now - v[1] < ttl}
        if kind == "add":
            seq += 1
            model[node(who)] = (float(score), now, seq)
            entry = pool.add(view(node(who)), now=now, score=float(score))
            if len(model) > max_size:
                worst = min(model, key=lambda k: (model[k][0], model[k][2]))
                del model[worst]
                assert (entry is None) == (worst == node(who))
        elif kind == "ban":
            bans.ban(node(who), "failed", now=now)
        else:
            candidates = [k for k in model if bans.is_banned(k, now) is None]
            got = pool.pop_best(now=now)
            if not candidates:
                assert got is None
            else:
                best = max(candidates, key=lambda k: (model[k][0], model[k][2]))
                assert got is not None
                assert got.offer.provider_id == best
                assert got.score == model[best][0]
                del model[best]
        assert len(pool) <= max_size
        pool.prune(now)
        assert {e.offer.provider_id for e in pool.entries()} == set(model)
