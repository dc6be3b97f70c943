"""Payments on a local chain: the real daemon pays a provider in tokens on ``anvil``.

One daemon plays both sides (the requestor and the provider identity), with its
``erc20-holesky-tglm`` platform pointed at a :class:`LocalChain`. The flow is the one a
requestor and a provider agent go through, all in plain REST calls with each side's app key:
agreement, allocation, activity (the provider agent reports its state over REST; no exe-unit
is needed), debit note, invoice, acceptance, payment on the chain, ``InvoiceSettledEvent``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx2
import pytest
import trio

from golem_trio.localnet.yagna import (
    LOCAL_CHAIN_ID,
    PAYMENT_PLATFORM,
    AnvilNotInstalled,
    LocalChain,
    LocalChainError,
    YagnaNode,
    find_anvil_binary,
    from_base_units,
    load_token_artifact,
    to_base_units,
)

from ._provider import RawProvider

TEST_DEADLINE = 45.0  # seconds; the flow normally takes about 10
REQUESTOR_FUNDS = Decimal(1000)
DEBIT_NOTE_AMOUNT = Decimal("0.1")
INVOICE_AMOUNT = Decimal("0.5")
RUNTIME = "golem-trio-pay-test"


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalChain]:
    """anvil on loopback; a missing binary fails the tests (never skips) with the install hint."""
    missing: str | None = None
    try:
        find_anvil_binary()
    except AnvilNotInstalled as exc:
        missing = str(exc)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    with LocalChain.start() as local_chain:
        yield local_chain


@pytest.fixture(scope="module")
def paying_node(chain: LocalChain) -> Iterator[YagnaNode]:
    """A daemon of its own whose ``erc20-holesky-tglm`` platform pays on ``chain``."""
    with YagnaNode.start(chain=chain, requestor_tglm=REQUESTOR_FUNDS) as node:
        yield node


class Rest:
    """Plain REST calls against the daemon as one identity; every call is bounded."""

    def __init__(self, api_url: str, app_key: str, who: str) -> None:
        self._who = who
        # trust_env=False: loopback only, whatever proxy the environment names.
        self._client = httpx2.AsyncClient(
            base_url=api_url,
            headers={"Authorization": f"Bearer {app_key}"},
            timeout=httpx2.Timeout(10.0),
            trust_env=False,
        )

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200,),
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        read_timeout: float = 10.0,
    ) -> Any:
        response = await self._client.request(
            method,
            path,
            json=body,
            params=params,
            timeout=httpx2.Timeout(10.0, read=read_timeout),
        )
        assert response.status_code in expect, (
            f"{self._who} {method} {path} -> {response.status_code} {response.text[:400]!r}"
        )
        if not response.content.strip():
            return None
        return response.json()

    async def events(
        self, path: str, after: dt.datetime, wait: float = 1.0, **params: Any
    ) -> list[dict[str, Any]]:
        events = await self.call(
            "GET",
            path,
            params={"timeout": wait, "afterTimestamp": _iso(after), **params},
            expect=(200, 408),  # the activity feed answers an empty wait with 408
            read_timeout=wait + 10.0,
        )
        if isinstance(events, dict) and events.get("message") == "Timeout":
            return []
        assert isinstance(events, list), events
        return events

    async def wait_for_event(
        self,
        path: str,
        event_type: str,
        key: str,
        value: str,
        after: dt.datetime,
        *,
        within: float = 20.0,
    ) -> dict[str, Any]:
        """Poll an event feed until an event of ``event_type`` with ``key == value`` shows."""
        seen: list[str] = []
        with trio.move_on_after(within):
            while True:
                for event in await self.events(path, after):
                    seen.append(str(event.get("eventType")))
                    if event.get("eventType") == event_type and event.get(key) == value:
                        return event
        raise AssertionError(f"{self._who}: no {event_type} for {value} on {path} (saw {seen})")


@pytest.fixture
async def requestor(paying_node: YagnaNode) -> AsyncIterator[Rest]:
    rest = Rest(paying_node.api_url, paying_node.requestor_app_key, "requestor")
    try:
        yield rest
    finally:
        await rest.aclose()


@pytest.fixture
async def provider_rest(paying_node: YagnaNode) -> AsyncIterator[Rest]:
    rest = Rest(paying_node.api_url, paying_node.provider_app_key, "provider")
    try:
        yield rest
    finally:
        await rest.aclose()


@pytest.fixture
async def provider_market(paying_node: YagnaNode) -> AsyncIterator[RawProvider]:
    async with RawProvider(paying_node.api_url, paying_node.provider_app_key) as agent:
        yield agent


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _same_proposal(a: str, b: str) -> bool:
    """Each side names a proposal by its own prefix (``R-`` / ``P-``) and a shared hash."""
    return a.partition("-")[2] == b.partition("-")[2]


# ------------------------------------------------------------------------- the agreement


def _offer(node: YagnaNode, run_id: str) -> dict[str, Any]:
    return {
        "properties": {
            "golem.node.id.name": "golem-trio-pay-test-provider",
            "golem.node.debug.subnet": f"pay-{run_id[:12]}",
            "test.run.id": run_id,
            "golem.runtime.name": RUNTIME,
            "golem.inf.cpu.threads": 1,
            "golem.com.scheme": "payu",
            "golem.com.pricing.model": "linear",
            "golem.com.pricing.model.linear.coeffs": [0.0, 0.0, 0.0],
            "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
            f"golem.com.payment.platform.{PAYMENT_PLATFORM}.address": node.provider_id,
            "golem.com.payment.protocol.version": "3",
            "golem.com.payment.debit-notes.accept-timeout?": 240,
        },
        "constraints": f"(golem.node.debug.subnet=pay-{run_id[:12]})",
    }


def _demand(node: YagnaNode, run_id: str) -> dict[str, Any]:
    return {
        "properties": {
            "golem.node.debug.subnet": f"pay-{run_id[:12]}",
            "golem.srv.comp.expiration": int(time.time() * 1000) + 30 * 60 * 1000,
            f"golem.com.payment.platform.{PAYMENT_PLATFORM}.address": node.requestor_id,
            "golem.com.payment.chosen-platform": PAYMENT_PLATFORM,
            "golem.com.payment.protocol.version": "3",
            "golem.com.payment.debit-notes.accept-timeout?": 240,
        },
        "constraints": f"(&(golem.runtime.name={RUNTIME})(test.run.id={run_id}))",
    }


async def _proposal_from(
    requestor: Rest, demand_id: str, run_id: str, state: str
) -> dict[str, Any]:
    seen: list[str] = []
    with trio.move_on_after(20):
        while True:
            events = await requestor.call(
                "GET",
                f"/market-api/v1/demands/{demand_id}/events",
                params={"timeout": 2.0, "maxEvents": 10},
                read_timeout=12.0,
            )
            for event in events:
                proposal = event.get("proposal") or {}
                seen.append(f"{event.get('eventType')}:{proposal.get('state')}")
                if (
                    proposal.get("properties", {}).get("test.run.id") == run_id
                    and proposal.get("state") == state
                ):
                    return dict(proposal)
    raise AssertionError(f"no {state} proposal on demand {demand_id} (saw {seen})")


async def _approved_agreement(
    node: YagnaNode, requestor: Rest, provider: RawProvider, session: str
) -> tuple[str, str, str]:
    """Negotiate and approve an agreement; return (agreement, offer, demand) ids."""
    run_id = uuid.uuid4().hex
    offer, demand = _offer(node, run_id), _demand(node, run_id)
    offer_id = await provider.subscribe_offer(offer["properties"], offer["constraints"])
    demand_id = await requestor.call("POST", "/market-api/v1/demands", body=demand, expect=(201,))
    initial = await _proposal_from(requestor, demand_id, run_id, "Initial")
    ours = await requestor.call(
        "POST",
        f"/market-api/v1/demands/{demand_id}/proposals/{initial['proposalId']}",
        body=demand,
        expect=(200, 201),
    )
    draft_event = await provider.wait_for_event(
        offer_id, "ProposalEvent", where=lambda e: _same_proposal(e["proposal"]["proposalId"], ours)
    )
    await provider.counter(
        offer_id, draft_event["proposal"]["proposalId"], offer["properties"], offer["constraints"]
    )
    draft = await _proposal_from(requestor, demand_id, run_id, "Draft")
    agreement_id = await requestor.call(
        "POST",
        "/market-api/v1/agreements",
        body={"proposalId": draft["proposalId"], "validTo": _iso(_now() + dt.timedelta(hours=1))},
        expect=(200, 201),
    )
    await requestor.call(
        "POST",
        f"/market-api/v1/agreements/{agreement_id}/confirm",
        params={"appSessionId": session},
        expect=(200, 204),
    )
    await provider.wait_for_event(
        offer_id,
        "AgreementEvent",
        where=lambda e: e["agreement"]["agreementId"] == agreement_id,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: provider.approve(agreement_id, app_session_id=f"{session}-provider")
        )
        await requestor.call(
            "POST",
            f"/market-api/v1/agreements/{agreement_id}/wait",
            params={"timeout": 15},
            expect=(200, 204),
            read_timeout=25.0,
        )
    return agreement_id, offer_id, demand_id


# -------------------------------------------------------------------------- the activity


async def _provider_agent(
    provider: Rest, session: str, since: dt.datetime, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """The provider agent's activity loop: report Initialized on create, Terminated on destroy."""
    task_status.started()
    cursor = since
    while True:
        for event in await provider.events(
            "/activity-api/v1/events", cursor, wait=1.0, appSessionId=session
        ):
            cursor = max(cursor, dt.datetime.fromisoformat(event["eventDate"]))
            kind = next(iter(event["eventType"]))
            state = {"CreateActivity": "Initialized", "DestroyActivity": "Terminated"}.get(kind)
            if state is not None:
                await provider.call(
                    "PUT",
                    f"/activity-api/v1/activity/{event['activityId']}/state",
                    body={"state": [state, None], "reason": None, "errorMessage": None},
                )


