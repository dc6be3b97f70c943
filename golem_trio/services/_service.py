"""``Service``: what a user subclasses, and how its handlers are driven.

A handler (``start``, ``run``, ``shutdown``) is either

- an **async generator** in yapapi's style, yielding scripts (``yield self._ctx.commit()`` or
  ``yield script``) and receiving an awaitable of their results back
  (``future = yield ...; results = await future``); or
- a **plain coroutine** in trio's style, awaiting scripts itself
  (``results = await self._ctx.commit()``).

The generator style is built on the coroutine one: :func:`drive_handler` runs a generator from
one task with ``asend``/``athrow`` inside the phase's cancel scope and closes it with a
shielded, bounded ``aclose()``. A command failure surfaces where yapapi raises it: at the
``yield`` (and from every later awaitable of that script, never a hang).

Never ``yield`` inside a cancel scope or nursery that the handler itself opened (trio cannot
see the generator suspend); open them between yields only.

A service object reads the engine's record of it and its cluster through two protocols,
:class:`InstanceRecord` and :class:`ClusterView`, so this module needs neither the instance's
nor the cluster's module.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, ClassVar, Protocol

import trio

from .._errors import GolemError
from ..market import AgreementInfo, Payload
from ..network import NetworkNode, VpnStream
from ..work import ActivityGone, BatchError, Result, Script, WorkContext
from ._reasons import StopReason
from ._state import ServiceState, StateChange

__all__ = [
    "HANDLERS",
    "ClusterView",
    "HandlerError",
    "InstanceRecord",
    "Service",
    "ServiceDefinitionError",
    "check_service_class",
    "drive_handler",
]

#: The lifecycle handlers a service may define.
HANDLERS = ("start", "run", "shutdown")


class ServiceDefinitionError(GolemError, TypeError):
    """A mistake in a ``Service`` subclass, found before anything is signed."""


class HandlerError(GolemError, TypeError):
    """A handler misbehaved while running (for example it yielded something that is not a
    script)."""


class ClusterView(Protocol):
    """The cluster a service object belongs to, as the object sees it (``service.cluster``).

    The object is the :class:`~golem_trio.services.Cluster` itself; this is the part of it
    that does not depend on the service class.
    """

    @property
    def id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def instances(self) -> Sequence[Service]: ...

    @property
    def live_instances(self) -> Sequence[Service]: ...

    def states(self) -> Mapping[ServiceState, int]: ...

    def spawn_instances(
        self,
        num_instances: int | None = None,
        instance_params: Iterable[Mapping[str, Any]] | None = None,
    ) -> Sequence[Service]: ...

    def stop(self, reason: StopReason | None = None) -> Awaitable[None]: ...

    def scale(self, n: int) -> Awaitable[None]: ...


class InstanceRecord(Protocol):
    """The engine's record of one instance, as its service object reads it
    (``service.instance``; the record is a :class:`~golem_trio.services.ServiceInstance`)."""

    @property
    def id(self) -> str: ...

    @property
    def service(self) -> Service: ...

    @property
    def cluster(self) -> ClusterView: ...

    @property
    def state(self) -> ServiceState: ...

    @property
    def history(self) -> Sequence[StateChange]: ...

    @property
    def stop_reason(self) -> StopReason | None: ...

    @property
    def stop_reasons(self) -> Sequence[StopReason]: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def agreement(self) -> AgreementInfo | None: ...

    @property
    def activity_id(self) -> str | None: ...

    @property
    def network_node(self) -> NetworkNode | None: ...

    @property
    def provider_id(self) -> str | None: ...

    @property
    def provider_name(self) -> str | None: ...

    @property
    def lives(self) -> int: ...

    @property
    def reached_running(self) -> bool: ...

    @property
    def shutdown_ran(self) -> bool: ...

    @property
    def shutdown_timed_out(self) -> bool: ...

    @property
    def cleanup_timed_out(self) -> bool: ...

    @property
    def stopped_for_good(self) -> bool: ...

    @property
    def finished(self) -> bool: ...


class Service:
    """Base class of a service; each object is one instance.

    Subclasses define ``get_payload`` (a static async method returning a payload, e.g.
    ``vm.repo(...)``) and override ``start``, ``run`` and ``shutdown`` as async generators or
    coroutines. The engine sets ``self._ctx`` (a :class:`~golem_trio.work.WorkContext`) once
    the activity exists. A restart reuses the same object with a new context; override
    :meth:`reset` to clear state between lives.

    Defaults: ``start`` deploys and starts the activity; ``run`` waits until the instance is
    stopped; ``shutdown`` terminates the activity's runtime. If an overriding ``start`` does not
    deploy, the engine deploys and starts the activity before its first script (the seed's
    ``start`` relies on this).
    """

    _ctx: WorkContext
    _instance: InstanceRecord | None = None
    #: Per-class override of the health probe interval (seconds; ``None``: engine default).
    health_check_interval: ClassVar[float | None] = None

    def __init__(self) -> None:
        self.__id = uuid.uuid4().hex

    # --- what users override -------------------------------------------------------------

    @staticmethod
    async def get_payload() -> Payload | None:
        """The payload to run (``None``: ``run_service(payload=...)`` must give one)."""
        await trio.lowlevel.checkpoint()
        return None

    def get_deploy_args(self) -> dict[str, Any]:
        """Keyword arguments of the default ``deploy``: the VPN configuration (``net``) when
        the instance is a node of a network, else none."""
        node = self.network_node
        return node.deploy_args() if node is not None else {}

    # The handlers are async generators by contract (yapapi's work-generator pattern).
    async def start(  # noqa: ASYNC900
        self,
    ) -> AsyncGenerator[Script, Awaitable[list[Result]]]:
        """Deploy and start the activity."""
        await trio.lowlevel.checkpoint()
        script = self._ctx.new_script()
        script.deploy(**self.get_deploy_args())
        script.start()
        yield script
        await trio.lowlevel.checkpoint()

    async def run(self) -> None:
        """Wait until the instance is stopped."""
        await trio.sleep_forever()

    async def shutdown(  # noqa: ASYNC900
        self,
    ) -> AsyncGenerator[Script, Awaitable[list[Result]]]:
        """Terminate the activity's runtime."""
        await trio.lowlevel.checkpoint()
        script = self._ctx.new_script()
        script.terminate()
        yield script
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        """Called before a restart, to clear what the previous life left in the object."""
        await trio.lowlevel.checkpoint()

    async def is_activity_responsive(self) -> bool:
        """The health probe. Default: the activity's state; a terminated activity raises
        :class:`~golem_trio.work.ActivityGone`, which stops the instance at once.

        Override for a service-level probe (an HTTP ping, a command). Return ``False`` or raise
        to count a failure (``ActivityGone`` stops at once); the engine bounds each probe in
        time.
        """
        state = await self._ctx.get_raw_state()
        if not state.alive:
            reason = state.reason or state.error_message or "terminated"
            raise ActivityGone(reason, **self._ctx._where())
        return True

    # --- what users read -------------------------------------------------------------------

    @property
    def id(self) -> str:
        ident: str | None = self.__dict__.get("_Service__id")
        if ident is None:
            # A subclass may forget ``super().__init__()``: make the id on first use then.
            ident = self.__dict__.setdefault("_Service__id", uuid.uuid4().hex)
        return ident

    @property
    def instance(self) -> InstanceRecord:
        """The engine's record of this instance (state, history, stop reason)."""
        if self._instance is None:
            raise RuntimeError("this service object is not part of a cluster")
        return self._instance

    @property
    def state(self) -> ServiceState:
        return self.instance.state

    @property
    def is_available(self) -> bool:
        return self.instance.state.is_available

    @property
    def stop_reason(self) -> StopReason | None:
        """Why the current (or last) life ended; ``None`` while it lives."""
        return self.instance.stop_reason

    @property
    def provider_id(self) -> str | None:
        return self.instance.provider_id

    @property
    def provider_name(self) -> str | None:
        return self.instance.provider_name

    @property
    def is_running(self) -> bool:
        """The instance is in the ``running`` state (what the proxies look for)."""
        return self._instance is not None and self._instance.state is ServiceState.RUNNING

    @property
    def network_node(self) -> NetworkNode | None:
        """This instance's place in its cluster's network (address, node id) while its
        activity lives; ``None`` without a network, or between lives."""
        return self._instance.network_node if self._instance is not None else None

    async def open_tcp_stream(self, port: int) -> VpnStream:
        """A TCP connection to ``port`` of this instance inside its network, through the
        daemon's websocket, as a trio stream (close it with ``aclose`` or ``async with``).

        Raises ``RuntimeError`` when the instance is not a node of a network now, and
        :class:`~golem_trio.network.VpnConnectionError` (``status`` 504 when nothing listens
        there). Cancellation: a checkpoint; if cancelled, no connection is left open.
        """
        node = self.network_node
        if node is None:
            await trio.lowlevel.checkpoint()
            raise RuntimeError(f"{self!r} is not a node of a network now")
        return await node.open_tcp_stream(port)

    @property
    def exc_info(self) -> BaseException | None:
        """The error that ended the last life, if one did."""
        return self.instance.error

    @property
    def cluster(self) -> ClusterView:
        """The cluster this object belongs to."""
        return self.instance.cluster

    def __repr__(self) -> str:
        name = type(self).__name__
        if self._instance is None:
            return f"<{name} {self.id[:8]}>"
        where = f" on {self.provider_name}" if self.provider_name else ""
        return f"<{name} {self.id[:8]} {self.instance.state.value}{where}>"


