"""The emulated activity API: activities, their exe-unit state machine, exec batches, results
and runtime events (docs/daemon-notes.md §4).

Behaviour follows the real daemon: create answers 200 with a shape that mirrors the request;
an unknown activity id is a 500 ``DAO error``; results are cumulative and the
``commandIndex``/``timeout`` rules (408, the ``isBatchFinished`` quirk) are the daemon's; the
event stream is snake_case and never replays.

The commands themselves run in a :class:`~golem_trio.localnet.providers.Runtime` made per
activity by the ``runtime_factory``; batches run in the background, in the daemon's nursery.
The exe-unit model (states, batches, results, :func:`execute_command`, :func:`command_result`)
is shared with the real daemon backend's exe-unit (``golem_trio.localnet.yagna``).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

from ..providers import CommandOutcome, Runtime, RuntimeContext, RuntimeFactory, RuntimeFailure
from ._core import Daemon, DaemonError
from ._market import AgreementState, MarketState, format_time

__all__ = [
    "ALLOWED",
    "NEXT_STATE",
    "Activity",
    "ActivityState",
    "Batch",
    "CommandFaults",
    "CommandResult",
    "ExeUnitState",
    "InjectedFault",
    "command_result",
    "execute_command",
    "format_event_time",
    "parse_exe_script",
]

Json = dict[str, Any]

#: The variants of the daemon's ``ExeScriptCommand`` enum, in its declaration order.
COMMANDS = ("sign", "deploy", "start", "run", "transfer", "terminate")
CAPTURE_FORMATS = {"str": "str", "string": "str", "bin": "bin", "binary": "bin"}
CAPTURE_PARTS = ("head", "tail", "headTail")
SCRIPT_ERROR = "Unable to parse ExeScript: "


class ExeUnitState(enum.StrEnum):
    NEW = "New"
    INITIALIZED = "Initialized"
    DEPLOYED = "Deployed"
    READY = "Ready"
    UNRESPONSIVE = "Unresponsive"
    TERMINATED = "Terminated"


#: Commands each state accepts, and the state a successful command moves to.
ALLOWED: dict[ExeUnitState, frozenset[str]] = {
    ExeUnitState.INITIALIZED: frozenset({"deploy"}),
    ExeUnitState.DEPLOYED: frozenset({"start"}),
    ExeUnitState.READY: frozenset({"run", "transfer", "sign", "terminate"}),
}
NEXT_STATE = {
    "deploy": ExeUnitState.DEPLOYED,
    "start": ExeUnitState.READY,
    "terminate": ExeUnitState.TERMINATED,
}


def format_event_time(value: dt.datetime) -> str:
    """Naive UTC with nanoseconds, as the exec event stream writes timestamps."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000"


# --- ExeScript parsing ---------------------------------------------------------------------------


def _unexpected(value: object) -> str:
    """How serde names an unexpected JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{json.dumps(value)}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _bad(message: str) -> DaemonError:
    return DaemonError(400, SCRIPT_ERROR + message)


def _invalid(value: object, expected: str) -> DaemonError:
    return _bad(f"invalid type: {_unexpected(value)}, expected {expected}")


def _string(body: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    if key not in body or body[key] is None:
        if required:
            raise _bad(f"missing field `{key}`")
        return None
    value = body[key]
    if not isinstance(value, str):
        raise _invalid(value, "a string")
    return value


def _strings(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(value, "a sequence")
    for item in value:
        if not isinstance(item, str):
            raise _invalid(item, "a string")
    return list(value)


def _count(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(value, "usize")
    return value


def _object(value: object, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(value, expected)
    return value


def _capture_mode(value: object) -> Json | None:
    """One stream's capture: ``{"atEnd": {...}}`` or ``{"stream": {...}}``, normalised."""
    if value is None:
        return None
    mode = _object(value, "enum CaptureMode")
    if len(mode) != 1:
        raise _bad("invalid length, expected map with a single key for enum CaptureMode")
    ((kind, body),) = mode.items()
    if kind not in ("atEnd", "stream"):
        raise _bad(f"unknown variant `{kind}`, expected `atEnd` or `stream`")
    body = {} if body is None else _object(body, f"struct variant CaptureMode::{kind}")
    fmt = _string(body, "format")
    if fmt is not None and fmt not in CAPTURE_FORMATS:
        raise _bad(f"unknown variant `{fmt}`, expected one of `str`, `string`, `bin`, `binary`")
    normal: Json = {"kind": kind, "format": CAPTURE_FORMATS.get(fmt or "str", "str")}
    if kind == "stream":
        normal["limit"] = _count(body, "limit")
        return normal
    parts = [key for key in CAPTURE_PARTS if body.get(key) is not None]
    if len(parts) > 1:
        raise _bad("capture: at most one of `head`, `tail`, `headTail`")
    normal["part"] = (parts[0], _count(body, parts[0])) if parts else None
    return normal


