"""``Golem``: the composition root. ``async with Golem(...)`` owns every task of the SDK.

``Golem`` holds the configuration, chooses the daemon (the one ``YAGNA_APPKEY`` points at, a
LocalNet given to it, or an embedded LocalNet), handles signals and keeps its own lifecycle.
Inside the block it opens, in order: the daemon client, an HTTP file server for transfers, an
allocation and the payment processor, and the services engine
(:func:`~golem_trio.services.open_engine`: the clusters made by :meth:`Golem.run_service`, the
agreement-event watcher, the budget watch, adoptions). Leaving the block stops every cluster
(shielded and bounded), waits for the final invoices (bounded), pays the valid ones and
releases the allocation.

Ctrl-C (SIGINT) or SIGTERM, when the engine runs in the main thread: the first stops every
instance gracefully, cancels the block's body and, once everything is cleaned up, raises
``KeyboardInterrupt``; the second hurries (skips the ``shutdown`` handlers and the invoice
wait) but still destroys activities and terminates agreements.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import logging
import os
import random
import signal
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._errors import ConfigurationError, ConfigurationTypeError, check_count, check_seconds
from ._log import log_event_repr, log_summary
from .events import Emitter, EventConsumer, GolemStarted, ShutdownFinished, ShutdownStarted
from .market import Payload, StaticResolver
from .network import Network
from .payment import PaymentProcessor, PaymentReport, open_payments
from .services import (
    Cluster,
    Engine,
    GolemExit,
    HealthCheck,
    Interrupted,
    RestartPolicy,
    Service,
    StopReason,
    Timeouts,
    open_engine,
)
from .work import TransferStorage, TransferUnavailable, open_gftp_storage, open_http_storage
from .yagna import ApiConfig, DaemonMonitor, YagnaClient

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


def _budget(parameter: str, value: object) -> Decimal:
    """A budget: a finite number > 0 (``int``, ``float``, ``Decimal`` or its text)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ConfigurationTypeError(parameter, f"must be a number of GLM, got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigurationError(parameter, f"{value!r} is not a number") from None
    if not amount.is_finite() or not amount > 0:
        raise ConfigurationError(parameter, f"must be a finite number > 0, got {value!r}")
    return amount


#: The values of ``Golem(transfer=...)``.
TRANSFERS: tuple[str, ...] = ("auto", "http", "gftp")
_GFTP_NEEDS_A_DAEMON = "gftp needs a real daemon's service bus; LocalNet's emulator has none"


def _optional_str(parameter: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationTypeError(parameter, f"must be a string or None, got {value!r}")


def _flag(parameter: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationTypeError(parameter, f"must be True or False, got {value!r}")


def _check_run_service(
    num_instances: object,
    instance_params: object,
    payload: object,
    expiration: object,
    restart: object,
    health: object,
    negotiation_options: object,
    demand_options: object,
) -> None:
    """Refuse ``run_service`` arguments the engine cannot use, naming the parameter (the class
    itself is checked by the engine: ``ServiceDefinitionError``)."""
    check_count("num_instances", num_instances, none=True)
    if instance_params is not None and (
        isinstance(instance_params, str | bytes | Mapping)
        or not isinstance(instance_params, Iterable)
    ):
        raise ConfigurationTypeError(
            "instance_params",
            f"must be an iterable of keyword-argument mappings, got {instance_params!r}",
        )
    if payload is not None and not isinstance(payload, Payload):
        raise ConfigurationTypeError("payload", f"must be a Payload or None, got {payload!r}")
    if expiration is not None:
        if not isinstance(expiration, dt.datetime):
            raise ConfigurationTypeError(
                "expiration", f"must be a datetime or None, got {expiration!r}"
            )
        if expiration.tzinfo is None or expiration.utcoffset() is None:
            raise ConfigurationError(
                "expiration", f"must be timezone-aware (e.g. UTC), got {expiration!r}"
            )
    if restart is not None and not isinstance(restart, RestartPolicy):
        raise ConfigurationTypeError("restart", f"must be a RestartPolicy or None, got {restart!r}")
    if health is not None and not isinstance(health, HealthCheck):
        raise ConfigurationTypeError("health", f"must be a HealthCheck or None, got {health!r}")
    for name, options in (
        ("negotiation_options", negotiation_options),
        ("demand_options", demand_options),
    ):
        if options is not None and not isinstance(options, Mapping):
            raise ConfigurationTypeError(name, f"must be a mapping or None, got {options!r}")


class _State(enum.Enum):
    """Where a :class:`Golem` is in its one life (as httpx's ``ClientState``)."""

    UNOPENED = 1
    """Made, not entered yet."""
    OPENED = 2
    """Entered (from the start of ``__aenter__`` to the end of ``__aexit__``)."""
    CLOSED = 3
    """Its block ended, or entering it failed; it cannot be entered again."""


class Golem:
    """The engine. Use as ``async with Golem(budget=1.0) as golem:``, once.

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
        timeouts: the engine's time bounds (see :class:`~golem_trio.services.Timeouts`).
        invoice_wait: how long to wait for final invoices at exit, in seconds.
        daemon_outage_limit: how long (s, > 0; ``None``: no limit) the daemon may stay
            unavailable before every service stops as ``DaemonLost`` (default 300); shorter
            outages are ridden out.
        image_dirs: folders the embedded LocalNet looks for local images in.
        transfer: how ``upload_*``/``download_*`` move files: ``"gftp"`` through the
            daemon's service bus (``ApiConfig.gsb_url``), which providers on the network can
            reach; ``"http"`` from a loopback HTTP server, which only local providers can
            reach; ``"auto"`` (the default) picks gftp for a real daemon (one whose service
            bus answers and holds the identity of the app key) and HTTP otherwise, as for
            LocalNet's emulator. ``"gftp"`` with an emulator raises ``ConfigurationError``
            (given ``localnet=``, when made; else when entered), and with an unreachable bus
            :class:`~golem_trio.work.TransferUnavailable` when entered.
        seed: seeds the engine's own random choices (the jitter of request retries and of
            restart delays), so that a run on a LocalNet in virtual time repeats exactly (as
            ``golem_trio.bench`` does); ``None`` (the default): unseeded.

    Every setting is checked here, before anything runs: one the engine cannot use (a budget
    that is not a finite number > 0, a negative ``invoice_wait``, a value of the wrong type)
    raises :class:`~golem_trio.ConfigurationError` naming the parameter
    (``ConfigurationTypeError``, also a ``TypeError``, for a wrong type).

    A ``Golem`` runs once: entering it again, while it runs or after its block ended, raises
    ``RuntimeError``, and so do :meth:`run_service`, :meth:`stop`, :meth:`set_budget` and
    :attr:`payments` outside its block.
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
        daemon_outage_limit: float | None = 300.0,
        transfer: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.budget = _budget("budget", budget)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigurationTypeError("seed", f"must be an integer or None, got {seed!r}")
        #: Seeds the engine's own random choices (see the class docstring).
        self.seed = seed
        if not isinstance(transfer, str):
            raise ConfigurationTypeError("transfer", f"must be text, got {transfer!r}")
        if transfer not in TRANSFERS:
            problem = f"must be one of {', '.join(map(repr, TRANSFERS))}, got {transfer!r}"
            raise ConfigurationError("transfer", problem)
        if transfer == "gftp" and localnet is not None:
            raise ConfigurationError("transfer", _GFTP_NEEDS_A_DAEMON)
        _optional_str("subnet_tag", subnet_tag)
        for name, value in (
            ("payment_driver", payment_driver),
            ("payment_network", payment_network),
            ("driver", driver),
            ("network", network),
        ):
            _optional_str(name, value)
        if event_consumer is not None and not callable(event_consumer):
            raise ConfigurationTypeError(
                "event_consumer", f"must be callable or None, got {event_consumer!r}"
            )
        _flag("stream_output", stream_output)
        if handle_signals is not None:
            _flag("handle_signals", handle_signals)
        if api_config is not None and not isinstance(api_config, ApiConfig):
            raise ConfigurationTypeError(
                "api_config", f"must be an ApiConfig or None, got {api_config!r}"
            )
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise ConfigurationTypeError(
                "timeouts", f"must be a Timeouts or None, got {timeouts!r}"
            )
        checked_wait = check_seconds("invoice_wait", invoice_wait, zero=True)
        self.daemon_outage_limit = check_seconds(
            "daemon_outage_limit", daemon_outage_limit, none=True
        )
        assert checked_wait is not None
        if isinstance(image_dirs, str | bytes | os.PathLike):
            raise ConfigurationTypeError(
                "image_dirs", f"must be an iterable of folders, got {image_dirs!r}"
            )
        try:
            dirs = [Path(p) for p in image_dirs]
        except TypeError as exc:
            raise ConfigurationTypeError(
                "image_dirs", f"must be an iterable of folders, got {image_dirs!r}"
            ) from exc
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
        self.invoice_wait = checked_wait
        self._image_dirs = dirs
        #: How files move (``"auto"``, ``"http"`` or ``"gftp"``); see :meth:`_open_storage`.
        self.transfer = transfer
        #: The real daemon's configuration, once :meth:`_open_daemon` chose one.
        self._daemon_config: ApiConfig | None = None
        self._state = _State.UNOPENED
        #: The services engine, from the moment it runs (kept after the block, for
        #: :attr:`clusters`).
        self._engine: Engine | None = None
        self._payments: PaymentProcessor | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._body: trio.CancelScope | None = None
        self._interrupted: str | None = None
        self._resolver: StaticResolver | None = None
        #: What the payment processor paid and left unpaid; set at exit.
        self.payment_report: PaymentReport | None = None
        #: The daemon's URL (``None`` for an in-process LocalNet).
        self.api_url: str | None = None
        #: This engine's application session on the daemon, random for each engine: its
        #: agreements are confirmed under it, and agreement events, debit notes and invoices
        #: are read for it only (docs/architecture.md §5.6).
        self.app_session_id = f"golem-trio-{uuid.uuid4().hex}"

    # --- public ----------------------------------------------------------------------------

    @property
    def localnet(self) -> LocalNet | None:
        """The LocalNet in use (embedded or given), if any."""
        return self._localnet

    @property
    def operative(self) -> bool:
        """Whether the engine runs: its block was entered and has not ended."""
        return self._state is _State.OPENED and self._engine is not None

    @property
    def clusters(self) -> list[Cluster[Any]]:
        """Every cluster :meth:`run_service` started (still readable after the block)."""
        return self._engine.clusters if self._engine is not None else []

    @property
    def payments(self) -> PaymentProcessor:
        """The payment processor; only inside the block."""
        self._check_open("payments")
        if self._payments is None:
            raise RuntimeError("payments: the engine is still starting")
        return self._payments

    def add_event_consumer(
        self, consumer: EventConsumer, kinds: tuple[type, ...] | None = None
    ) -> None:
        self._emitter.add_consumer(consumer, kinds)

    def emit(self, event: object) -> None:
        """Hand ``event`` to the consumers (as the engine's own events are)."""
        self._emitter.emit(event)

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
        network: Network | None = None,
        network_addresses: Iterable[str] | None = None,
    ) -> Cluster[S]:
        """Start a cluster of ``service_class`` and return it once its demand is published;
        instances come up in the background (``await cluster.wait_running()``).

        With ``network`` (from :meth:`create_network`) each instance's activity joins it
        while it lives (``service.network_node``), at the address ``network_addresses``
        gives it by position, else a free one; the ``deploy`` command carries the network's
        configuration. An address the network cannot give raises
        :class:`~golem_trio.network.AddressError`; ``network_addresses`` without a network
        ``ValueError``.

        ``restart`` (default: restart on failures before running, as yapapi) and ``health``
        (default: the activity's state every 60 s, 3 failures) apply to each instance.
        Raises :class:`~golem_trio.ConfigurationError` (a ``ValueError``; for a value of the
        wrong type also a ``TypeError``) for an argument it cannot use (``num_instances`` not
        an integer >= 0, a naive ``expiration``, ...), ``ServiceDefinitionError`` for a class
        the engine cannot drive, ``ValueError`` without a payload, ``RuntimeError`` outside the
        block or once the engine is stopping.
        Cancellation: if cancelled, nothing was started.
        """
        _check_run_service(
            num_instances,
            instance_params,
            payload,
            expiration,
            restart,
            health,
            negotiation_options,
            demand_options,
        )
        if network is not None and not isinstance(network, Network):
            raise ConfigurationTypeError("network", f"must be a Network or None, got {network!r}")
        engine = self._require_engine("run_service")
        return await engine.run_service(
            service_class,
            payload,
            num_instances=num_instances,
            instance_params=instance_params,
            expiration=expiration,
            restart=restart,
            health=health,
            negotiation_options=negotiation_options,
            demand_options=demand_options,
            network=network,
            network_addresses=network_addresses,
        )

    async def create_network(
        self,
        ip: str,
        owner_address: str | None = None,
        mask: str | None = None,
        gateway: str | None = None,
    ) -> Network:
        """Create a VPN network for services (``docs/networks.md``): ``ip`` is the network
        (``"192.168.0.0/24"``, or an address and ``mask``), the requestor takes
        ``owner_address`` (default: the first free host address), ``gateway`` goes to the
        runtimes. Use it as ``async with await golem.create_network(...) as net:`` to remove
        it at the block's end; it is removed once no cluster uses it any more, and at the
        engine's exit in any case.

        Raises :class:`~golem_trio.network.AddressError` for a network or address that
        cannot be used, ``RuntimeError`` outside the block, and the daemon's errors.
        Cancellation: a checkpoint; if cancelled after the daemon made the network, it is
        removed again.
        """
        engine = self._require_engine("create_network")
        return await engine.create_network(
            ip, owner_address=owner_address, mask=mask, gateway=gateway
        )

    def stop(self, reason: StopReason | None = None) -> None:
        """Stop every cluster for good (sync; the block's exit waits for them). The reason
        defaults to ``GolemExit``. Raises ``RuntimeError`` outside the block."""
        self._require_engine("stop").stop(reason or GolemExit())

    async def set_budget(self, budget: float | Decimal | str) -> None:
        """Top the budget up or cut it while services run (the allocation is amended). A cut
        can exhaust the budget at once, which stops every instance (``BudgetExhausted``).

        Raises :class:`~golem_trio.ConfigurationError` for a budget that is not a positive
        number, ``ValueError`` below what is spent, ``RuntimeError`` once the budget ran out or
        outside the block, and the daemon's errors (a top-up the account cannot fund).
        Cancellation: if cancelled while the daemon is asked, the allocation may have changed
        and the budget not.
        """
        payments = self.payments
        amount = _budget("set_budget: budget", budget)
        try:
            await payments.set_budget(amount)
        finally:
            self.budget = payments.budget.budget

    def hurry(self) -> None:
        """Skip the waits that may be skipped: ``shutdown`` handlers and the invoice wait.
        Activities are still destroyed and agreements terminated. Does nothing outside the
        block."""
        if self._state is not _State.OPENED:
            return
        if self._engine is not None:
            self._engine.hurry()
        if self._payments is not None:
            self._payments.hurry()

    # --- the block -------------------------------------------------------------------------

    async def __aenter__(self) -> Golem:
        """Start the engine: the daemon (or an embedded LocalNet), the file server, the
        allocation and the payment processor, the services engine; emit ``GolemStarted``.

        Raises ``RuntimeError`` if this ``Golem`` was entered before (it runs once), and what
        starting raised: a daemon that cannot be reached, a wrong app key, no funds (the error
        itself, not the task groups it passed through).

        Cancellation: checkpoints. If starting fails or is cancelled, what was opened is
        closed again, shielded and bounded by ``Timeouts.start_rollback``, then the error (or
        ``Cancelled``) propagates, and this ``Golem`` is closed. On success the body runs in a
        cancel scope entered here and exited by :meth:`__aexit__` (so both must run in the same
        task, as ``async with`` does); a signal cancels that scope only.
        """
        if self._state is _State.OPENED:
            raise RuntimeError("this Golem is already running; `async with` it once")
        if self._state is _State.CLOSED:
            raise RuntimeError("this Golem has run; a Golem runs once, make a new one")
        self._state = _State.OPENED
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self._run())
        except ExceptionGroup as group:
            self._state = _State.CLOSED
            with trio.move_on_after(self.timeouts.start_rollback, shield=True):
                await stack.aclose()
            # Starting failed for one reason (no daemon, a wrong app key, no funds): raise
            # that error itself, not the task groups it passed through.
            leaf = _only_error(group)
            if leaf is not None:
                raise leaf from group
            raise
        except BaseException:
            self._state = _State.CLOSED
            with trio.move_on_after(self.timeouts.start_rollback, shield=True):
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
        """Stop everything and pay: close the body's scope, emit ``ShutdownStarted``, stop
        every cluster (``Interrupted`` after a signal, else the reason given to :meth:`stop`,
        the budget's, or ``GolemExit``), wait for them, then close what ``__aenter__``
        opened, from the inside out (the engine, the final invoice wait and the allocation's
        release, the file server, the daemon), and emit ``ShutdownFinished``.

        Returns what the body's scope returned; re-raises what the body raised, or raises
        ``KeyboardInterrupt`` after a signal (whatever the body raised is its cause).

        Cancellation: checkpoints. The body's own ``Cancelled`` (a signal, the cancellation of
        the body's scope) ends at the body's scope. The wait for the clusters is shielded and
        bounded by ``Timeouts.exit_wait``; each instance's stopping phase is shielded and
        bounded (``Timeouts.stop_phase``), and so are the adoptions, the final invoice wait
        (``invoice_wait``) and the allocation's release. Closing the rest is not shielded as a
        whole: a cancellation from outside reaches it there, after those shielded parts, and
        propagates once everything is closed. This ``Golem`` is closed either way.
        """
        if self._state is not _State.OPENED or self._body is None or self._stack is None:
            raise RuntimeError("__aexit__ without a successful __aenter__")
        assert self._engine is not None
        engine, body, stack = self._engine, self._body, self._stack
        self._body = self._stack = None
        try:
            pending: BaseException | None = None
            try:
                swallowed = bool(body.__exit__(exc_type, exc, tb))
            # What the body raised, minus our own Cancelled; re-raised below after the shutdown.
            except BaseException as raised:  # noqa: ASYNC103
                swallowed, pending = False, raised
            if exc is not None and _is_keyboard_interrupt(exc):
                self._interrupted = self._interrupted or "SIGINT"
            try:
                if self._interrupted is not None:
                    reason: StopReason = Interrupted(self._interrupted)
                else:
                    reason = engine.stop_reason or GolemExit()
                self.emit(ShutdownStarted(reason=reason.message))
                engine.stop(reason)
                with trio.move_on_after(self.timeouts.exit_wait, shield=True):
                    await engine.wait_finished()
            finally:
                # Whatever the steps above raised, the rest is closed. The stack holds scopes
                # entered before the body: it cannot run inside a new scope. Its own cleanups
                # (invoice wait, allocation release) are shielded and bounded.
                await stack.aclose()
        finally:
            self._state = _State.CLOSED
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
                async with self._open_storage(yagna) as storage:
                    async with open_payments(
                        yagna,
                        budget=self.budget,
                        platform=self.payment_platform,
                        invoice_wait=self.invoice_wait,
                        emit=self.emit,
                        now=now,
                        app_session_id=self.app_session_id,
                    ) as payments:
                        self._payments = payments
                        async with open_engine(
                            yagna,
                            payments,
                            events=self._emitter,
                            platform=self.payment_platform,
                            subnet_tag=self.subnet_tag,
                            storage=storage,
                            stream_output=self.stream_output,
                            timeouts=self.timeouts,
                            now=now,
                            resolver=self._resolver,
                            daemon_outage_limit=self.daemon_outage_limit,
                            seed=self.seed,
                        ) as engine:
                            self._engine = engine
                            if self._interrupted is not None:  # a signal while starting
                                engine.stop(Interrupted(self._interrupted))
                            self.emit(
                                GolemStarted(
                                    api_url=self.api_url or "in-process",
                                    localnet=self._localnet is not None,
                                    budget=self.budget,
                                    payment_platform=self.payment_platform,
                                    subnet_tag=self.subnet_tag,
                                )
                            )
                            yield
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
                yield yagna, net.now
            return
        config = self._api_config
        if config is None and os.environ.get("YAGNA_APPKEY"):
            config = ApiConfig.from_env()
        if config is not None:
            self.api_url = config.api_url
            self._daemon_config = config
            async with YagnaClient(config, **self._seeded()) as yagna:
                yield yagna, _wall_now
            return
        async with self._open_embedded() as net:
            self._localnet = net
            async with self._client_for(net) as yagna:
                self._resolver = StaticResolver()
                yield yagna, net.now

    @contextlib.asynccontextmanager
    async def _open_storage(self, yagna: YagnaClient) -> AsyncIterator[TransferStorage]:
        """The transfer storage: gftp on the real daemon's service bus (``transfer="gftp"``,
        or ``"auto"`` with a real daemon), else loopback HTTP (LocalNet's emulator)."""
        config = self._daemon_config
        if config is not None and self.transfer != "http":
            node_id = (await yagna.identity.get_identity()).identity
            opened = False
            try:
                async with open_gftp_storage(config.gsb_url, node_id) as gftp:
                    opened = True
                    yield gftp
                return
            except TransferUnavailable as exc:
                # "auto" with a daemon whose bus is out of reach (a LocalNet emulator served
                # over HTTP has none): files go over loopback HTTP, as on LocalNet.
                if opened or self.transfer == "gftp":
                    raise
                logger.info("file transfers over loopback HTTP: %s", exc)
        elif config is None and self.transfer == "gftp":
            raise ConfigurationError("transfer", _GFTP_NEEDS_A_DAEMON)
        async with open_http_storage() as storage:
            yield storage

    @contextlib.asynccontextmanager
    async def _client_for(self, net: LocalNet) -> AsyncIterator[YagnaClient]:
        if net.url is not None:
            self.api_url = net.url
            config = ApiConfig(app_key=net.app_key, api_url=net.url)
            async with YagnaClient(config, **self._seeded()) as yagna:
                yield yagna
        else:
            config = ApiConfig(app_key=net.app_key, api_url="http://localnet")
            async with YagnaClient(config, transport=net.transport(), **self._seeded()) as yagna:
                yield yagna

    def _seeded(self) -> dict[str, Any]:
        """The client's sources of jitter (retries, riding out outages): seeded when the
        engine is."""
        if self.seed is None:
            return {}
        return {
            "rng": random.Random(f"{self.seed}/client"),
            "monitor": DaemonMonitor(rng=random.Random(f"{self.seed}/monitor")),
        }

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

    def _check_open(self, what: str) -> None:
        if self._state is _State.UNOPENED:
            raise RuntimeError(f"{what}: use `async with Golem(...) as golem:` first")
        if self._state is _State.CLOSED:
            raise RuntimeError(f"{what}: this Golem's block has ended")

    def _require_engine(self, what: str) -> Engine:
        self._check_open(what)
        if self._engine is None:
            raise RuntimeError(f"{what}: the engine is still starting")
        return self._engine

    # --- signals ---------------------------------------------------------------------------

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
                    if self._engine is not None:
                        self._engine.stop(Interrupted(name))
                else:
                    _say(f"golem-trio: {name}: hurrying (agreements are still terminated)")
                    self.hurry()
