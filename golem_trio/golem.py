"""``Golem``: the composition root. ``async with Golem(...)`` owns every task of the SDK.

Inside the block: a daemon (the one ``YAGNA_APPKEY`` points at, or an embedded LocalNet), an
allocation and the payment processor, one agreement-event watcher, the budget watch, an HTTP
file server for transfers, and the clusters made by :meth:`Golem.run_service`. Leaving the
block stops every cluster (shielded and bounded), waits for the final invoices (bounded), pays
the valid ones and releases the allocation.

Ctrl-C (SIGINT) or SIGTERM, when the engine runs in the main thread: the first stops every
instance gracefully, cancels the block's body and, once everything is cleaned up, raises
``KeyboardInterrupt``; the second hurries (skips the ``shutdown`` handlers and the invoice
wait) but still destroys activities and terminates agreements.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._log import log_event_repr, log_summary
from .events import BudgetExhausted as BudgetExhaustedEvent
from .events import Emitter, EventConsumer, GolemStarted, ShutdownFinished, ShutdownStarted
from .market import AgreementWithdrawn, Payload, StaticResolver, use_resolver
from .payment import BillingTermsError, PaymentProcessor, PaymentReport, open_payments
from .services import (
    BudgetExhausted,
    Cluster,
    GolemExit,
    HealthCheck,
    Interrupted,
    RestartPolicy,
    Service,
    StopReason,
    check_service_class,
)
from .services._cluster import make_services
from .services._engine import EngineContext, Timeouts
from .services._watcher import AgreementWatcher
from .work import open_http_storage
from .yagna import ApiConfig, YagnaClient, YagnaError

if TYPE_CHECKING:
    from .localnet import LocalNet

__all__ = ["Golem", "payment_platform"]

logger = logging.getLogger("golem_trio")

S = TypeVar("S", bound=Service)

#: How many simulated providers the embedded LocalNet has.
EMBEDDED_PROVIDERS = 10


def payment_platform(driver: str, network: str) -> str:
    """The platform name yapapi derives: ``<driver>-<network>-<token>``; the token is ``glm``
    on mainnet and polygon, ``tglm`` elsewhere."""
    token = "glm" if network in ("mainnet", "polygon") else "tglm"
    return f"{driver}-{network}-{token}"


def _wall_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _main_script_dir() -> Path | None:
    """The folder of the script Python runs, where an example keeps its image folder."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return Path(main_file).resolve().parent if main_file else None


