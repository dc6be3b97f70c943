"""An exe-unit for the real yagna daemon, served over its service bus (GSB).

:class:`ExeUnit` plays the provider's exe-unit of one activity: it registers
``/public/exeunit/<activity_id>`` on the daemon's bus and answers the calls the daemon forwards
from the requestor's activity API (``Exec``, ``GetExecBatchResults``,
``StreamExecBatchResults``, ``GetState``, ``GetUsage``, ``GetRunningCommand``). Commands run on
a :class:`~golem_trio.localnet.providers.Runtime` made by the same factories the emulated
activity API uses, through the emulator's exe-unit model (states, batches, results). State
changes go to the daemon with ``/local/activity/SetActivityState``, and usage is refreshed with
``/local/activity/SetActivityUsage`` every couple of seconds, which also keeps the daemon's
watchdog from declaring the activity unresponsive.

A ``transfer`` with a ``gftp://`` side is carried out here, not by the runtime: the file is
fetched from (or delivered to) the requestor's node through this daemon's bus, as
``/net/<node id>/gftp/<name>`` (:func:`golem_trio.gsb.gftp_fetch`,
:func:`golem_trio.gsb.gftp_deliver`), chunked and hash-checked, into the runtime's own files
when it has them (``container_file``, the local runtime) or else into a scratch folder of the
exe-unit's, within the runtime's size cap and time limit. Other URLs go to the runtime.

Replies are serde ``Result`` values: ``{"Ok": value}`` or ``{"Err": error}``, where the error is
the daemon's ``RpcMessageError`` with camelCase variants (``{"notFound": "..."}``,
``{"badRequest": "..."}``, the unit variant ``"timeout"``).

Usage::

    exeunit = ExeUnit(bus, context, scripted_runtime_factory({...}))
    await nursery.start(exeunit.run)   # registered, state Initialized
    ...
    await exeunit.terminate()          # state Terminated, unregistered
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import trio

from ...gsb import GsbBus, GsbClosed, GsbError, gftp_deliver, gftp_fetch
from ..emulator import (
    ALLOWED,
    NEXT_STATE,
    Batch,
    CommandResult,
    ExeUnitState,
    command_result,
    execute_command,
    format_event_time,
)
from ..providers import CommandOutcome, RuntimeContext, RuntimeFactory, RuntimeFailure

__all__ = ["ExeUnit", "exeunit_service_id"]

Json = dict[str, Any]

#: Seconds between usage reports to the daemon (its watchdog allows 5 by default).
USAGE_INTERVAL: Final = 2.0
#: Seconds a report to the daemon may take.
REPORT_BOUND: Final = 10.0
#: Seconds that unregistering and terminating may take when the exe-unit stops.
STOP_BOUND: Final = 5.0

#: Size cap and time limit of one gftp transfer when the runtime states none.
GFTP_TRANSFER_LIMIT: Final = 1 << 30
GFTP_TRANSFER_TIMEOUT: Final = 300.0

STATE_SERVICE: Final = "/local/activity/SetActivityState"
USAGE_SERVICE: Final = "/local/activity/SetActivityUsage"


def exeunit_service_id(activity_id: str) -> str:
    """The bus address the daemon forwards an activity's exe-unit calls to."""
    return f"/public/exeunit/{activity_id}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _err(kind: str, message: str) -> Json:
    return {"Err": {kind: message}}