# ------------------------------------------------------------------------------ the tests


def test_token_artifact_matches_its_source() -> None:
    """``contracts/token.json`` was built from the ``Token.sol`` beside it (``make token``)."""
    contracts = importlib.resources.files("golem_trio.localnet.yagna").joinpath("contracts")
    source = contracts.joinpath("Token.sol").read_bytes()
    artifact = load_token_artifact()
    assert artifact.source_sha256 == hashlib.sha256(source).hexdigest(), "run `make token`"
    assert artifact.compiler.startswith("solc-js 0.8.26")
    assert artifact.bytecode.startswith("0x60")
    assert artifact.selector("transfer(address,uint256)") == "a9059cbb"


def test_base_units_are_exact() -> None:
    assert to_base_units("0.5") == 5 * 10**17
    assert to_base_units(1000) == 1000 * 10**18
    assert to_base_units("0.000000000000000001") == 1
    assert from_base_units(5 * 10**17) == Decimal("0.5")
    assert str(from_base_units(1000 * 10**18)) == "1000"
    for bad in ("0.0000000000000000001", "-1", "NaN", "one"):
        with pytest.raises(ValueError):
            to_base_units(bad)


def test_local_chain_mints_and_funds(chain: LocalChain) -> None:
    assert chain.chain_id == LOCAL_CHAIN_ID
    assert int(chain.rpc("eth_chainId", []), 16) == LOCAL_CHAIN_ID
    chain.ensure_token()
    account = "0x" + uuid.uuid4().hex.rjust(40, "0")
    before = chain.token_balance(account)
    chain.mint(account, "2.25")
    assert chain.token_balance(account) - before == Decimal("2.25")
    chain.set_eth_balance(account, "3.5")
    assert chain.eth_balance(account) == Decimal("3.5")
    with pytest.raises(LocalChainError):
        chain.deploy_token()  # one token per chain


