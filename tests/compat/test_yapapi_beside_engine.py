"""An engine beside a yapapi app on one daemon (LocalNet served on loopback, wall clock,
scripted runtime): yapapi's unmodified app runs while an engine runs, and another engine runs
after both. yapapi confirms its agreements under no application session and reads the whole
feeds; each engine reads its own session's documents from its own start. Each side pays
exactly its own invoices, from its own allocation, and nobody rejects anything
(docs/architecture.md §5.6)."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import subprocess
from typing import Any

import trio

from golem_trio import Golem, Service, vm
from golem_trio.events import DebitNoteRefused, InvoiceRejected
from golem_trio.localnet import LocalNet, ProviderSpec, ledger, open_localnet
from golem_trio.localnet import scripted_runtime_factory as scripted
from golem_trio.localnet.yagna import open_yagna_localnet
from golem_trio.market import StaticResolver, use_resolver
from golem_trio.testing import check_invariants
from golem_trio.yagna import ApiConfig, YagnaClient

from .test_yapapi import APP_TIMEOUT_S, PROVIDER, ROUNDS, SERVICE_APP, SERVICE_DEADLINE_S, echo

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
#: yapapi's own provider, and one more for each engine.
PROVIDERS = [PROVIDER] + [
    ProviderSpec(name=f"engine-provider-{i}", debit_note_interval=1, tick=0.1) for i in range(2)
]


class Echo(Service):
    @staticmethod
    async def get_payload() -> vm.VmPayload:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        for i in range(3):
            await trio.sleep(1)
            script = self._ctx.new_script()
            script.run("/bin/echo", f"hi {i}")
            await script


async def run_engine(net: LocalNet, events: list[object]) -> Golem:
    golem = Golem(budget=1.0, localnet=net, handle_signals=False, event_consumer=events.append)
    async with golem:
        expiration = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
        cluster = await golem.run_service(Echo, num_instances=1, expiration=expiration)
        await cluster.wait_running()
        await cluster.wait_finished()
    return golem


async def run_yapapi(
    url: str, app_key: str, python: pathlib.Path, gftp_dir: pathlib.Path
) -> tuple[int, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("YAGNA_")},
        "YAGNA_APPKEY": app_key,
        "YAGNA_API_URL": url,
        "YAGNA_SUBNET": "public",
        "PATH": f"{gftp_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "COMPAT_ROUNDS": str(ROUNDS),
        "COMPAT_CAPTURE": "atEnd",
        "COMPAT_DEADLINE_S": str(SERVICE_DEADLINE_S),
        "PYTHONUNBUFFERED": "1",
    }
    app = await trio.run_process(
        [str(python), str(SERVICE_APP)],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    report = f"--- stdout ---\n{app.stdout.decode()}\n--- stderr ---\n{app.stderr.decode()}"
    return app.returncode, report


def documents_of(book: dict[str, Any], agreements: set[str]) -> list[dict[str, Any]]:
    return [d for d in book["debitNotes"] + book["invoices"] if d["agreementId"] in agreements]


async def test_an_engine_beside_a_yapapi_app_touches_none_of_its_documents(
    yapapi_python: pathlib.Path, gftp_stub_dir: pathlib.Path
) -> None:
    runtime = scripted({"/bin/echo": echo}, deploy_s=0.2, start_s=0.1)
    beside: list[object] = []
    after: list[object] = []
    with trio.fail_after(APP_TIMEOUT_S + 60):
        async with open_localnet(PROVIDERS, runtime=runtime, serve=True) as net:
            engines: dict[str, Golem] = {}
            yapapi: list[tuple[int, str]] = []

            async def engine_beside() -> None:
                engines["beside"] = await run_engine(net, beside)

            async def app() -> None:
                assert net.url is not None
                yapapi.append(await run_yapapi(net.url, net.app_key, yapapi_python, gftp_stub_dir))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(app)
                nursery.start_soon(engine_beside)
            engines["after"] = await run_engine(net, after)
            book = ledger(net)
    ((returncode, report),) = yapapi
    assert returncode == 0, report
    # Neither engine rejected an invoice nor refused another application's debit note.
    assert [e for e in beside + after if isinstance(e, InvoiceRejected)] == []
    sessions = {golem.app_session_id: name for name, golem in engines.items()}
    by_app: dict[str, set[str]] = {"yapapi": set(), "beside": set(), "after": set()}
    for agreement in book["agreements"]:
        by_app[sessions.get(agreement["appSessionId"], "yapapi")].add(agreement["id"])
    assert {name: len(ids) for name, ids in by_app.items()} == {
        "yapapi": 1,
        "beside": 1,
        "after": 1,
    }, book["agreements"]
    for name, events in (("beside", beside), ("after", after)):
        refused = [e for e in events if isinstance(e, DebitNoteRefused)]
        assert {e.agreement_id for e in refused} <= by_app[name], refused
    allocations: dict[str, str] = {}
    for name in ("beside", "after"):
        payment = engines[name].payment_report
        assert payment is not None
        assert set(payment.invoices_accepted) == by_app[name]
        assert payment.invoices_rejected == 0
        assert payment.unpaid == ()
        allocations[name] = payment.allocation_id
    # yapapi accepted its documents from its own allocation, each engine its own.
    for name, agreements in by_app.items():
        for document in documents_of(book, agreements):
            assert document["rejectRequests"] == 0, document
            named = set(document["acceptRequests"])
            if name in allocations:
                assert named <= {allocations[name]}, document
            else:
                assert not named & set(allocations.values()), document
    invoices = {i["agreementId"]: i for i in book["invoices"]}
    for agreements in by_app.values():
        for agreement_id in agreements:
            assert invoices[agreement_id]["status"] == "SETTLED", invoices
    assert check_invariants(book) == []


async def test_an_engine_beside_a_yapapi_app_on_the_real_daemon(
    yapapi_python: pathlib.Path, gftp_stub_dir: pathlib.Path
) -> None:
    """The same on LocalNet's real-daemon backend: one yagna holds yapapi's agreement and two
    engines' (one beside yapapi, one after it); the daemon's own books are read at the end."""
    runtime = scripted({"/bin/echo": echo}, deploy_s=0.2, start_s=0.1)
    specs = [
        ProviderSpec(name=f"{spec.name}-real", debit_note_interval=2, tick=0.5)
        for spec in PROVIDERS
    ]
    events: dict[str, list[object]] = {"beside": [], "after": []}
    engines: dict[str, Golem] = {}
    yapapi: list[tuple[int, str]] = []
    with trio.fail_after(APP_TIMEOUT_S + 120):
        async with open_yagna_localnet(specs, runtime=runtime) as net:
            config = ApiConfig(app_key=net.app_key, api_url=net.url, gsb_url=net.gsb_url)

            async def engine(name: str) -> None:
                with use_resolver(StaticResolver()):
                    engines[name] = await run_engine_on(config, events[name])

            async def app() -> None:
                yapapi.append(await run_yapapi(net.url, net.app_key, yapapi_python, gftp_stub_dir))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(app)
                nursery.start_soon(engine, "beside")
            await engine("after")
            async with YagnaClient(config) as daemon:
                invoices = await daemon.payment.get_invoices()
    ((returncode, report),) = yapapi
    assert returncode == 0, report
    assert [e for name in events for e in events[name] if isinstance(e, InvoiceRejected)] == []
    mine: dict[str, set[str]] = {}
    for name, golem in engines.items():
        payment = golem.payment_report
        assert payment is not None
        assert payment.invoices_rejected == 0
        assert payment.unpaid == ()
        assert len(payment.invoices_accepted) == 1
        mine[name] = set(payment.invoices_accepted)
        refused = [e for e in events[name] if isinstance(e, DebitNoteRefused)]
        assert {e.agreement_id for e in refused} <= mine[name], refused
    assert not mine["beside"] & mine["after"]
    # Three invoices on the daemon (yapapi's and one per engine), every one accepted by its
    # own application, none rejected.
    by_agreement = {i.agreement_id: i.status.value for i in invoices}
    assert len(invoices) == len(by_agreement) == 3, by_agreement
    theirs = set(by_agreement) - mine["beside"] - mine["after"]
    assert len(theirs) == 1, (by_agreement, mine)
    assert set(by_agreement.values()) <= {"ACCEPTED", "SETTLED"}, by_agreement


async def run_engine_on(config: ApiConfig, events: list[object]) -> Golem:
    golem = Golem(budget=1.0, api_config=config, handle_signals=False, event_consumer=events.append)
    async with golem:
        expiration = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
        cluster = await golem.run_service(Echo, num_instances=1, expiration=expiration)
        await cluster.wait_running()
        await cluster.wait_finished()
    return golem