def _only_error(exc: BaseException) -> BaseException | None:
    """The one exception inside nested groups of one each, or ``None``."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


def _is_keyboard_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_keyboard_interrupt(inner) for inner in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


def _say(line: str) -> None:
    """Tell the user one line: through logging when it is configured, else on stderr."""
    if logging.getLogger("golem_trio").hasHandlers():
        logger.info(line)
    else:
        print(line, file=sys.stderr)


class Golem:
    """The engine. Use as ``async with Golem(budget=1.0) as golem:``.

    Args:
        budget: the most this engine may spend (GLM); a hard cap.
        subnet_tag: the subnet to look for providers in (default ``$YAGNA_SUBNET`` or
            ``public``).
        payment_driver, payment_network (or yapapi's older ``driver``, ``network``): the
            payment platform (default ``erc20`` on ``holesky``).
        event_consumer: called with every event (default: ``log_summary(log_event_repr)``).
        stream_output: collect command output from the exec event stream instead of polling.
        api_config: the daemon to use; default: ``ApiConfig.from_env()`` when
            ``YAGNA_APPKEY`` is set, otherwise an embedded LocalNet started in this block.
        localnet: a LocalNet you started yourself (tests, fault benchmarks); the engine talks
            to it (in-process when it is not served) and uses its clock.
        handle_signals: install the SIGINT/SIGTERM handling above (default: when running in
            the main thread).
        timeouts: bounds of each instance's stopping phase.
        invoice_wait: how long to wait for final invoices at exit, in seconds.
    """

    def __init__(
        self,
        *,
        budget: float | Decimal | str,
        subnet_tag: str | None = None,
        payment_driver: str | None = None,
        payment_network: str | None = None,
        driver: str | None = None,
        network: str | None = None,
        event_consumer: EventConsumer | None = None,
        stream_output: bool = False,
        api_config: ApiConfig | None = None,
        localnet: LocalNet | None = None,
        handle_signals: bool | None = None,
        timeouts: Timeouts | None = None,
        invoice_wait: float = 60.0,
        image_dirs: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.budget = Decimal(str(budget))
        if not self.budget > 0:
            raise ValueError(f"budget must be > 0, got {budget!r}")
        self.subnet_tag = (
            subnet_tag if subnet_tag is not None else os.environ.get("YAGNA_SUBNET", "public")
        )
        self.payment_driver = (
            payment_driver or driver or os.environ.get("YAGNA_PAYMENT_DRIVER", "erc20")
        )
        self.payment_network = (
            payment_network or network or os.environ.get("YAGNA_PAYMENT_NETWORK", "holesky")
        )
        self.payment_platform = payment_platform(self.payment_driver, self.payment_network)
        self._emitter = Emitter()
        self._emitter.add_consumer(
            event_consumer if event_consumer is not None else log_summary(log_event_repr)
        )
        self.stream_output = stream_output
        self._api_config = api_config
        self._localnet = localnet
        self._handle_signals = handle_signals
        self.timeouts = timeouts or Timeouts()
        self.invoice_wait = invoice_wait
        self._image_dirs = [Path(p) for p in image_dirs]
        self._engine: EngineContext | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._body: trio.CancelScope | None = None
        self._clusters: list[Cluster[Any]] = []
        self._interrupted: str | None = None
        self._stop_reason: StopReason | None = None
        self._payments: PaymentProcessor | None = None
        self._resolver: StaticResolver | None = None
        self._adopt: Callable[[str], None] | None = None
        #: What the payment processor paid and left unpaid; set at exit.
        self.payment_report: PaymentReport | None = None
        #: The daemon's URL (``None`` for an in-process LocalNet).
        self.api_url: str | None = None

    # --- public ----------------------------------------------------------------------------

    @property
    def localnet(self) -> LocalNet | None:
        """The LocalNet in use (embedded or given), if any."""
        return self._localnet

    @property
    def operative(self) -> bool:
        return self._engine is not None

    @property
    def clusters(self) -> list[Cluster[Any]]:
        return list(self._clusters)

    @property
    def payments(self) -> PaymentProcessor:
        if self._payments is None:
            raise RuntimeError("the engine is not running")
        return self._payments

    def add_event_consumer(
        self, consumer: EventConsumer, kinds: tuple[type, ...] | None = None
    ) -> None:
        self._emitter.add_consumer(consumer, kinds)

    def emit(self, event: object) -> None:
        if isinstance(event, AgreementWithdrawn) and self._adopt is not None:
            self._adopt(event.agreement_id)
        self._emitter.emit(event)

    async def _adopt_agreement(self, payments: PaymentProcessor, agreement_id: str) -> None:
        """An agreement terminated as soon as it was approved is still ours to pay: its
        (final) invoice is validated and paid like any other. Shielded and bounded, so a
        shutdown under way does not skip it."""
        with trio.move_on_after(self.timeouts.cleanup, shield=True):
            await trio.lowlevel.checkpoint()
            try:
                await payments.add_agreement(agreement_id)
            except (YagnaError, BillingTermsError) as exc:
                logger.warning("agreement %s cannot be paid: %s", agreement_id, exc)
                return
            payments.agreement_ended(agreement_id)

    async def run_service(
        self,
        service_class: type[S],
        num_instances: int | None = None,
        instance_params: Iterable[Mapping[str, Any]] | None = None,
        payload: Payload | None = None,
        expiration: dt.datetime | None = None,
        *,
        restart: RestartPolicy | None = None,
        health: HealthCheck | None = None,
        negotiation_options: Mapping[str, Any] | None = None,
        demand_options: Mapping[str, Any] | None = None,
    ) -> Cluster[S]:
        """Start a cluster of ``service_class`` and return it once its demand is published;
        instances come up in the background (``await cluster.wait_running()``).

        ``restart`` (default: restart on failures before running, as yapapi) and ``health``
        (default: the activity's state every 10 s, 3 failures) apply to each instance.
        Raises ``ServiceDefinitionError`` for a class the engine cannot drive, ``ValueError``
        without a payload. Cancellation: if cancelled, nothing was started.
        """
        engine = self._require_engine()
        check_service_class(service_class)
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._stop_reason is not None:
            raise RuntimeError("the engine is shutting down")
        with contextlib.ExitStack() as stack:
            if self._resolver is not None:
                stack.enter_context(use_resolver(self._resolver))
            own = await service_class.get_payload()
        if payload is None:
            payload = own
        elif own is not None and own != payload:
            raise ValueError(f"{service_class.__name__}.get_payload() and the payload given differ")
        if payload is None:
            raise ValueError(
                f"{service_class.__name__}.get_payload() returned None and no payload was given"
            )
        services = make_services(service_class, num_instances, instance_params)
        cluster: Cluster[S] = Cluster(
            engine,
            service_class,
            payload,
            expiration=expiration,
            restart=restart or RestartPolicy(),
            health=health or HealthCheck(),
            negotiation_options=negotiation_options,
            demand_options=demand_options,
        )
        assert self._nursery is not None
        self._clusters.append(cluster)
        await self._nursery.start(cluster.run, services)
        return cluster

    def stop(self, reason: StopReason | None = None) -> None:
        """Stop every cluster for good (sync; the block's exit waits for them)."""
        reason = reason or GolemExit()
        if self._stop_reason is None:
            self._stop_reason = reason
        for cluster in self._clusters:
            cluster.stop(reason)

    async def set_budget(self, budget: float | Decimal | str) -> None:
        """Top the budget up or cut it while services run (the allocation is amended). A cut
        can exhaust the budget at once, which stops every instance (``BudgetExhausted``).

        Raises ``ValueError`` below what is spent, ``RuntimeError`` once the budget ran out,
        and the daemon's errors (a top-up the account cannot fund). Cancellation: if cancelled
        while the daemon is asked, the allocation may have changed and the budget not.
        """
        amount = Decimal(str(budget))
        try:
            await self.payments.set_budget(amount)
        finally:
            self.budget = self.payments.budget.budget

    def hurry(self) -> None:
        """Skip the waits that may be skipped: ``shutdown`` handlers and the invoice wait.
        Activities are still destroyed and agreements terminated."""
        if self._engine is not None:
            self._engine.hurry.set()
        for cluster in self._clusters:
            cluster.hurry()
        if self._payments is not None:
            self._payments.hurry()

    # --- the block -------------------------------------------------------------------------

    async def __aenter__(self) -> Golem:
        if self._stack is not None:
            raise RuntimeError("this Golem is already running")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self._run())
        except ExceptionGroup as group:
            with trio.move_on_after(self.timeouts.cleanup, shield=True):
                await stack.aclose()
            # Starting failed for one reason (no daemon, a wrong app key, no funds): raise
            # that error itself, not the task groups it passed through.
            leaf = _only_error(group)
            if leaf is not None:
                raise leaf from group
            raise
        except BaseException:
            with trio.move_on_after(self.timeouts.cleanup, shield=True):
                await stack.aclose()
            raise
        self._stack = stack
        self._body = trio.CancelScope()
        self._body.__enter__()
        if self._interrupted is not None:  # a signal came while the engine was starting
            self._body.cancel(reason=self._interrupted)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._body is not None
        assert self._stack is not None
        body, stack = self._body, self._stack
        self._body = self._stack = None
        pending: BaseException | None = None
        try:
            swallowed = bool(body.__exit__(exc_type, exc, tb))
        # What the body raised, minus our own Cancelled; re-raised below after the shutdown.
        except BaseException as raised:  # noqa: ASYNC103
            swallowed, pending = False, raised
        if exc is not None and _is_keyboard_interrupt(exc):
            self._interrupted = self._interrupted or "SIGINT"
        if self._interrupted is not None:
            reason: StopReason = Interrupted(self._interrupted)
        else:
            reason = self._stop_reason or GolemExit()
        self.emit(ShutdownStarted(reason=reason.message))
        self.stop(reason)
        bound = self.timeouts.shutdown + self.timeouts.cleanup + 5.0
        with trio.move_on_after(bound, shield=True):
            await trio.lowlevel.checkpoint()
            for cluster in self._clusters:
                await cluster.wait_finished()
        # The stack holds scopes entered before the body: it cannot run inside a new scope. Its
        # own cleanups (invoice wait, allocation release) are shielded and bounded.
        await stack.aclose()
        self._engine = None
        if self._interrupted is not None:
            # Interrupted: end as Ctrl-C ends a program, whatever the body raised on the way.
            raise KeyboardInterrupt from pending
        if pending is not None:
            raise pending
        return swallowed

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as root:
            if self._wants_signals():
                await root.start(self._watch_signals)
            async with self._open_daemon() as (yagna, now):
                async with open_http_storage() as storage:
                    async with open_payments(
                        yagna,
                        budget=self.budget,
                        platform=self.payment_platform,
                        invoice_wait=self.invoice_wait,
                        emit=self.emit,
                        now=now,
                    ) as payments:
                        self._payments = payments
                        watcher = AgreementWatcher(yagna, now=now)
                        engine = EngineContext(
                            yagna=yagna,
                            payments=payments,
                            watcher=watcher,
                            emit=self.emit,
                            platform=self.payment_platform,
                            subnet_tag=self.subnet_tag,
                            storage=storage,
                            stream_output=self.stream_output,
                            timeouts=self.timeouts,
                            now=now,
                        )
                        # Adoptions (agreements to pay that no instance holds) outlive the
                        # engine's tasks: the final invoice wait needs them registered.
                        async with trio.open_nursery() as adopters:
                            async with trio.open_nursery() as nursery:
                                await nursery.start(watcher.run)
                                nursery.start_soon(self._watch_budget, engine)
                                self._adopt = lambda agreement_id: adopters.start_soon(
                                    self._adopt_agreement, payments, agreement_id
                                )
                                self._engine = engine
                                self._nursery = nursery
                                self.emit(
                                    GolemStarted(
                                        api_url=self.api_url or "in-process",
                                        localnet=self._localnet is not None,
                                        budget=self.budget,
                                        payment_platform=self.payment_platform,
                                        subnet_tag=self.subnet_tag,
                                    )
                                )
                                try:
                                    yield
                                finally:
                                    self._nursery = None
                                    nursery.cancel_scope.cancel()
                            self._adopt = None
                    self.payment_report = payments.report
                    self.emit(ShutdownFinished(payment_report=payments.report))
            root.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def _open_daemon(
        self,
    ) -> AsyncIterator[tuple[YagnaClient, Callable[[], dt.datetime]]]:
        if self._localnet is not None:
            net = self._localnet
            async with self._client_for(net) as yagna:
                self._resolver = StaticResolver()
                yield yagna, net.daemon.clock.now
            return
        config = self._api_config
        if config is None and os.environ.get("YAGNA_APPKEY"):
            config = ApiConfig.from_env()
        if config is not None:
            self.api_url = config.api_url
            async with YagnaClient(config) as yagna:
                yield yagna, _wall_now
            return
        async with self._open_embedded() as net:
            self._localnet = net
            async with self._client_for(net) as yagna:
                self._resolver = StaticResolver()
                yield yagna, net.daemon.clock.now

    @contextlib.asynccontextmanager
    async def _client_for(self, net: LocalNet) -> AsyncIterator[YagnaClient]:
        if net.url is not None:
            self.api_url = net.url
            async with YagnaClient(ApiConfig(app_key=net.app_key, api_url=net.url)) as yagna:
                yield yagna
        else:
            config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
            async with YagnaClient(config, transport=net.transport()) as yagna:
                yield yagna

    @contextlib.asynccontextmanager
    async def _open_embedded(self) -> AsyncIterator[LocalNet]:
        from .localnet import (
            ImageStore,
            ProviderPopulation,
            discover_images,
            images_from_env,
            local_runtime_factory,
            open_localnet,
        )

        store = ImageStore()
        roots = list(self._image_dirs)
        main_dir = _main_script_dir()
        if main_dir is not None:
            roots.append(main_dir)

        def find_images() -> None:
            discover_images(store, roots)
            images_from_env(store)

        await trio.to_thread.run_sync(find_images)
        population = ProviderPopulation(count=EMBEDDED_PROVIDERS, subnet=self.subnet_tag or "")
        async with open_localnet(
            population, runtime=local_runtime_factory(store), serve=True
        ) as net:
            _say(
                f"golem-trio: no YAGNA_APPKEY set; running on the embedded LocalNet "
                f"({EMBEDDED_PROVIDERS} simulated providers, {len(store)} local image(s)) "
                f"at {net.url}"
            )
            yield net

    def _require_engine(self) -> EngineContext:
        if self._engine is None:
            raise RuntimeError("use `async with Golem(...) as golem:` first")
        return self._engine

    # --- watchers --------------------------------------------------------------------------

    async def _watch_budget(self, engine: EngineContext) -> None:
        reason = await engine.payments.budget.wait_exhausted()
        engine.budget_exhausted.set()
        detail = str(reason)
        self.emit(
            BudgetExhaustedEvent(budget=self.budget, projected=reason.projected, detail=detail)
        )
        stop = BudgetExhausted(detail)
        if self._stop_reason is None:
            self._stop_reason = stop
        for cluster in self._clusters:
            cluster.stop(stop)

    def _wants_signals(self) -> bool:
        if self._handle_signals is not None:
            return self._handle_signals
        return threading.current_thread() is threading.main_thread()

    async def _watch_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self._interrupted is None:
                    self._interrupted = name
                    _say(f"golem-trio: {name}: stopping gracefully (again to hurry)")
                    # The body first: stopping wakes its waits, which must see the
                    # cancellation, not a closed cluster.
                    if self._body is not None:
                        self._body.cancel(reason=name)
                    self.stop(Interrupted(name))
                else:
                    _say(f"golem-trio: {name}: hurrying (agreements are still terminated)")
                    self.hurry()