# --- checking a class ---------------------------------------------------------------------------


def check_service_class(service_class: type[Service]) -> None:
    """Raise :class:`ServiceDefinitionError` for a class the engine cannot drive."""
    if not (isinstance(service_class, type) and issubclass(service_class, Service)):
        raise ServiceDefinitionError(f"{service_class!r} is not a subclass of golem_trio.Service")
    payload = inspect.getattr_static(service_class, "get_payload")
    if not isinstance(payload, staticmethod | classmethod):
        raise ServiceDefinitionError(
            f"{service_class.__name__}.get_payload must be a @staticmethod "
            "(async def get_payload(): return await vm.repo(...))"
        )
    if not inspect.iscoroutinefunction(service_class.get_payload):
        raise ServiceDefinitionError(f"{service_class.__name__}.get_payload must be `async def`")
    for name in HANDLERS:
        handler = getattr(service_class, name)
        if not (inspect.isasyncgenfunction(handler) or inspect.iscoroutinefunction(handler)):
            raise ServiceDefinitionError(
                f"{service_class.__name__}.{name} must be an async generator "
                "(`async def` with `yield`) or a coroutine (`async def`), "
                f"not {type(handler).__name__}"
            )
    probe = service_class.is_activity_responsive
    if not inspect.iscoroutinefunction(probe):
        raise ServiceDefinitionError(
            f"{service_class.__name__}.is_activity_responsive must be `async def`"
        )


