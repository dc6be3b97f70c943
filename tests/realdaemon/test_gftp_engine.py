"""The engine's transfers through gftp on LocalNet's real-daemon backend: files go to and from
the provider through the daemon's service bus (the requestor's gftp services, the exe-unit
calling them through ``/net/<node id>/gftp/...``), with no HTTP transfer server at all.

Each test starts its own daemon and chain and runs on the real clock.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx2
import pytest
import trio

import golem_trio.golem
from golem_trio import Golem, Restart, RestartPolicy, Service, vm
from golem_trio.gsb import GsbCallError, gftp_service_id, open_gsb, parse_gftp_url
from golem_trio.localnet import (
    ProviderSpec,
    local_runtime_factory,
    scripted_runtime_factory,
)
from golem_trio.localnet.yagna import YagnaLocalNet, YagnaNode, open_yagna_localnet
from golem_trio.market import StaticResolver, VmPayload, use_resolver
from golem_trio.services import RunFinished
from golem_trio.work import GftpStorage, HttpStorage, TransferProgress, TransferUnavailable
from golem_trio.yagna import ApiConfig

from ._guide import copy_guide

HASH = "8b11df59f84358d47fc6776d0bb7290b0054c15ded2d6f54cf634488"
DEADLINE = 240.0
MIB = 1024 * 1024
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def random_file(path: Path, mib: int) -> str:
    """Write ``mib`` MiB of random bytes to ``path``; their SHA3-256."""
    digest = hashlib.sha3_256()
    with path.open("wb") as out:
        for _ in range(mib):
            block = os.urandom(MIB)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def sha3_of(path: Path) -> str:
    digest = hashlib.sha3_256()
    with path.open("rb") as file:
        while block := file.read(MIB):
            digest.update(block)
    return digest.hexdigest()


@attrs.define
class Stage:
    net: YagnaLocalNet
    golem: Golem
    events: list[object]
    http_storages_opened: list[object]
    #: Set once 3 MiB of a file went each way (by direction).
    moved: dict[str, trio.Event]

    def progress(self, direction: str) -> list[TransferProgress]:
        return [
            e for e in self.events if isinstance(e, TransferProgress) and e.direction == direction
        ]


@asynccontextmanager
async def stage(monkeypatch: pytest.MonkeyPatch, transfer: str = "gftp") -> AsyncIterator[Stage]:
    """A real-daemon LocalNet with one provider (scripted runtime: the exe-unit keeps the
    transferred files in a folder of its own) and an engine for it, not yet entered. Opening
    an HTTP transfer server is recorded, and refused."""
    opened: list[object] = []

    def no_http_storage(*args: Any, **kwargs: Any) -> Any:
        opened.append((args, kwargs))
        raise AssertionError("an HTTP transfer server was opened")

    monkeypatch.setattr(golem_trio.golem, "open_http_storage", no_http_storage)
    specs = [ProviderSpec(name="gftp0", debit_note_interval=2, tick=0.5)]
    async with open_yagna_localnet(specs, runtime=scripted_runtime_factory({})) as net:
        events: list[object] = []
        config = ApiConfig(app_key=net.app_key, api_url=net.url, gsb_url=net.gsb_url)
        moved = {"upload": trio.Event(), "download": trio.Event()}

        def consume(event: object) -> None:
            events.append(event)
            if isinstance(event, TransferProgress) and event.done >= 3 * MIB:
                moved[event.direction].set()

        with use_resolver(StaticResolver()):
            golem = Golem(
                budget=1.0,
                api_config=config,
                handle_signals=False,
                invoice_wait=30,
                event_consumer=consume,
                transfer=transfer,
            )
            yield Stage(net, golem, events, opened, moved)


class RoundTrip(Service):
    """Sends a file and some bytes to the provider and fetches both back."""

    source: Path
    back: Path

    def __init__(self) -> None:
        super().__init__()
        self.small: bytes | None = None
        self.bound_after: frozenset[str] | None = None

    @staticmethod
    async def get_payload() -> VmPayload:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        script = self._ctx.new_script(timeout=180)
        script.upload_file(self.source, "/golem/input/big.bin")
        script.upload_bytes(b"a few bytes", "/golem/input/small.txt")
        script.download_file("/golem/input/big.bin", self.back, limit=None)
        small = script.download_bytes("/golem/input/small.txt")
        await script
        self.small = (await small).data
        storage = self._ctx.storage
        assert isinstance(storage, GftpStorage)
        self.bound_after = storage.bound


async def test_fifty_mib_go_out_and_back_through_gftp_without_http_and_are_paid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source, back = tmp_path / "source.bin", tmp_path / "back" / "big.bin"
    expected = await trio.to_thread.run_sync(random_file, source, 50)
    RoundTrip.source, RoundTrip.back = source, back
    with trio.fail_after(DEADLINE):
        async with stage(monkeypatch) as st:
            async with st.golem:
                cluster = await st.golem.run_service(RoundTrip, num_instances=1)
                (service,) = await cluster.wait_running()
                await cluster.wait_finished()
    assert isinstance(service.stop_reason, RunFinished), service.stop_reason
    assert st.http_storages_opened == []
    assert await trio.to_thread.run_sync(sha3_of, back) == expected
    assert sorted(p.name for p in back.parent.iterdir()) == ["big.bin"]
    assert service.small == b"a few bytes"
    # Every service of the batch was unbound when it ended.
    assert service.bound_after == frozenset()
    # Progress: the provider fetched the whole file (about every MiB), and sent it back.
    uploads = [e for e in st.progress("upload") if e.total == 50 * MIB]
    assert uploads[-1].done == 50 * MIB
    assert len(uploads) >= 50
    assert all(e.url.startswith(f"gftp://{st.net.requestor_id}/{expected}") for e in uploads)
    (whole,) = [e for e in st.progress("download") if e.total == 50 * MIB]
    assert whole.done == 50 * MIB
    downloads = [e for e in st.progress("download") if e.url == whole.url]
    assert downloads[-1] is whole
    assert len([e for e in downloads if e.total is None]) >= 49
    assert [e.done for e in downloads] == sorted(e.done for e in downloads)
    report = st.golem.payment_report
    assert report is not None
    assert len(report.invoices_accepted) == 1
    assert report.unpaid == ()


class Interrupted(Service):
    """Sends a file, then fetches it back, while the test kills the exe-unit in one of the
    two; records how that ended and what the storage and the target folder held after."""

    source: Path
    back: Path

    def __init__(self) -> None:
        super().__init__()
        self.failure: BaseException | None = None
        self.bound_after: frozenset[str] | None = None
        self.left_behind: list[str] | None = None

    @staticmethod
    async def get_payload() -> VmPayload:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        storage = self._ctx.storage
        assert isinstance(storage, GftpStorage)
        upload = self._ctx.new_script(timeout=180)
        upload.upload_file(self.source, "/golem/input/big.bin")
        download = self._ctx.new_script(timeout=180)
        download.download_file("/golem/input/big.bin", self.back, limit=None)
        try:
            await upload
            await download
        except Exception as exc:
            self.failure = exc
        self.bound_after = storage.bound
        self.left_behind = sorted(p.name for p in self.back.parent.iterdir())


@pytest.mark.parametrize("direction", ["upload", "download"])
async def test_an_exe_unit_dying_mid_transfer_leaves_no_file_and_nothing_bound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, direction: str
) -> None:
    source, back = tmp_path / "source.bin", tmp_path / "back" / "big.bin"
    back.parent.mkdir()
    await trio.to_thread.run_sync(random_file, source, 50)
    Interrupted.source, Interrupted.back = source, back
    with trio.fail_after(DEADLINE):
        async with stage(monkeypatch) as st:
            async with st.golem:
                cluster = await st.golem.run_service(
                    Interrupted, num_instances=1, restart=RestartPolicy(Restart.NEVER)
                )
                (service,) = await cluster.wait_running()
                # Once a few MiB went that way, the provider's exe-unit dies.
                await st.moved[direction].wait()
                (unit,) = [u for h in st.net.hosts for u in h.units.values()]
                await unit.terminate("killed mid-transfer")
                await cluster.wait_finished()
                # The engine (and its storage) still run: the daemon's bus routes nothing
                # to the files of the interrupted transfers any more.
                urls = {e.url for e in st.events if isinstance(e, TransferProgress)}
                assert urls
                async with open_gsb(st.net.gsb_url, name="checker") as bus:
                    for url in urls:
                        service_id = gftp_service_id(parse_gftp_url(url)[1])
                        with pytest.raises(GsbCallError) as refused:
                            await bus.call(f"{service_id}/GetMetadata", {})
                        assert refused.value.code == 400
    assert service.failure is not None
    assert not [e for e in st.progress(direction) if e.done == 50 * MIB]
    if direction == "upload":
        assert st.progress("download") == []
    assert service.left_behind == []
    assert service.bound_after == frozenset()
    assert st.http_storages_opened == []


class CancelledMidway(Service):
    """Sends a file, then fetches it back but gives up (cancels the batch) once ``stop`` is
    set; records what the storage and the target folder held after."""

    source: Path
    back: Path
    stop: trio.Event

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = False
        self.bound_after: frozenset[str] | None = None
        self.left_behind: list[str] | None = None

    @staticmethod
    async def get_payload() -> VmPayload:
        return await vm.repo(image_hash=HASH)

    async def run(self) -> None:
        storage = self._ctx.storage
        assert isinstance(storage, GftpStorage)
        upload = self._ctx.new_script(timeout=180)
        upload.upload_file(self.source, "/golem/input/big.bin")
        await upload
        download = self._ctx.new_script(timeout=180)
        download.download_file("/golem/input/big.bin", self.back, limit=None)
        with trio.CancelScope() as scope:

            async def give_up() -> None:
                await self.stop.wait()
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(give_up)
                await download
                nursery.cancel_scope.cancel()
        self.cancelled = scope.cancelled_caught
        self.bound_after = storage.bound
        self.left_behind = sorted(p.name for p in self.back.parent.iterdir())


async def test_a_download_cancelled_midway_leaves_no_file_and_nothing_bound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The requestor gives up a download midway (its batch is cancelled): the receipt is
    forgotten, shielded, so its partial file is gone and its service unbound, and the
    provider's delivery fails instead of landing anywhere."""
    source, back = tmp_path / "source.bin", tmp_path / "back" / "big.bin"
    back.parent.mkdir()
    await trio.to_thread.run_sync(random_file, source, 50)
    CancelledMidway.source, CancelledMidway.back = source, back
    with trio.fail_after(DEADLINE):
        async with stage(monkeypatch) as st:
            CancelledMidway.stop = st.moved["download"]
            async with st.golem:
                cluster = await st.golem.run_service(
                    CancelledMidway, num_instances=1, restart=RestartPolicy(Restart.NEVER)
                )
                (service,) = await cluster.wait_running()
                await cluster.wait_finished()
                (url,) = {e.url for e in st.progress("download")}
                async with open_gsb(st.net.gsb_url, name="checker") as bus:
                    with pytest.raises(GsbCallError) as refused:
                        await bus.call(f"{gftp_service_id(parse_gftp_url(url)[1])}/X", {})
                    assert refused.value.code == 400
    assert isinstance(service.stop_reason, RunFinished), service.stop_reason
    assert service.cancelled
    assert service.left_behind == []
    assert service.bound_after == frozenset()
    assert not [e for e in st.progress("download") if e.done == 50 * MIB]