def _check_command(name: str, body: Mapping[str, Any]) -> None:
    if name == "run":
        _string(body, "entry_point", required=True)
        _strings(body, "args")
        capture = body.get("capture")
        if capture is not None:
            capture = _object(capture, "struct Capture")
            _capture_mode(capture.get("stdout"))
            _capture_mode(capture.get("stderr"))
    elif name == "start":
        _strings(body, "args")
    elif name == "transfer":
        _string(body, "from", required=True)
        _string(body, "to", required=True)
        _string(body, "format")
        _count(body, "depth")
        if body.get("progress") is not None:
            _object(body["progress"], "struct ProgressArgs")
    elif name == "deploy":
        for key in ("hosts", "env", "progress"):
            if body.get(key) is not None:
                _object(body[key], "a map")
        if body.get("net") is not None and not isinstance(body["net"], list):
            raise _invalid(body["net"], "a sequence")
        _string(body, "hostname")


def parse_exe_script(request: object) -> list[Json]:
    """The commands of an ``ExeScriptRequest`` body, each ``{name: body}``; the daemon's 400
    (serde-style message) if the request or any command is malformed."""
    if not isinstance(request, Mapping):
        raise DaemonError(
            400,
            f"Json deserialize error: invalid type: {_unexpected(request)}, expected struct"
            " ExeScriptRequest",
        )
    if "text" not in request:
        raise DaemonError(400, "Json deserialize error: missing field `text`")
    text = request["text"]
    if not isinstance(text, str):
        raise DaemonError(
            400, f"Json deserialize error: invalid type: {_unexpected(text)}, expected a string"
        )
    try:
        script = json.loads(text)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if not isinstance(script, list):
        raise _invalid(script, "a sequence")
    commands: list[Json] = []
    for command in script:
        command = _object(command, "enum ExeScriptCommand")
        if len(command) != 1:
            raise _bad("invalid length, expected map with a single key for enum ExeScriptCommand")
        ((name, body),) = command.items()
        if name not in COMMANDS:
            expected = ", ".join(f"`{c}`" for c in COMMANDS)
            raise _bad(f"unknown variant `{name}`, expected one of {expected}")
        variant = f"struct variant ExeScriptCommand::{name.capitalize()}"
        _check_command(name, _object(body, variant))
        commands.append({name: body})
    return commands


# --- captured output -----------------------------------------------------------------------------


def _clip(output: bytes, part: tuple[str, int | None] | None) -> bytes:
    if part is None:
        return output
    kind, limit = part
    if limit is None or len(output) <= limit:
        return output
    if kind == "head":
        return output[:limit]
    if kind == "tail":
        return output[len(output) - limit :]
    head = limit // 2
    return output[:head] + output[len(output) - (limit - head) :]


def _render(output: bytes, fmt: str) -> str | list[int]:
    return list(output) if fmt == "bin" else output.decode("utf-8", errors="replace")


def _at_end(output: bytes, mode: Json | None) -> str | list[int] | None:
    """The output a result carries, ``null`` when empty or not captured.

    ``atEnd`` captures keep their head/tail part; ``stream`` captures are also buffered for
    the result, up to their ``limit`` (the exe-unit's ``output.rs`` does both), so a client
    that polls instead of streaming still gets the output."""
    if mode is None:
        return None
    if mode["kind"] == "atEnd":
        clipped = _clip(output, mode["part"])
    else:
        limit = mode["limit"]
        clipped = output if limit is None else output[:limit]
    return _render(clipped, mode["format"]) if clipped else None


# --- activities and batches ----------------------------------------------------------------------


@attrs.frozen
class InjectedFault:
    """A fault for one command: fail it with ``failure`` instead of running it, or replace
    its stdout with ``stdout`` (``run`` commands)."""

    failure: str | None = None
    stdout: bytes | None = None


