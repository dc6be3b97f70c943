"""What an emulated provider's exe-unit does for one activity.

:class:`Runtime` is the seam between the emulated activity API (state machine, batches, results,
events) and whatever actually runs the commands. :class:`ScriptedRuntime` answers ``run``
commands from Python callables, on trio's clock, so it works in virtual time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

__all__ = [
    "CommandOutcome",
    "Reply",
    "Runtime",
    "RuntimeContext",
    "RuntimeFactory",
    "RuntimeFailure",
    "ScriptedRuntime",
    "scripted_runtime_factory",
]


class RuntimeFailure(Exception):
    """A command that failed without an exit code (deploy, start, transfer): the activity
    reports it as an ``Error`` result with this message."""


@attrs.frozen
class CommandOutcome:
    """The outcome of one ``run`` (or ``transfer``): raw output and the exit code; ``message``
    explains a failure that is not a plain non-zero exit."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    message: str | None = None


@attrs.frozen
class RuntimeContext:
    """What a runtime is told about the activity it serves."""

    activity_id: str
    agreement_id: str
    requestor_id: str
    provider_id: str
    #: The agreement's demand and offer properties (flat keys).
    demand_properties: Mapping[str, Any] = attrs.field(factory=dict)
    offer_properties: Mapping[str, Any] = attrs.field(factory=dict)


class Runtime(Protocol):
    """An exe-unit's work for one activity. Failures of ``deploy``/``start``/``transfer`` are
    raised as :class:`RuntimeFailure`; ``run`` reports them in its :class:`CommandOutcome`."""

    async def deploy(self, params: Mapping[str, Any]) -> None: ...

    async def start(self, args: Sequence[str]) -> None: ...

    async def run(
        self, entry_point: str, args: Sequence[str], capture: Mapping[str, Any] | None
    ) -> CommandOutcome: ...

    async def transfer(self, source: str, destination: str) -> CommandOutcome: ...

    async def usage(self) -> tuple[float, float]:
        """``(cpu_sec, duration_sec)`` so far."""
        ...

    async def terminate(self) -> None: ...


#: Makes the runtime of a new activity.
RuntimeFactory = Callable[[RuntimeContext], Runtime]


@attrs.frozen
class Reply:
    """What a scripted entry point answers; ``duration_s`` is how long the command runs (and
    the CPU seconds it counts)."""

    stdout: bytes | str = b""
    stderr: bytes | str = b""
    exit_code: int = 0
    duration_s: float = 0.0


Script = Callable[[Sequence[str]], Reply]


def _raw(output: bytes | str) -> bytes:
    return output.encode() if isinstance(output, str) else output


class ScriptedRuntime:
    """A runtime whose ``run`` entry points are Python callables ``(args) -> Reply``.

    Every delay is a ``trio.sleep``, so a MockClock makes it instant. Usage: CPU seconds are the
    sum of the run durations, duration seconds the time since ``deploy`` (frozen at
    ``terminate``).
    """

    def __init__(
        self,
        scripts: Mapping[str, Script] | None = None,
        *,
        deploy_s: float = 0.0,
        start_s: float = 0.0,
        transfer_s: float = 0.0,
    ) -> None:
        self.scripts: dict[str, Script] = dict(scripts or {})
        self.deploy_s = deploy_s
        self.start_s = start_s
        self.transfer_s = transfer_s
        self.deploy_params: Mapping[str, Any] | None = None
        self.start_args: list[str] | None = None
        self.transfers: list[tuple[str, str]] = []
        self.terminated = False
        self._cpu = 0.0
        self._deployed_at: float | None = None
        self._ended_at: float | None = None

    async def deploy(self, params: Mapping[str, Any]) -> None:
        await trio.sleep(self.deploy_s)
        self.deploy_params = params
        self._deployed_at = trio.current_time()

    async def start(self, args: Sequence[str]) -> None:
        await trio.sleep(self.start_s)
        self.start_args = list(args)

    async def run(
        self, entry_point: str, args: Sequence[str], capture: Mapping[str, Any] | None
    ) -> CommandOutcome:
        script = self.scripts.get(entry_point)
        if script is None:
            await trio.lowlevel.checkpoint()
            message = f"{entry_point}: command not found"
            return CommandOutcome(stderr=message.encode() + b"\n", exit_code=127, message=message)
        reply = script(list(args))
        await trio.sleep(reply.duration_s)
        self._cpu += reply.duration_s
        return CommandOutcome(_raw(reply.stdout), _raw(reply.stderr), reply.exit_code)

    async def transfer(self, source: str, destination: str) -> CommandOutcome:
        await trio.sleep(self.transfer_s)
        self.transfers.append((source, destination))
        return CommandOutcome()

    async def usage(self) -> tuple[float, float]:
        await trio.lowlevel.checkpoint()
        if self._deployed_at is None:
            return (self._cpu, 0.0)
        end = self._ended_at if self._ended_at is not None else trio.current_time()
        return (self._cpu, end - self._deployed_at)

    async def terminate(self) -> None:
        await trio.lowlevel.checkpoint()
        if not self.terminated:
            self.terminated = True
            self._ended_at = trio.current_time()


def scripted_runtime_factory(
    scripts: Mapping[str, Script] | None = None, **delays: float
) -> Callable[[RuntimeContext], ScriptedRuntime]:
    """A factory giving every activity its own :class:`ScriptedRuntime` over ``scripts``."""

    def make(context: RuntimeContext) -> ScriptedRuntime:
        return ScriptedRuntime(scripts, **delays)

    return make