async def test_the_guides_simple_service_downloads_its_plots_through_gftp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The guide's SimpleService, unchanged, in real sandboxes (the local runtime), on two
    nodes (the requestor's daemon and the provider's): its plots come back through gftp
    across the nodes, and no HTTP transfer server runs; the provider is paid on the chain."""
    guide = copy_guide(tmp_path, "guide_simple_service_gftp")
    opened: list[object] = []

    def no_http_storage(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        raise AssertionError("an HTTP transfer server was opened")

    monkeypatch.setattr(golem_trio.golem, "open_http_storage", no_http_storage)
    events: list[object] = []
    specs = [ProviderSpec(name="gftp-sandbox", tick=0.5)]
    with trio.fail_after(DEADLINE):
        async with open_yagna_localnet(
            specs, runtime=local_runtime_factory(guide.store), nodes=2
        ) as net:
            assert net.node is not net.provider_node
            config = ApiConfig(app_key=net.app_key, api_url=net.url, gsb_url=net.gsb_url)
            with use_resolver(StaticResolver()):
                golem = Golem(
                    budget=1.0,
                    api_config=config,
                    handle_signals=False,
                    event_consumer=events.append,
                    transfer="gftp",
                )
                async with golem:
                    cluster = await golem.run_service(guide.module.SimpleService, num_instances=1)
                    await cluster.wait_running()
                    await trio.sleep(12)
                    await cluster.stop()
            report = golem.payment_report
            assert report is not None
            ((agreement_id, amount),) = report.invoices_accepted.items()
            (service,) = cluster.instances
            assert service.provider_id is not None
            assert service.instance.agreement is not None
            assert agreement_id == service.instance.agreement.agreement_id
            await paid_on_chain(net, service.provider_id, amount)
    assert opened == []
    plots = guide.plots()
    assert plots
    finished = [
        e for e in events if isinstance(e, TransferProgress) and e.done == e.total is not None
    ]
    assert {e.url.split("/")[2] for e in finished} == {net.requestor_id}
    assert len([e for e in finished if e.direction == "download"]) >= len(plots)
    assert report.unpaid == ()


async def paid_on_chain(net: YagnaLocalNet, provider_id: str, amount: Decimal) -> None:
    """Settle now (not at the next batch cycle) and wait until the provider's token balance
    is the accepted amount, cut to the token's 18 decimals as the erc20 driver pays it."""
    auth = {"Authorization": f"Bearer {net.app_key}"}
    async with httpx2.AsyncClient(base_url=net.url, headers=auth, trust_env=False) as client:
        reply = await client.post(f"/payment-api/v1/batchCycle/{net.payment_platform}/now")
        assert reply.status_code == 200, reply.text
    chain = net.chain
    assert chain is not None
    due = amount.quantize(Decimal("1e-18"), rounding=ROUND_DOWN)
    assert due > 0
    with trio.fail_after(60):
        while True:
            balance = await trio.to_thread.run_sync(chain.token_balance, provider_id)
            if balance >= due:
                break
            await trio.sleep(0.5)
    assert balance == due