class ExeUnit:
    """The exe-unit of one activity, serving the daemon over ``bus``.

    Args:
        bus: an open connection to the provider daemon's bus.
        context: the activity this exe-unit serves.
        runtime_factory: makes the runtime that runs the commands.
        usage_interval: seconds between usage reports to the daemon.

    Attributes:
        state: the current exe-unit state; ``pending`` the state a running command leads to.
        runtime: the runtime the commands run on.
        batches: every batch received, by id.
        report_errors: errors the daemon answered to state or usage reports (newest last).
    """

    def __init__(
        self,
        bus: GsbBus,
        context: RuntimeContext,
        runtime_factory: RuntimeFactory,
        *,
        usage_interval: float = USAGE_INTERVAL,
    ) -> None:
        self.bus = bus
        self.context = context
        self.runtime = runtime_factory(context)
        self.usage_interval = usage_interval
        self.state = ExeUnitState.NEW
        self.pending: ExeUnitState | None = None
        self.reason: str | None = None
        self.error_message: str | None = None
        self.batches: dict[str, Batch] = {}
        self.report_errors: list[object] = []
        self._running: Batch | None = None
        self._current: tuple[str, Json] | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._runtime_ended = False
        #: Where activity files live for a runtime without files of its own (gftp only).
        self._scratch: Path | None = None

    def __repr__(self) -> str:
        return f"ExeUnit({self.activity_id!r}, state={self.state.value})"

    @property
    def activity_id(self) -> str:
        return self.context.activity_id

    @property
    def service_id(self) -> str:
        return exeunit_service_id(self.activity_id)

    @property
    def stopped(self) -> bool:
        """True once the exe-unit has terminated (it then stops serving)."""
        return self._stopped.is_set()

    def stream_listeners(self, batch_id: str) -> int:
        """How many event streams of the batch are open now (0 for an unknown batch)."""
        batch = self.batches.get(batch_id)
        return 0 if batch is None else batch.live_listeners()

    # --- life cycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register on the bus, report ``Initialized`` and serve until terminated.

        Use as ``await nursery.start(exeunit.run)``: it reports started once the service is
        registered and the daemon knows the state ``Initialized`` (which is what the
        daemon's ``CreateActivity`` waits for). It returns after :meth:`terminate` or a
        ``terminate`` command, having unregistered the service.

        Raises:
            GsbError: registering failed, or the bus connection is gone.

        Cancellation: a checkpoint; when cancelled the service is unregistered (shielded,
        bounded) and the runtime is left as it is.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.bus.serve(self.service_id, self._handle)
            try:
                await self.bus.register(self.service_id)
                try:
                    await self._set_state(ExeUnitState.INITIALIZED)
                    await self._report_usage()
                    task_status.started()
                    nursery.start_soon(self._heartbeat)
                    await self._stopped.wait()
                finally:
                    with trio.move_on_after(STOP_BOUND, shield=True):
                        await self._unregister()
                        await self._drop_scratch()
            finally:
                self.bus.unserve(self.service_id)
                nursery.cancel_scope.cancel()

    async def terminate(self, reason: str | None = None, error_message: str | None = None) -> None:
        """End the activity: stop the running batch, terminate the runtime, report
        ``Terminated`` (with ``reason``) and stop serving. Idempotent.

        Cancellation: the runtime's termination and the report are shielded and bounded.
        """
        if self.state is ExeUnitState.TERMINATED:
            self._stopped.set()
            await trio.lowlevel.checkpoint()
            return
        if self._scope is not None:
            self._scope.cancel()
        with trio.move_on_after(STOP_BOUND, shield=True):
            await self._end_runtime()
            await self._set_state(
                ExeUnitState.TERMINATED, reason=reason, error_message=error_message
            )
        self._stopped.set()

    async def _unregister(self) -> None:
        try:
            await self.bus.unregister(self.service_id)
        except GsbError as exc:  # already gone with the connection, or never registered
            self.report_errors.append(exc)
            await trio.lowlevel.checkpoint()

    async def _end_runtime(self) -> None:
        if self._runtime_ended:
            await trio.lowlevel.checkpoint()
            return
        self._runtime_ended = True
        await self.runtime.terminate()
        await self._drop_scratch()

    # --- reports to the daemon -------------------------------------------------------------------

    async def _report(self, address: str, payload: Json) -> None:
        await trio.lowlevel.checkpoint()
        try:
            with trio.move_on_after(REPORT_BOUND) as scope:
                reply = await self.bus.call(address, payload)
        except GsbClosed:
            self._stopped.set()
            return
        except GsbError as exc:
            self.report_errors.append(exc)
            return
        if scope.cancelled_caught:
            self.report_errors.append(f"{address}: no reply within {REPORT_BOUND} s")
        elif isinstance(reply, Mapping) and "Err" in reply:
            self.report_errors.append(reply["Err"])

    def _state_json(self) -> Json:
        return {
            "state": [self.state.value, None if self.pending is None else self.pending.value],
            "reason": self.reason,
            "errorMessage": self.error_message,
        }

    async def _set_state(
        self,
        state: ExeUnitState,
        pending: ExeUnitState | None = None,
        *,
        reason: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self.state = state
        self.pending = pending
        if reason is not None or error_message is not None:
            self.reason = reason
            self.error_message = error_message
        payload = {
            "activityId": self.activity_id,
            "state": self._state_json(),
            "timeout": None,
            "credentials": None,
        }
        await self._report(STATE_SERVICE, payload)

    async def _usage_json(self) -> Json:
        cpu, duration = await self.runtime.usage()
        return {"currentUsage": [float(cpu), float(duration)], "timestamp": int(time.time())}

    async def _report_usage(self) -> None:
        usage = await self._usage_json()
        await self._report(
            USAGE_SERVICE, {"activityId": self.activity_id, "usage": usage, "timeout": None}
        )

    async def _heartbeat(self) -> None:
        await trio.lowlevel.checkpoint()
        while not self._stopped.is_set():
            await trio.sleep(self.usage_interval)
            await self._report_usage()

    # --- calls from the daemon -------------------------------------------------------------------

    async def _handle(self, component: str, caller: str, payload: Any) -> Any:
        await trio.lowlevel.checkpoint()
        if not isinstance(payload, Mapping):
            return _err("badRequest", f"{component}: expected a message object")
        activity_id = payload.get("activityId", payload.get("activity_id"))
        if activity_id != self.activity_id:
            return _err("badRequest", f"Forbidden! Invalid activity id: {activity_id}")
        if component == "Exec":
            return self._exec(payload)
        if component == "GetExecBatchResults":
            return await self._batch_results(payload)
        if component == "StreamExecBatchResults":
            return self._stream(payload)
        if component == "GetState":
            return {"Ok": self._state_json()}
        if component == "GetUsage":
            return {"Ok": await self._usage_json()}
        if component == "GetRunningCommand":
            return self._running_command()
        return _err("badRequest", f"unsupported call: {component}")

    def _exec(self, payload: Mapping[str, Any]) -> Json:
        batch_id = payload.get("batchId")
        script = payload.get("exeScript")
        if not isinstance(batch_id, str) or not isinstance(script, list):
            return _err("badRequest", "Exec: batchId and exeScript are required")
        if batch_id in self.batches:
            return _err("badRequest", f"Batch {batch_id} already exists")
        commands: list[Json] = []
        for command in script:
            if not isinstance(command, Mapping) or len(command) != 1:
                return _err("badRequest", f"Exec: not a command: {command!r}")
            ((name, body),) = command.items()
            commands.append({name: body if isinstance(body, Mapping) else {}})
        batch = Batch(batch_id, commands)
        self.batches[batch_id] = batch
        if self._running is not None or self._nursery is None or self._stopped.is_set():
            message = f"Busy: {self.state.value}"
            if self._stopped.is_set():
                message = "Activity terminated"
            batch.add_result(CommandResult(0, _now(), False, message=message))
            batch.finish()
        elif not commands:
            batch.finish()
        else:
            self._running = batch
            self._nursery.start_soon(self._run_batch, batch)
        return {"Ok": batch_id}

    def _event(self, batch: Batch, index: int, kind: Json) -> None:
        event = {
            "batch_id": batch.batch_id,
            "index": index,
            "timestamp": format_event_time(_now()),
            "kind": kind,
        }
        batch.emit({"Ok": event})

    async def _run_batch(self, batch: Batch) -> None:
        await trio.lowlevel.checkpoint()
        try:
            for index, command in enumerate(batch.commands):
                if not await self._run_command(batch, index, command):
                    break
        finally:
            self._running = None
            self._current = None
            batch.finish()
        if self.state is ExeUnitState.TERMINATED:
            self._stopped.set()

    async def _run_command(self, batch: Batch, index: int, command: Json) -> bool:
        """Run one command, record its result and events; whether the batch goes on."""
        await trio.lowlevel.checkpoint()
        ((name, body),) = command.items()
        last = index == len(batch.commands) - 1
        self._event(batch, index, {"started": {"command": command}})
        outcome: CommandOutcome | None = None
        failure: str | None = None
        modes: Json = {}
        before = self.state
        if name not in ALLOWED.get(before, frozenset()):
            await trio.lowlevel.checkpoint()
            failure = f"{name} command not allowed in state {before.value}"
        else:
            target = NEXT_STATE.get(name, before)
            self._current = (batch.batch_id, command)
            if target is not before:
                await self._set_state(before, target)
            self._scope = trio.CancelScope()
            with self._scope:
                try:
                    outcome, modes = await self._execute(name, body)
                except RuntimeFailure as exc:
                    failure = str(exc) or f"{name} failed"
            cancelled = self._scope.cancelled_caught
            self._scope = None
            self._current = None
            if cancelled or self.state is ExeUnitState.TERMINATED:
                failure = failure or "Activity terminated"
                outcome = None
            elif failure is None and (outcome is None or outcome.exit_code == 0):
                if name == "terminate":
                    with trio.move_on_after(STOP_BOUND, shield=True):
                        await self._end_runtime()
                if target is not before:
                    await self._set_state(target)
            elif target is not before:
                await self._set_state(before)
        result, return_code = command_result(
            index, _now(), failure, outcome, modes, lambda kind: self._event(batch, index, kind)
        )
        self._event(
            batch, index, {"finished": {"return_code": return_code, "message": result.message}}
        )
        result.is_batch_finished = last or not result.ok
        batch.add_result(result)
        return result.ok

    async def _execute(
        self, name: str, body: Mapping[str, Any]
    ) -> tuple[CommandOutcome | None, Json]:
        if name == "transfer" and any(
            str(body.get(side, "")).startswith("gftp://") for side in ("from", "to")
        ):
            return await self._gftp_transfer(str(body.get("from", "")), str(body.get("to", ""))), {}
        return await execute_command(self.runtime, name, body)

    # --- gftp transfers --------------------------------------------------------------------------

    async def _gftp_transfer(self, source: str, destination: str) -> CommandOutcome:
        """Fetch a ``gftp://`` source into the activity, or deliver an activity file to a
        ``gftp://`` destination, through the provider daemon's bus as a real exe-unit does;
        failures raise :class:`RuntimeFailure`. No partial file remains after a failure or a
        cancellation."""
        download = source.startswith("gftp://")
        if download == destination.startswith("gftp://"):
            await trio.lowlevel.checkpoint()
            raise RuntimeFailure(
                f"transfer {source!r} -> {destination!r}: exactly one side must be gftp://"
            )
        local = destination if download else source
        path, limit, timeout = await self._local_file(local)
        what = f"transfer {source!r} -> {destination!r}"
        try:
            with trio.fail_after(timeout):
                if download:
                    await self._gftp_download(source, path, limit)
                else:
                    await self._gftp_upload(path, destination, limit)
        except trio.TooSlowError:
            raise RuntimeFailure(f"{what}: time limit exceeded") from None
        except (GsbError, OSError) as exc:
            raise RuntimeFailure(f"{what}: {exc}") from exc
        if not callable(getattr(self.runtime, "container_file", None)):
            await self.runtime.transfer(source, destination)  # the runtime records it
        return CommandOutcome()

    async def _local_file(self, url: str) -> tuple[Path, int, float]:
        """The host path of activity file ``url``, the size cap and the time limit: the
        runtime's own files when it has them (``container_file``), else a scratch folder of
        this exe-unit's."""
        await trio.lowlevel.checkpoint()
        finder = getattr(self.runtime, "container_file", None)
        if callable(finder):
            path = finder(url)
            config = getattr(self.runtime, "config", None)
            limit = getattr(config, "max_transfer_bytes", GFTP_TRANSFER_LIMIT)
            timeout = getattr(config, "transfer_timeout", GFTP_TRANSFER_TIMEOUT)
            return Path(path), int(limit), float(timeout)
        inside = url[len("container:") :] if url.startswith("container:") else url
        parts = [p for p in inside.split("/") if p not in ("", ".")]
        if not inside.startswith("/") or "://" in url or ".." in parts or not parts:
            raise RuntimeFailure(f"{url!r}: not a file of the activity")
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="golem-trio-exeunit-"))
        return self._scratch.joinpath(*parts), GFTP_TRANSFER_LIMIT, GFTP_TRANSFER_TIMEOUT

    async def _gftp_download(self, url: str, path: Path, limit: int) -> None:
        part = path.with_name(f".{path.name}.gftp-part")
        await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = await trio.to_thread.run_sync(os.open, part, flags, 0o644)
        file = trio.wrap_file(os.fdopen(fd, "wb"))
        done = False
        try:
            await gftp_fetch(self.bus, url, file.write, max_bytes=limit)
            done = True
        finally:
            with trio.move_on_after(STOP_BOUND, shield=True):
                await file.aclose()
                if done:
                    await trio.Path(part).replace(path)
                else:
                    await trio.Path(part).unlink(missing_ok=True)

    async def _gftp_upload(self, path: Path, url: str, limit: int) -> None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = await trio.to_thread.run_sync(os.open, path, flags)
        file = trio.wrap_file(os.fdopen(fd, "rb"))
        try:
            if os.fstat(fd).st_size > limit:
                raise RuntimeFailure(f"{path.name}: larger than the transfer cap")
            await gftp_deliver(self.bus, url, file.read)
        finally:
            with trio.move_on_after(STOP_BOUND, shield=True):
                await file.aclose()

    async def _drop_scratch(self) -> None:
        scratch, self._scratch = self._scratch, None
        if scratch is None:
            await trio.lowlevel.checkpoint()
            return
        await trio.to_thread.run_sync(lambda: shutil.rmtree(scratch, ignore_errors=True))

    async def _batch_results(self, payload: Mapping[str, Any]) -> Json:
        batch = self.batches.get(str(payload.get("batchId")))
        if batch is None:
            await trio.lowlevel.checkpoint()
            return _err("notFound", f"batch_id = {payload.get('batchId')}")
        if not batch.commands:
            await trio.lowlevel.checkpoint()
            return {"Ok": []}
        index = payload.get("commandIndex")
        command_index = index if isinstance(index, int) and not isinstance(index, bool) else None
        awaited = len(batch.commands) - 1 if command_index is None else command_index
        wait = payload.get("timeout")
        wait = float(wait) if isinstance(wait, int | float) and not isinstance(wait, bool) else 0.0

        def done() -> bool:
            return batch.finished or len(batch.results) > awaited

        with trio.move_on_after(max(wait, 0.0)):
            await trio.lowlevel.checkpoint()
            while not done():
                await batch.changed.wait()
        if not done() and command_index is not None:
            return {"Err": "timeout"}
        results = batch.results[: awaited + 1]
        if command_index is None:
            return {"Ok": [r.json() for r in results]}
        return {
            "Ok": [
                r.json(
                    with_output=r.index == command_index,
                    finished=r.is_batch_finished or r.index == command_index,
                )
                for r in results
            ]
        }

    def _stream(self, payload: Mapping[str, Any]) -> Any:
        """The batch's runtime events from now on (no replay), each ``{"Ok": event}``; the
        stream ends with the batch (at once if it has already ended)."""
        batch = self.batches.get(str(payload.get("batchId", payload.get("batch_id"))))
        if batch is None:
            return _err("notFound", f"Unknown batch: {payload.get('batch_id')}")
        send, receive = trio.open_memory_channel[Json](math.inf)
        if batch.finished:
            send.close()
        else:
            batch.live_listeners()
            batch.listeners.append(send)
        return receive

    def _running_command(self) -> Json:
        if self._current is None:
            return _err("notFound", f"No running command within activity: {self.activity_id}")
        batch_id, command = self._current
        ((name, body),) = command.items()
        entry: Json = {"batchId": batch_id, "command": name}
        if name == "run":
            entry["params"] = [body["entry_point"], *(body.get("args") or [])]
        elif name == "transfer":
            entry["params"] = [body["from"], body["to"]]
        return {"Ok": [entry]}