class CommandFaults(Protocol):
    """Where the activity API asks whether a fault applies to a command about to run."""

    def command_fault(
        self, provider_id: str, activity_id: str, command: str
    ) -> InjectedFault | None: ...


@attrs.define(eq=False)
class CommandResult:
    index: int
    event_date: dt.datetime
    ok: bool
    stdout: str | list[int] | None = None
    stderr: str | list[int] | None = None
    message: str | None = None
    is_batch_finished: bool = False

    def json(self, *, with_output: bool = True, finished: bool | None = None) -> Json:
        return {
            "index": self.index,
            "eventDate": format_time(self.event_date),
            "result": "Ok" if self.ok else "Error",
            "stdout": self.stdout if with_output else None,
            "stderr": self.stderr if with_output else None,
            "message": self.message,
            "isBatchFinished": self.is_batch_finished if finished is None else finished,
        }


@attrs.define(eq=False)
class Batch:
    batch_id: str
    commands: list[Json]
    results: list[CommandResult] = attrs.field(factory=list)
    finished: bool = False
    #: Open event streams; closed when the batch ends.
    listeners: list[trio.MemorySendChannel[Json]] = attrs.field(factory=list)
    changed: trio.Event = attrs.field(factory=trio.Event)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def add_result(self, result: CommandResult) -> None:
        self.results.append(result)
        if result.is_batch_finished:
            self.finish()
        self._notify()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.results:
            self.results[-1].is_batch_finished = True
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()
        self._notify()

    def live_listeners(self) -> int:
        """How many event streams are open (streams whose client left are dropped here)."""
        self.listeners = [
            listener
            for listener in self.listeners
            if listener.statistics().open_receive_channels > 0
        ]
        return len(self.listeners)

    def emit(self, event: Json) -> None:
        for listener in list(self.listeners):
            try:
                listener.send_nowait(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.listeners.remove(listener)


@attrs.define(eq=False)
class Activity:
    activity_id: str
    agreement_id: str
    requestor_id: str
    provider_id: str
    runtime: Runtime
    state: ExeUnitState = ExeUnitState.NEW
    pending: ExeUnitState | None = None
    reason: str | None = None
    error_message: str | None = None
    batches: dict[str, Batch] = attrs.field(factory=dict)
    running: Batch | None = None
    #: The command now running: (batch id, command).
    current: tuple[str, Json] | None = None
    scope: trio.CancelScope | None = None

    def state_json(self) -> Json:
        body: Json = {
            "state": [self.state.value, None if self.pending is None else self.pending.value]
        }
        if self.reason is not None:
            body["reason"] = self.reason
        if self.error_message is not None:
            body["errorMessage"] = self.error_message
        return body


class ActivityState:
    """The activities of one emulated daemon (requestor side, and the provider's hooks)."""

    def __init__(
        self, daemon: Daemon, market: MarketState, runtime_factory: RuntimeFactory
    ) -> None:
        self.daemon = daemon
        self.market = market
        self.runtime_factory = runtime_factory
        self.activities: dict[str, Activity] = {}
        # Activity ids by agreement, in creation order: every provider asks for its
        # agreement's activities on each tick, which must not scan every activity.
        self._by_agreement: dict[str, list[str]] = {}
        #: Command faults (LocalNet's fault plan), if any.
        self.faults: CommandFaults | None = None

    # --- lookups ---------------------------------------------------------------------------------

    def _activity(self, caller_id: str, activity_id: str) -> Activity:
        activity = self.activities.get(activity_id)
        if activity is None:
            raise DaemonError(500, f"DAO error: Not found: activity [{activity_id}]")
        if caller_id not in (activity.requestor_id, activity.provider_id):
            raise DaemonError(403, f"Forbidden: activity [{activity_id}] is not yours")
        return activity

    def activities_of(self, agreement_id: str) -> list[str]:
        return list(self._by_agreement.get(agreement_id, ()))

    def agreement_of(self, activity_id: str) -> str:
        activity = self.activities.get(activity_id)
        if activity is None:
            raise KeyError(activity_id)
        return activity.agreement_id

    def ledger(self) -> list[Json]:
        """Every activity: id, agreement id, provider and state."""
        return [
            {
                "id": a.activity_id,
                "agreementId": a.agreement_id,
                "providerId": a.provider_id,
                "state": a.state.value,
            }
            for a in self.activities.values()
        ]

    # --- create and destroy ----------------------------------------------------------------------

    async def create_activity(self, caller_id: str, body: object, wait: float) -> object:
        """``POST /activity``: a bare agreement id answers a bare activity id, the object form
        answers ``{"activityId": …}``."""
        if isinstance(body, str):
            agreement_id, bare = body, True
        elif isinstance(body, Mapping) and isinstance(body.get("agreementId"), str):
            agreement_id, bare = body["agreementId"], False
            if body.get("requestorPubKey") is not None and not isinstance(
                body["requestorPubKey"], str
            ):
                raise DaemonError(400, "Json deserialize error: invalid requestorPubKey")
        else:
            raise DaemonError(
                400, "Json deserialize error: expected an agreement id or CreateActivityRequest"
            )
        agreement = self.market.agreements.get(agreement_id)
        if agreement is None:
            raise DaemonError(404, f"Agreement [{agreement_id}] not found")
        if agreement.requestor_id != caller_id:
            raise DaemonError(403, f"Forbidden: agreement [{agreement_id}] is not yours")
        if agreement.state is not AgreementState.APPROVED:
            raise DaemonError(
                400, f"Agreement [{agreement_id}] is not Approved (state {agreement.state})"
            )
        activity_id = self.daemon.ids.activity()
        context = RuntimeContext(
            activity_id=activity_id,
            agreement_id=agreement_id,
            requestor_id=agreement.requestor_id,
            provider_id=agreement.provider_id,
            demand_properties=agreement.demand_proposal.properties,
            offer_properties=agreement.offer_proposal.properties,
        )
        activity = Activity(
            activity_id,
            agreement_id,
            agreement.requestor_id,
            agreement.provider_id,
            self.runtime_factory(context),
        )
        self.activities[activity_id] = activity
        self._by_agreement.setdefault(agreement_id, []).append(activity_id)
        # The exe-unit comes up at once; ``wait`` bounds it on the real daemon.
        activity.state = ExeUnitState.INITIALIZED
        await trio.lowlevel.checkpoint()
        return activity_id if bare else {"activityId": activity_id}

    def _end(self, activity: Activity, reason: str | None, error_message: str | None) -> bool:
        """Mark the activity terminated and stop its batch; False if it already was."""
        if activity.state is ExeUnitState.TERMINATED:
            return False
        activity.state = ExeUnitState.TERMINATED
        activity.pending = None
        activity.reason = reason
        activity.error_message = error_message
        if activity.scope is not None:
            activity.scope.cancel()
        return True

    async def destroy_activity(self, caller_id: str, activity_id: str) -> None:
        activity = self._activity(caller_id, activity_id)
        if self._end(activity, None, None):
            await activity.runtime.terminate()
        else:
            await trio.lowlevel.checkpoint()

    def kill(self, activity_id: str, reason: str, error_message: str | None = None) -> None:
        """The provider ends the activity: its state becomes ``Terminated`` with ``reason``
        (and ``errorMessage``, by default the reason too)."""
        activity = self.activities.get(activity_id)
        if activity is None:
            raise KeyError(activity_id)
        if self._end(activity, reason, reason if error_message is None else error_message):
            self.daemon.spawn(activity.runtime.terminate)

    # --- queries ---------------------------------------------------------------------------------

    def get_state(self, caller_id: str, activity_id: str) -> Json:
        return self._activity(caller_id, activity_id).state_json()

    async def get_usage(self, caller_id: str, activity_id: str) -> Json:
        activity = self._activity(caller_id, activity_id)
        cpu, duration = await activity.runtime.usage()
        return {
            "currentUsage": [cpu, duration],
            "timestamp": int(self.daemon.clock.now().timestamp()),
        }

    def running_command(self, caller_id: str, activity_id: str) -> list[Json]:
        activity = self._activity(caller_id, activity_id)
        if activity.current is None:
            raise DaemonError(404, "No command running")
        batch_id, command = activity.current
        ((name, body),) = command.items()
        entry: Json = {"batchId": batch_id, "command": name}
        if name == "run":
            entry["params"] = [body["entry_point"], *(body.get("args") or [])]
        elif name == "transfer":
            entry["params"] = [body["from"], body["to"]]
        return [entry]

    def activity_agreement(self, caller_id: str, activity_id: str) -> str:
        return self._activity(caller_id, activity_id).agreement_id

    def list_activities(self, caller_id: str, agreement_id: str | None) -> list[str]:
        if agreement_id is None:
            raise DaemonError(400, "Query deserialize error: missing field `agreementId`")
        activities = (self.activities[i] for i in self._by_agreement.get(agreement_id, ()))
        return [a.activity_id for a in activities if caller_id in (a.requestor_id, a.provider_id)]

    # --- exec ------------------------------------------------------------------------------------

    def exec(self, caller_id: str, activity_id: str, body: object) -> str:
        """Start a batch in the background; its id. A batch sent while another runs fails at
        once with a ``Busy`` result."""
        activity = self._activity(caller_id, activity_id)
        commands = parse_exe_script(body)
        if activity.state is ExeUnitState.TERMINATED:
            raise DaemonError(
                500, f"GSB error: endpoint address not found: exe-unit of [{activity_id}]"
            )
        batch = Batch(self.daemon.ids.activity(), commands)
        activity.batches[batch.batch_id] = batch
        if activity.running is not None:
            state = activity.state.value
            batch.add_result(
                CommandResult(
                    0,
                    self.daemon.clock.stamp(),
                    False,
                    message=f"Busy: {state}",
                    is_batch_finished=True,
                )
            )
            batch.finish()
            return batch.batch_id
        if not commands:
            batch.finish()
            return batch.batch_id
        activity.running = batch

        async def run() -> None:
            await self._run_batch(activity, batch)

        self.daemon.spawn(run)
        return batch.batch_id

    def _event(self, batch: Batch, index: int, kind: Json) -> None:
        batch.emit(
            {
                "batch_id": batch.batch_id,
                "index": index,
                "timestamp": format_event_time(self.daemon.clock.stamp()),
                "kind": kind,
            }
        )

    async def _run_batch(self, activity: Activity, batch: Batch) -> None:
        await trio.lowlevel.checkpoint()
        try:
            for index, command in enumerate(batch.commands):
                ok = await self._run_command(activity, batch, index, command)
                if not ok:
                    break
        finally:
            activity.running = None
            activity.current = None
            batch.finish()

    async def _run_command(
        self, activity: Activity, batch: Batch, index: int, command: Json
    ) -> bool:
        """Run one command, record its result and events; whether the batch goes on."""
        await trio.lowlevel.checkpoint()
        ((name, body),) = command.items()
        last = index == len(batch.commands) - 1
        self._event(batch, index, {"started": {"command": command}})
        outcome: CommandOutcome | None = None
        failure: str | None = None
        capture: Json = {}
        allowed = ALLOWED.get(activity.state, frozenset())
        injected = None
        if name in allowed and self.faults is not None:
            injected = self.faults.command_fault(activity.provider_id, activity.activity_id, name)
        if name not in allowed:
            failure = f"{name} command not allowed in state {activity.state.value}"
        elif injected is not None and injected.failure is not None:
            failure = injected.failure
        else:
            activity.current = (batch.batch_id, command)
            activity.pending = NEXT_STATE.get(name, activity.state)
            activity.scope = trio.CancelScope()
            with activity.scope:
                try:
                    outcome, capture = await self._execute(activity, name, body)
                    if outcome is not None and injected is not None and injected.stdout is not None:
                        outcome = attrs.evolve(outcome, stdout=injected.stdout)
                except RuntimeFailure as exc:
                    failure = str(exc) or f"{name} failed"
            activity.scope = None
            activity.current = None
            if activity.state is ExeUnitState.TERMINATED:
                failure = failure or "Activity terminated"
                outcome = None
            else:
                activity.pending = None
                if failure is None and (outcome is None or outcome.exit_code == 0):
                    activity.state = NEXT_STATE.get(name, activity.state)
        if name == "terminate" and failure is None:
            await activity.runtime.terminate()
        result, return_code = command_result(
            index,
            self.daemon.clock.stamp(),
            failure,
            outcome,
            capture,
            lambda kind: self._event(batch, index, kind),
        )
        self._event(
            batch, index, {"finished": {"return_code": return_code, "message": result.message}}
        )
        result.is_batch_finished = last or not result.ok
        batch.add_result(result)
        return result.ok

    async def _execute(
        self, activity: Activity, name: str, body: Mapping[str, Any]
    ) -> tuple[CommandOutcome | None, Json]:
        return await execute_command(activity.runtime, name, body)

    # --- results ---------------------------------------------------------------------------------

    def _batch(self, caller_id: str, activity_id: str, batch_id: str) -> Batch:
        batch = self._activity(caller_id, activity_id).batches.get(batch_id)
        if batch is None:
            raise DaemonError(404, f"Batch [{batch_id}] not found")
        return batch

    async def batch_results(
        self,
        caller_id: str,
        activity_id: str,
        batch_id: str,
        wait: float,
        command_index: int | None,
    ) -> list[Json]:
        """Cumulative results up to the awaited index (docs/daemon-notes.md §4.4)."""
        batch = self._batch(caller_id, activity_id, batch_id)
        if command_index is not None and not 0 <= command_index < len(batch.commands):
            raise DaemonError(400, f"Invalid command index: {command_index}")
        awaited = len(batch.commands) - 1 if command_index is None else command_index

        def done() -> bool:
            return batch.finished or len(batch.results) > awaited

        with trio.move_on_after(max(wait, 0.0)):
            await trio.lowlevel.checkpoint()
            while not done():
                await batch.changed.wait()
        if not done() and command_index is not None:
            raise DaemonError(408, "Timeout")
        results = batch.results[: awaited + 1]
        if command_index is None:
            return [r.json() for r in results]
        return [
            r.json(
                with_output=r.index == command_index,
                finished=r.is_batch_finished or r.index == command_index,
            )
            for r in results
        ]

    def watch(
        self, caller_id: str, activity_id: str, batch_id: str
    ) -> trio.MemoryReceiveChannel[Json]:
        """The batch's runtime events from now on (no replay); the channel ends with the
        batch (at once if it has already ended)."""
        batch = self._batch(caller_id, activity_id, batch_id)
        send, receive = trio.open_memory_channel[Json](math.inf)
        if batch.finished:
            send.close()
        else:
            batch.live_listeners()
            batch.listeners.append(send)
        return receive


async def execute_command(
    runtime: Runtime, name: str, body: Mapping[str, Any]
) -> tuple[CommandOutcome | None, Json]:
    """Run one exe-script command on ``runtime``: its outcome (``run`` only) and the capture
    modes of its output. A failing deploy, start or transfer raises :class:`RuntimeFailure`.
    Shared by the emulator and the real daemon backend's exe-unit."""
    if name == "deploy":
        await runtime.deploy(body)
    elif name == "start":
        await runtime.start(body.get("args") or [])
    elif name == "run":
        capture = body.get("capture") or {}
        modes = {stream: _capture_mode(capture.get(stream)) for stream in ("stdout", "stderr")}
        args: Sequence[str] = body.get("args") or []
        outcome = await runtime.run(body["entry_point"], args, body.get("capture"))
        return outcome, modes
    elif name == "transfer":
        outcome = await runtime.transfer(body["from"], body["to"])
        if outcome.exit_code != 0:
            raise RuntimeFailure(outcome.message or "transfer failed")
    else:  # sign, terminate
        await trio.lowlevel.checkpoint()
    return None, {}


def command_result(
    index: int,
    stamp: dt.datetime,
    failure: str | None,
    outcome: CommandOutcome | None,
    capture: Json,
    stream_event: Callable[[Json], None],
) -> tuple[CommandResult, int]:
    """One command's result and return code from what running it gave: ``failure`` (it did
    not run, or its runtime failed) or ``outcome``. Streamed output (``capture`` modes of
    ``kind`` ``stream``) goes to ``stream_event`` as ``stdout``/``stderr`` event kinds; the
    rest is kept for the result. Shared by the emulator and the real daemon backend's
    exe-unit."""
    if outcome is None:
        return CommandResult(index, stamp, failure is None, message=failure), (
            0 if failure is None else -1
        )
    message = outcome.message
    if outcome.exit_code != 0 and message is None:
        message = f"ExeScript command exited with code {outcome.exit_code}"
    for stream in ("stdout", "stderr"):
        mode = capture.get(stream)
        raw: bytes = getattr(outcome, stream)
        if mode is not None and mode["kind"] == "stream" and raw:
            limit = mode["limit"]
            data = raw if limit is None else raw[:limit]
            stream_event({stream: _render(data, mode["format"])})
    result = CommandResult(
        index,
        stamp,
        outcome.exit_code == 0,
        stdout=_at_end(outcome.stdout, capture.get("stdout")),
        stderr=_at_end(outcome.stderr, capture.get("stderr")),
        message=message,
    )
    return result, outcome.exit_code
