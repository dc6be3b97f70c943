""":meth:`RestProviderPort.watch_ends` against scripted daemon replies: the agreement events
it follows wake :meth:`RestProviderPort.wait_ended`; failed polls are tried again; the cursor
is the daemon's own timestamp."""

from __future__ import annotations

import httpx2
import trio
import trio.testing

from golem_trio.localnet.yagna import RestProviderPort


def _event(kind: str, agreement_id: str, date: str) -> dict[str, object]:
    return {"eventType": kind, "eventDate": date, "agreementId": agreement_id}


async def test_ends_wake_their_waiters_and_failures_are_ridden_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    replies: list[httpx2.Response] = [
        httpx2.Response(500, json={"message": "daemon restarting"}),
        httpx2.Response(
            200,
            json=[
                _event("AgreementApprovedEvent", "a1", "2026-12-07T10:00:00.123456789Z"),
                _event("AgreementTerminatedEvent", "a1", "2026-12-07T10:00:01.5Z"),
                # A malformed entry is skipped, not fatal.
                {"eventType": "AgreementTerminatedEvent"},
            ],
        ),
        httpx2.Response(
            200, json=[_event("AgreementCancelledEvent", "a2", "2026-12-07T10:00:02Z")]
        ),
    ]
    seen: list[httpx2.Request] = []

    async def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        assert request.url.path == "/market-api/v1/agreementEvents"
        if replies:
            await trio.lowlevel.checkpoint()
            return replies.pop(0)
        # Nothing more happens: the poll waits out its timeout.
        await trio.sleep(float(request.url.params["timeout"]))
        return httpx2.Response(200, json=[])

    async with httpx2.AsyncClient(
        base_url="http://daemon", transport=httpx2.MockTransport(answer)
    ) as client:
        port = RestProviderPort(client, "0x" + "1" * 40, app_session_id="session-1")
        ended: list[str] = []

        async def wait(agreement_id: str) -> None:
            await port.wait_ended(agreement_id)
            ended.append(agreement_id)

        async with trio.open_nursery() as nursery:
            await nursery.start(port.watch_ends)
            assert port.tells_ends
            with trio.fail_after(10):
                async with trio.open_nursery() as waiters:
                    waiters.start_soon(wait, "a1")
                    waiters.start_soon(wait, "a2")
            # An end seen before anybody waits is still told; one never seen is not.
            with trio.fail_after(1):
                await port.wait_ended("a1")
            with trio.move_on_after(30) as never:
                await port.wait_ended("a3")
            assert never.cancelled_caught
            nursery.cancel_scope.cancel()
    assert not port.tells_ends
    assert sorted(ended) == ["a1", "a2"]
    params = [dict(r.url.params) for r in seen]
    assert all(p["appSessionId"] == "session-1" for p in params)
    # After the failure the same cursor is asked again; then the last event's own date.
    assert params[0]["afterTimestamp"] == params[1]["afterTimestamp"]
    assert params[2]["afterTimestamp"] == "2026-12-07T10:00:01.5Z"
    assert params[3]["afterTimestamp"] == "2026-12-07T10:00:02Z"
    assert params[0]["timeout"] == "5.0"