# --- driving a handler ----------------------------------------------------------------------------


class _Results:
    """What a generator handler gets back for a yielded script: ``await`` it for the results.

    For a script run with ``wait_for_results=False`` it waits for the batch; otherwise the
    results are already there.
    """

    def __init__(self) -> None:
        self._done = trio.Event()
        self._results: list[Result] | None = None
        self._error: BaseException | None = None

    def set(self, results: list[Result] | None, error: BaseException | None = None) -> None:
        self._results, self._error = results, error
        self._done.set()

    async def _wait(self) -> list[Result]:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._results is not None
        return self._results

    def __await__(self) -> Generator[Any, None, list[Result]]:
        return self._wait().__await__()


RunScript = Callable[[Script], Awaitable[list[Result]]]


async def drive_handler(
    handler: Callable[[], Any],
    *,
    name: str,
    run_script: RunScript,
    nursery: trio.Nursery,
    close_timeout: float = 5.0,
) -> None:
    """Run one handler to its end.

    ``run_script`` executes a yielded script (the engine's hook for implicit deploy and
    events); scripts with ``wait_for_results=False`` run in ``nursery``.

    Raises what the handler raises; :class:`HandlerError` when it yields something that is
    not a script. Cancellation: the handler is interrupted at its current ``await``; a
    generator is then closed (shielded, at most ``close_timeout`` seconds), so its ``finally``
    blocks run.
    """
    made = handler()
    if inspect.iscoroutine(made):
        await made
        return
    if not inspect.isasyncgen(made):
        raise HandlerError(
            f"{name}() returned {type(made).__name__}; it must be an async generator or coroutine"
        )
    await _drive_generator(made, name, run_script, nursery, close_timeout)


async def _drive_generator(
    gen: AsyncGenerator[Any, Any],
    name: str,
    run_script: RunScript,
    nursery: trio.Nursery,
    close_timeout: float,
) -> None:
    sent: _Results | None = None
    throw: BaseException | None = None
    try:
        while True:
            await trio.lowlevel.checkpoint()
            try:
                if throw is not None:
                    error, throw = throw, None
                    item = await gen.athrow(error)
                else:
                    item = await gen.asend(sent)
            except StopAsyncIteration:
                return
            if not isinstance(item, Script):
                raise HandlerError(
                    f"{name}() yielded {item!r}; yield a script: `yield self._ctx.commit()` "
                    "or `script = self._ctx.new_script(); ...; yield script`"
                )
            sent = _Results()
            if item.wait_for_results:
                try:
                    results = await run_script(item)
                except BatchError as exc:
                    # As in yapapi, a failed command surfaces at the handler's `yield`.
                    sent.set(None, exc)
                    throw = exc
                    continue
                sent.set(results)
            else:
                nursery.start_soon(_run_detached, run_script, item, sent)
    finally:
        with trio.move_on_after(close_timeout, shield=True):
            await gen.aclose()


async def _run_detached(run_script: RunScript, script: Script, into: _Results) -> None:
    await trio.lowlevel.checkpoint()
    try:
        results = await run_script(script)
    except BatchError as exc:
        into.set(None, exc)
    except BaseException as exc:
        # Whoever awaits the results must not hang; the error also fails the phase.
        into.set(None, exc)
        raise
    else:
        into.set(results)
