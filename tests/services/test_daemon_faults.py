"""Each background loop rides out a bad reply: one malformed reply, or five 503s in a row (as
many as the client's own retries take), on the debit-note and invoice feeds, offer
collection, the agreement watcher and the polls for exec results no longer end the engine;
the daemon's monitor reports the outage and the recovery as events. In virtual time, on an
in-process LocalNet whose transport injects the faults."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import trio
import trio.testing
from _services_support import EPOCH, SCRIPTS, BaseService, Op, RecordingRuntime

from golem_trio import Golem
from golem_trio.events import DaemonAvailable, DaemonUnavailable, InstanceRestarting
from golem_trio.localnet import ProviderSpec, RuntimeContext, ledger, open_localnet
from golem_trio.services import ServiceState
from golem_trio.testing import assert_invariants

BUDGET = 10.0

#: The routes of each loop (a regular expression on the request's path).
LOOPS = {
    "debit-note events": r"/payment-api/v1/debitNoteEvents$",
    "invoice events": r"/payment-api/v1/invoiceEvents$",
    "offer collection": r"/market-api/v1/demands/[^/]+/events$",
    "agreement events": r"/market-api/v1/agreementEvents$",
    "exec results": r"/activity-api/v1/activity/[^/]+/exec/[^/]+$",
}

#: One malformed reply; five 503s in a row (the client's retry policy tries five times).
FAULTS = {"malformed": ["malformed"], "five 503s": ["503"] * 5}

_HTML = b"<html><body><h1>503 Service Unavailable</h1></body></html>"


class FaultTransport(httpx2.AsyncBaseTransport):
    """Answers the next requests on a route with queued faults; forwards the rest."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.route: re.Pattern[str] | None = None
        self.queue: list[str] = []
        self.injected = 0
        self.drained = trio.Event()

    def inject(self, route: str, faults: list[str]) -> None:
        self.route = re.compile(route)
        self.queue = list(faults)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.queue and self.route is not None and self.route.search(request.url.path):
            kind = self.queue.pop(0)
            self.injected += 1
            if not self.queue:
                self.drained.set()
            await trio.lowlevel.checkpoint()
            if kind == "503":
                return httpx2.Response(503, headers={"Content-Type": "text/html"}, content=_HTML)
            return httpx2.Response(
                200, headers={"Content-Type": "application/json"}, content=b'[{"eventType": "'
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class BusyService(BaseService):
    """Runs a short command every few seconds, so that exec results are always polled."""

    async def run(self) -> None:
        while True:
            script = self._ctx.new_script()
            script.run("/bin/sleep", "3")
            await script
            await trio.sleep(1)


@pytest.fixture
async def world(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, FaultTransport, list[object]]]:
    log: list[Op] = []

    def runtime(context: RuntimeContext) -> RecordingRuntime:
        return RecordingRuntime(context, log, scripts=SCRIPTS)

    async with open_localnet([ProviderSpec(name="p0")], epoch=EPOCH, runtime=runtime) as net:
        transport = FaultTransport(net.transport())
        monkeypatch.setattr(net, "transport", lambda: transport)
        yield net, transport, []


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("loop", sorted(LOOPS))
async def test_a_bad_reply_does_not_end_the_engine(
    autojump_clock: trio.testing.MockClock,
    world: tuple[Any, FaultTransport, list[object]],
    loop: str,
    fault: str,
) -> None:
    net, transport, events = world
    async with Golem(
        budget=BUDGET, localnet=net, handle_signals=False, event_consumer=events.append
    ) as golem:
        cluster = await golem.run_service(
            BusyService, num_instances=1, expiration=net.now() + dt.timedelta(hours=1)
        )
        with trio.fail_after(120):
            await cluster.wait_running()
        # Debit notes come every 120 s: let the first ones come while the fault waits.
        transport.inject(LOOPS[loop], FAULTS[fault])
        with trio.fail_after(300):
            await transport.drained.wait()
        await trio.sleep(150)
        (instance,) = cluster.records
        assert instance.state is ServiceState.RUNNING
        assert instance.lives == 1
        assert golem.operative
    assert transport.injected == len(FAULTS[fault])
    assert not [e for e in events if isinstance(e, InstanceRestarting)]
    down = [e for e in events if isinstance(e, DaemonUnavailable)]
    back = [e for e in events if isinstance(e, DaemonAvailable)]
    assert down, "the outage was reported"
    assert back, "the recovery was reported"
    assert back[0].at >= down[0].since
    assert_invariants(ledger(net), budget=BUDGET)