async def test_auto_moves_files_with_gftp_only_on_the_daemons_own_bus(
    yagna_node: YagnaNode, tmp_path: Path
) -> None:
    """``transfer="auto"`` with a real daemon uses gftp when ``gsb_url`` is that daemon's bus,
    and loopback HTTP when the bus does not answer or belongs to another daemon (the session's
    other one, which does not hold the app key's identity); ``"gftp"`` refuses those two."""
    nowhere = f"unix:{tmp_path / 'no-such.sock'}"
    with trio.fail_after(DEADLINE):
        async with open_yagna_localnet(
            [ProviderSpec(name="bus0")], runtime=scripted_runtime_factory({})
        ) as net:

            def golem(gsb_url: str, transfer: str) -> Golem:
                config = ApiConfig(app_key=net.app_key, api_url=net.url, gsb_url=gsb_url)
                return Golem(
                    budget=1.0,
                    api_config=config,
                    handle_signals=False,
                    invoice_wait=0,
                    transfer=transfer,
                    event_consumer=lambda event: None,
                )

            for gsb_url, kind in (
                (net.gsb_url, GftpStorage),
                (yagna_node.gsb_url, HttpStorage),
                (nowhere, HttpStorage),
            ):
                engine = golem(gsb_url, "auto")
                async with engine:
                    assert engine._engine is not None
                    assert isinstance(engine._engine.context.storage, kind), gsb_url
            for gsb_url, problem in (
                (yagna_node.gsb_url, "belongs to another daemon"),
                (nowhere, "does not answer"),
            ):
                with pytest.raises(TransferUnavailable, match=problem):
                    async with golem(gsb_url, "gftp"):
                        pass
