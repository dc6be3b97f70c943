"""The provider model's negotiation rules, as properties over any demand."""

from __future__ import annotations

import datetime as dt
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_trio.localnet.providers import (
    ACCEPT_TIMEOUT,
    DEBIT_NOTE_INTERVAL,
    PAYMENT_TIMEOUT,
    Counter,
    ProviderSpec,
    Rejection,
    negotiate,
    offer_properties,
)

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
NODE = "0x" + "ab" * 20

specs = st.builds(
    ProviderSpec,
    name=st.just("p"),
    accept_timeout=st.integers(60, 600),
    min_accept_timeout=st.integers(1, 60),
    debit_note_interval=st.integers(10, 600),
    payment_timeout_range=st.one_of(
        st.none(), st.tuples(st.integers(60, 3600), st.integers(3600, 86400))
    ),
)
maybe_int = st.one_of(st.none(), st.integers(0, 100_000))


@st.composite
def demands(draw: st.DrawFn) -> dict[str, Any]:
    expires_in = draw(st.floats(-100, 200_000, allow_nan=False))
    demand: dict[str, Any] = {
        "golem.srv.comp.expiration": int((NOW.timestamp() + expires_in) * 1000)
    }
    for key in (ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, PAYMENT_TIMEOUT):
        value = draw(maybe_int)
        if value is not None:
            demand[key] = value
    return demand


@settings(max_examples=300, deadline=None)
@given(specs, demands())
def test_a_counter_stays_within_the_providers_limits(
    spec: ProviderSpec, demand: dict[str, Any]
) -> None:
    answer = negotiate(spec, NODE, demand, NOW)
    left = demand["golem.srv.comp.expiration"] / 1000 - NOW.timestamp()
    if isinstance(answer, Rejection):
        assert answer.message
        return
    assert isinstance(answer, Counter)
    terms = answer.terms
    assert left >= spec.min_expiration
    assert terms.debit_note_interval >= spec.debit_note_interval
    assert answer.properties[DEBIT_NOTE_INTERVAL] == terms.debit_note_interval
    if terms.accept_timeout is None:
        assert left <= spec.max_expiration_without_deadline
        assert ACCEPT_TIMEOUT not in answer.properties
    else:
        assert spec.min_accept_timeout <= terms.accept_timeout <= spec.accept_timeout
        assert answer.properties[ACCEPT_TIMEOUT] == terms.accept_timeout
    if terms.payment_timeout is None:
        assert left <= spec.max_expiration_without_payments
        assert PAYMENT_TIMEOUT not in answer.properties
    else:
        assert spec.payment_timeout_range is not None
        low, high = spec.payment_timeout_range
        assert low <= terms.payment_timeout <= high
    # The rest of the Draft is the provider's offer.
    offer = offer_properties(spec, NODE)
    for key, value in offer.items():
        if key not in (ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, PAYMENT_TIMEOUT):
            assert answer.properties[key] == value


@settings(max_examples=200, deadline=None)
@given(specs, demands())
def test_a_counter_is_a_fixed_point(spec: ProviderSpec, demand: dict[str, Any]) -> None:
    """Countering the provider's own Draft gives the same terms back, so a requestor that
    accepts the Draft's terms ends the negotiation."""
    answer = negotiate(spec, NODE, demand, NOW)
    if isinstance(answer, Rejection):
        return
    again = negotiate(spec, NODE, {**demand, **answer.properties}, NOW)
    assert isinstance(again, Counter)
    assert again.terms == answer.terms


def test_rejections_say_whether_they_are_final() -> None:
    spec = ProviderSpec(name="p")
    soon = {"golem.srv.comp.expiration": int((NOW.timestamp() + 60) * 1000)}
    answer = negotiate(spec, NODE, soon, NOW)
    assert isinstance(answer, Rejection)
    assert answer.reason() == {
        "message": answer.message,
        "golem.proposal.rejection.is-final": True,
    }
    long_without_deadline = {"golem.srv.comp.expiration": int((NOW.timestamp() + 7200) * 1000)}
    assert isinstance(negotiate(spec, NODE, long_without_deadline, NOW), Rejection)
    no_payments = ProviderSpec(name="p", payment_timeout_range=None)
    asks_payments = {
        "golem.srv.comp.expiration": int((NOW.timestamp() + 900) * 1000),
        PAYMENT_TIMEOUT: 3600,
    }
    assert isinstance(negotiate(no_payments, NODE, asks_payments, NOW), Rejection)


async def test_provider_terminating_an_agreement_the_requestor_just_ended_is_a_no_op() -> None:
    # Both sides end an agreement at the same moment: the provider's own terminate comes
    # second and finds it gone (410), which must not tear the network down.
    from _support import negotiate_agreement

    from golem_trio.localnet import ProviderSpec, open_localnet

    async with open_localnet([ProviderSpec(name="p0")]) as net:
        identity, agent = net.providers[0]
        requestor = net.requestor.node_id
        valid_to = net.daemon.clock.now() + dt.timedelta(hours=1)
        agreement_id = await negotiate_agreement(
            net.market, requestor, identity.node_id, valid_to=valid_to
        )
        net.market.terminate_agreement(requestor, agreement_id, {"message": "done"})
        await agent.port.terminate_agreement(
            agreement_id, {"message": "late", "golem.provider.code": "Interrupted"}
        )
        assert net.market.agreements[agreement_id].terminator == "Requestor"


class VanishingRequestor:
    """A provider port on which every requestor's proposal and agreement is gone by the
    time the provider answers (the demand was withdrawn, the agreement cancelled)."""

    def __init__(self) -> None:
        self.rounds = 0
        self.tried: list[str] = []
        self.served = trio.Event()

    async def subscribe_offer(self, properties: Any, constraints: str) -> str:
        await trio.lowlevel.checkpoint()
        return "offer-1"

    async def collect_demands(self, offer_id: str, wait: float) -> list[Any]:
        await trio.lowlevel.checkpoint()
        self.rounds += 1
        if self.rounds == 1:
            demand = {
                "golem.srv.comp.expiration": int((NOW.timestamp() + 3600) * 1000),
                ACCEPT_TIMEOUT: 120,
            }
            proposal = {"proposalId": "R-1", "properties": demand, "constraints": "()"}
            return [{"eventType": "ProposalEvent", "proposal": proposal}]
        if self.rounds == 2:
            return [{"eventType": "AgreementEvent", "agreement": {"agreementId": "a-1"}}]
        self.served.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def counter_proposal(self, *args: Any) -> str:
        await trio.lowlevel.checkpoint()
        self.tried.append("counter")
        raise RuntimeError("Subscription [R-1] wasn't found")

    async def approve_agreement(self, agreement_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self.tried.append("approve")
        raise RuntimeError("agreement a-1 was cancelled")


async def test_a_provider_lives_on_when_the_requestor_withdraws_mid_answer() -> None:
    from golem_trio.localnet.providers import ProviderAgent

    port = VanishingRequestor()
    spec = ProviderSpec(name="p", approval_delay=0.0)
    agent = ProviderAgent(spec, NODE, port, lambda: NOW)  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await port.served.wait()
            await trio.sleep(0.1)  # the approval's task has run by now
            nursery.cancel_scope.cancel()
    assert port.tried == ["counter", "approve"]
    assert agent.lives == {}
    assert port.rounds == 3
