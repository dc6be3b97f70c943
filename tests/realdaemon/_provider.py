"""A minimal provider agent for tests: raw market-API calls made with the provider's app key.

The golem_trio client is requestor-only, so the provider side of a negotiation is played
here with plain ``httpx2`` calls against ``/market-api/v1/offers…`` and
``/market-api/v1/agreements/{id}/approve``. Every call is bounded by a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
import trio

JsonDict = dict[str, Any]


class ProviderError(AssertionError):
    """The daemon answered the provider side with an unexpected status."""


class RawProvider:
    """The provider's side of the market API, one method per call."""

    def __init__(self, api_url: str, app_key: str) -> None:
        self._market = f"{api_url.rstrip('/')}/market-api/v1"
        # trust_env=False: loopback only, whatever proxy the environment names.
        self._client = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {app_key}"},
            timeout=httpx2.Timeout(10.0),
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"RawProvider({self._market!r})"

    async def __aenter__(self) -> RawProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            await self._client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...],
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        read_timeout: float = 10.0,
    ) -> Any:
        response = await self._client.request(
            method,
            self._market + path,
            json=body,
            params=params,
            timeout=httpx2.Timeout(10.0, read=read_timeout),
        )
        if response.status_code not in expect:
            raise ProviderError(
                f"provider {method} {path} -> {response.status_code} {response.text[:300]!r}"
            )
        if not response.content.strip():
            return None
        return response.json()

    async def subscribe_offer(self, properties: Mapping[str, Any], constraints: str) -> str:
        offer_id = await self._call(
            "POST",
            "/offers",
            body={"properties": dict(properties), "constraints": constraints},
            expect=(201,),
        )
        assert isinstance(offer_id, str)
        return offer_id

    async def unsubscribe_offer(self, offer_id: str) -> None:
        """Withdraw an offer; one that is already gone is fine."""
        await self._call("DELETE", f"/offers/{offer_id}", expect=(204, 404, 410))

    async def collect(
        self, offer_id: str, *, wait: float = 2.0, max_events: int = 10
    ) -> list[JsonDict]:
        """Long-poll the offer's events; the daemon answers ``[]`` after ``wait`` seconds."""
        events = await self._call(
            "GET",
            f"/offers/{offer_id}/events",
            params={"timeout": wait, "maxEvents": max_events},
            expect=(200,),
            read_timeout=wait + 10.0,
        )
        assert isinstance(events, list)
        return events

    async def wait_for_event(
        self,
        offer_id: str,
        event_type: str,
        *,
        where: Callable[[JsonDict], bool] = lambda _event: True,
        within: float = 20.0,
    ) -> JsonDict:
        """Poll the offer's events until one of ``event_type`` matches ``where``."""
        deadline = time.monotonic() + within
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            for event in await self.collect(offer_id, wait=min(2.0, max(left, 0.1))):
                seen.append(str(event.get("eventType")))
                if event.get("eventType") == event_type and where(event):
                    return event
        raise ProviderError(f"no matching {event_type} on offer {offer_id} (saw {seen})")

    async def counter(
        self,
        offer_id: str,
        proposal_id: str,
        properties: Mapping[str, Any],
        constraints: str,
    ) -> str:
        """Answer the requestor's proposal with our own (it becomes a Draft for them)."""
        new_id = await self._call(
            "POST",
            f"/offers/{offer_id}/proposals/{proposal_id}",
            body={"properties": dict(properties), "constraints": constraints},
            expect=(200, 201),
        )
        assert isinstance(new_id, str)
        return new_id

    async def approve(
        self, agreement_id: str, *, app_session_id: str | None = None, wait: float = 10.0
    ) -> None:
        params: JsonDict = {"timeout": wait}
        if app_session_id is not None:
            params["appSessionId"] = app_session_id
        await self._call(
            "POST",
            f"/agreements/{agreement_id}/approve",
            params=params,
            expect=(200, 204),
            read_timeout=wait + 10.0,
        )

    async def reject_agreement(self, agreement_id: str, message: str) -> None:
        await self._call(
            "POST",
            f"/agreements/{agreement_id}/reject",
            body={"message": message},
            expect=(200, 204),
        )