async def test_invoice_is_paid_on_the_local_chain(
    paying_node: YagnaNode,
    chain: LocalChain,
    requestor: Rest,
    provider_rest: Rest,
    provider_market: RawProvider,
) -> None:
    node = paying_node
    assert node.token_address == chain.token_address
    provider_before = await trio.to_thread.run_sync(chain.token_balance, node.provider_id)
    requestor_before = await trio.to_thread.run_sync(chain.token_balance, node.requestor_id)
    assert requestor_before >= INVOICE_AMOUNT
    session = f"pay-{uuid.uuid4().hex[:8]}"
    started = _now() - dt.timedelta(seconds=1)

    with trio.fail_after(TEST_DEADLINE):
        agreement_id, offer_id, demand_id = await _approved_agreement(
            node, requestor, provider_market, session
        )

        # An allocation larger than the requestor's tokens is refused up front.
        too_much = await requestor.call(
            "POST",
            "/payment-api/v1/allocations",
            body={
                "totalAmount": str(requestor_before + 1),
                "paymentPlatform": PAYMENT_PLATFORM,
                "timeout": _iso(_now() + dt.timedelta(hours=1)),
            },
            expect=(400,),
        )
        assert "Insufficient funds" in str(too_much)

        allocation = await requestor.call(
            "POST",
            "/payment-api/v1/allocations",
            body={
                "totalAmount": "2",
                "paymentPlatform": PAYMENT_PLATFORM,
                "timeout": _iso(_now() + dt.timedelta(hours=1)),
            },
            expect=(201,),
        )
        allocation_id = allocation["allocationId"]
        assert allocation["paymentPlatform"] == PAYMENT_PLATFORM
        assert allocation["address"] == node.requestor_id

        async with trio.open_nursery() as nursery:
            await nursery.start(_provider_agent, provider_rest, f"{session}-provider", started)

            created = await requestor.call(
                "POST",
                "/activity-api/v1/activity",
                body={"agreementId": agreement_id},
                params={"timeout": 15},
                expect=(200, 201),
                read_timeout=25.0,
            )
            activity_id = created if isinstance(created, str) else created["activityId"]

            # Debit note: issued and sent by the provider, accepted by the requestor.
            debit_note = await provider_rest.call(
                "POST",
                "/payment-api/v1/debitNotes",
                body={
                    "activityId": activity_id,
                    "totalAmountDue": str(DEBIT_NOTE_AMOUNT),
                    "usageCounterVector": [1.0, 2.0],
                },
                expect=(201,),
            )
            debit_note_id = debit_note["debitNoteId"]
            await provider_rest.call("POST", f"/payment-api/v1/debitNotes/{debit_note_id}/send")
            await requestor.wait_for_event(
                "/payment-api/v1/debitNoteEvents",
                "DebitNoteReceivedEvent",
                "debitNoteId",
                debit_note_id,
                started,
            )
            await requestor.call(
                "POST",
                f"/payment-api/v1/debitNotes/{debit_note_id}/accept",
                body={
                    "totalAmountAccepted": str(DEBIT_NOTE_AMOUNT),
                    "allocationId": allocation_id,
                },
            )
            await provider_rest.wait_for_event(
                "/payment-api/v1/debitNoteEvents",
                "DebitNoteAcceptedEvent",
                "debitNoteId",
                debit_note_id,
                started,
            )

            await requestor.call(
                "DELETE",
                f"/activity-api/v1/activity/{activity_id}",
                params={"timeout": 10},
                read_timeout=20.0,
            )
            nursery.cancel_scope.cancel()

        # Invoice for the whole agreement, accepted, then paid at once.
        invoice = await provider_rest.call(
            "POST",
            "/payment-api/v1/invoices",
            body={
                "agreementId": agreement_id,
                "activityIds": [activity_id],
                "amount": str(INVOICE_AMOUNT),
                "paymentDueDate": _iso(_now() + dt.timedelta(minutes=5)),
            },
            expect=(201,),
        )
        invoice_id = invoice["invoiceId"]
        await provider_rest.call("POST", f"/payment-api/v1/invoices/{invoice_id}/send")
        await requestor.wait_for_event(
            "/payment-api/v1/invoiceEvents",
            "InvoiceReceivedEvent",
            "invoiceId",
            invoice_id,
            started,
        )
        await requestor.call(
            "POST",
            f"/payment-api/v1/invoices/{invoice_id}/accept",
            body={"totalAmountAccepted": str(INVOICE_AMOUNT), "allocationId": allocation_id},
        )
        await requestor.call(
            "POST",
            f"/market-api/v1/agreements/{agreement_id}/terminate",
            body={"message": "work done", "golem.requestor.code": "Success"},
        )
        # The payment service batches accepted invoices every 300 s by default: pay now.
        paying_since = time.monotonic()
        await requestor.call("POST", f"/payment-api/v1/batchCycle/{PAYMENT_PLATFORM}/now")

        settled = await provider_rest.wait_for_event(
            "/payment-api/v1/invoiceEvents",
            "InvoiceSettledEvent",
            "invoiceId",
            invoice_id,
            started,
            within=30.0,
        )
        settle_seconds = time.monotonic() - paying_since
        assert settled["eventDate"]

        provider_after = await trio.to_thread.run_sync(chain.token_balance, node.provider_id)
        requestor_after = await trio.to_thread.run_sync(chain.token_balance, node.requestor_id)
        assert provider_after - provider_before == INVOICE_AMOUNT
        assert requestor_before - requestor_after == INVOICE_AMOUNT

        # One transfer: the accepted debit note is booked to the activity, the rest of the
        # invoice to the agreement.
        payments = await provider_rest.call("GET", "/payment-api/v1/payments")
        ours = [
            p
            for p in payments
            if agreement_id in {a["agreementId"] for a in p["agreementPayments"]}
        ]
        assert len(ours) == 1, payments
        payment = ours[0]
        assert Decimal(payment["amount"]) == INVOICE_AMOUNT
        assert (payment["payerId"], payment["payeeId"]) == (node.requestor_id, node.provider_id)
        assert payment["paymentPlatform"] == PAYMENT_PLATFORM
        assert [(a["activityId"], Decimal(a["amount"])) for a in payment["activityPayments"]] == [
            (activity_id, DEBIT_NOTE_AMOUNT)
        ]
        assert [Decimal(a["amount"]) for a in payment["agreementPayments"]] == [
            INVOICE_AMOUNT - DEBIT_NOTE_AMOUNT
        ]

        spent = await requestor.call("GET", f"/payment-api/v1/allocations/{allocation_id}")
        assert Decimal(spent["spentAmount"]) == INVOICE_AMOUNT
        assert Decimal(spent["remainingAmount"]) == Decimal(2) - INVOICE_AMOUNT

        await requestor.call("DELETE", f"/payment-api/v1/allocations/{allocation_id}")
        await requestor.call(
            "GET", f"/payment-api/v1/allocations/{allocation_id}", expect=(404, 410)
        )

        await provider_market.unsubscribe_offer(offer_id)
        await requestor.call(
            "DELETE", f"/market-api/v1/demands/{demand_id}", expect=(200, 204, 404, 410)
        )

    print(
        f"paid {INVOICE_AMOUNT} tGLM: provider {provider_before} -> {provider_after}, "
        f"requestor {requestor_before} -> {requestor_after}; settled {settle_seconds:.1f} s "
        f"after the batch cycle"
    )
