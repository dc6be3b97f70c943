"""Scripts: ordered batches of commands for one activity, and how a batch is executed.

:meth:`Script.execute` is the one primitive every style is built on: it sends the batch
(``exec``), follows it until the last command finished or one failed, and resolves each
command's :class:`CommandHandle` as its result comes in. Results are collected by long-polling
the daemon for the next command's result; with a context made with ``stream_output=True`` the
batch's event stream (SSE) is followed as well, and its exit codes and output chunks complete
the polled results (the event stream is not replayed, so polling stays the authority on which
commands finished). A poll that fails because the daemon does (no answer, a 5xx or 408, a reply
that is not its JSON: :data:`~golem_trio.yagna.TRANSIENT_ERRORS`) is reported to the client's
monitor and asked again after a bounded, jittered pause, while the activity is not known gone.

A script runs on a :class:`ScriptTarget`: what it needs of the activity (a
:class:`~golem_trio.work.WorkContext` is one), so this module does not import the context's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
from collections import deque
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import trio

from ..yagna import (
    TRANSIENT_ERRORS,
    Capture,
    CaptureFormat,
    CaptureMode,
    CommandResult,
    Conflict,
    DaemonTimeout,
    DaemonUnreachable,
    Deploy,
    ExeScriptCommand,
    ExeScriptCommandResult,
    Finished,
    Gone,
    NotFound,
    ReplyTooLarge,
    RideOut,
    Run,
    ServerError,
    Start,
    StdErr,
    StdOut,
    Terminate,
    Transfer,
    YagnaClient,
    YagnaError,
)
from ._errors import (
    ActivityGone,
    BatchTimeoutError,
    CommandExecutionError,
    CommandNotRun,
    DownloadTooLarge,
    TransferUnavailable,
)
from ._events import (
    CommandExecuted,
    DownloadFinished,
    ScriptFinished,
    ScriptSent,
    TransferProgress,
)
from ._gftp import GftpStorage, Progress, TransferStorage
from ._result import CommandHandle, Result
from ._storage import Receipt, ReceiveFailed

__all__ = [
    "DEFAULT_DOWNLOAD_LIMIT",
    "DEFAULT_FILE_DOWNLOAD_LIMIT",
    "STREAM_OUTPUT_LIMIT",
    "Script",
    "ScriptTarget",
]

logger = logging.getLogger("golem_trio.work")

#: Default size cap of ``download_bytes`` and ``download_json`` (1 MiB).
DEFAULT_DOWNLOAD_LIMIT = 1024 * 1024
#: Default size cap of ``download_file`` (1 GiB).
DEFAULT_FILE_DOWNLOAD_LIMIT = 1024 * 1024 * 1024
#: With ``stream_output``, the most characters of one command's stdout (and as many of its
#: stderr) kept from the event stream; past it the oldest are dropped, the newest kept.
STREAM_OUTPUT_LIMIT = 1024 * 1024
#: Seconds the daemon is asked to hold one poll for the next result.
POLL_WAIT = 5.0
#: Bound (s) of the activity-state check made when a batch fails or goes quiet.
STATE_CHECK_BOUND = 10.0
#: Seconds a result waits for its ``finished`` event on the event stream.
STREAM_GRACE = 1.0
#: Seconds a finished download may take to be complete on this side.
DOWNLOAD_GRACE = 10.0
#: Seconds that unpublishing a batch's files and forgetting its receipts may take, shielded.
CLEANUP_BOUND = 10.0

_EXIT_CODE = re.compile(r"exited with code (-?\d+)")

_DEPLOY_FIELDS = frozenset(field.name for field in attrs.fields(Deploy))


def _text(output: str | bytes | None) -> str | None:
    if output is None:
        return None
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return output


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be an integer >= 0 or None, got {limit!r}")


def _env_wrapper(env: Mapping[str, str]) -> str:
    """A ``/bin/sh -c`` script that exports ``env`` and then runs ``"$0" "$@"``."""
    exports = []
    for name, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"env: {name!r} is not a valid variable name")
        exports.append(f"export {name}={shlex.quote(str(value))}")
    return "; ".join([*exports, 'exec "$0" "$@"'])


def _awaited(steps: list[_Step], index: int) -> int:
    """The command a result poll waits for when the first without a result is ``index``: the
    first from there that is neither ``deploy`` nor ``start`` (or the last)."""
    last = len(steps) - 1
    while index < last and isinstance(steps[index].command, Deploy | Start):
        index += 1
    return index


@attrs.define(eq=False)
class _Step:
    """One command of a script and what must happen around it."""

    command: ExeScriptCommand | None
    text: str
    handle: CommandHandle
    is_run: bool = False
    # An upload: the file or bytes to publish, and the container path.
    upload_path: Path | None = None
    upload_data: bytes | None = None
    # A download: the container path, where to write it (or keep it in memory) and the cap.
    download_src: str | None = None
    download_path: Path | None = None
    limit: int | None = None
    dst: str | None = None
    # Set while the batch runs.
    url: str | None = None
    receipt: Receipt | None = None

    @property
    def is_upload(self) -> bool:
        return self.upload_path is not None or self.upload_data is not None

    async def build(self, target: ScriptTarget) -> ExeScriptCommand:
        """The command to send; publishes the upload or opens the download first."""
        if self.command is not None:
            await trio.lowlevel.checkpoint()
            return self.command
        storage = target.storage
        assert storage is not None
        if isinstance(storage, GftpStorage):
            return await self._build_gftp(target, storage)
        await trio.lowlevel.checkpoint()
        if self.is_upload:
            if self.upload_path is not None:
                self.url = storage.publish_file(self.upload_path)
            else:
                assert self.upload_data is not None
                self.url = storage.publish_bytes(self.upload_data)
            assert self.dst is not None
            return Transfer(from_=self.url, to=f"container:{self.dst}")
        assert self.download_src is not None
        self.receipt = storage.receive(self.limit, path=self.download_path)
        return Transfer(from_=f"container:{self.download_src}", to=self.receipt.url)

    async def _build_gftp(self, target: ScriptTarget, storage: GftpStorage) -> ExeScriptCommand:
        def reporter(direction: Literal["upload", "download"]) -> Progress:
            def report(done: int, total: int | None) -> None:
                url = self.url if direction == "upload" else self.receipt and self.receipt.url
                target._emit(
                    TransferProgress(
                        target.activity_id, target.agreement_id, direction, url or "", done, total
                    )
                )

            return report

        if self.is_upload:
            if self.upload_path is not None:
                url = await storage.publish_file(self.upload_path, progress=reporter("upload"))
            else:
                assert self.upload_data is not None
                url = await storage.publish_bytes(self.upload_data, progress=reporter("upload"))
            self.url = url
            assert self.dst is not None
            return Transfer(from_=url, to=f"container:{self.dst}")
        assert self.download_src is not None
        self.receipt = await storage.receive(
            self.limit, path=self.download_path, progress=reporter("download")
        )
        return Transfer(from_=f"container:{self.download_src}", to=self.receipt.url)

    async def clean_up(self, storage: TransferStorage | None) -> None:
        """Unpublish the upload, forget the download (shielded and bounded for gftp)."""
        url, self.url = self.url, None
        receipt, self.receipt = self.receipt, None
        if storage is None:
            await trio.lowlevel.checkpoint()
            return
        if isinstance(storage, GftpStorage):
            if url is not None:
                await storage.unpublish(url)
            if receipt is not None:
                await storage.forget(receipt)
            self.receipt = receipt
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.checkpoint()
        if url is not None:
            storage.unpublish(url)
        if receipt is not None:
            storage.forget(receipt)
        self.receipt = receipt


class ScriptTarget(Protocol):
    """What a :class:`Script` needs of the activity it runs on. A
    :class:`~golem_trio.work.WorkContext` is one."""

    @property
    def yagna(self) -> YagnaClient: ...

    @property
    def activity_id(self) -> str: ...

    @property
    def agreement_id(self) -> str: ...

    @property
    def storage(self) -> TransferStorage | None: ...

    @property
    def stream_output(self) -> bool: ...

    @property
    def deploy_args(self) -> Mapping[str, Any]: ...

    async def _before(self, script: Script) -> None:
        """Called before the script's batch is sent (the implicit ``deploy`` and ``start``)."""

    def _emit(self, event: object) -> None:
        """Report one of the work layer's events."""

    def _where(self) -> dict[str, str | None]:
        """The activity, agreement and provider, as keyword arguments of the errors."""


class _StreamFollower:
    """What the batch's event stream said so far: exit codes and output chunks per command."""

    def __init__(self, limit: int | None = None) -> None:
        self.codes: dict[int, int] = {}
        self.stdout: dict[int, deque[str]] = {}
        self.stderr: dict[int, deque[str]] = {}
        #: Characters kept per command and stream (the newest); the oldest are dropped.
        self.limit = STREAM_OUTPUT_LIMIT if limit is None else limit
        #: How many characters were dropped, per (stream, command).
        self.dropped: dict[tuple[str, int], int] = {}
        self._kept: dict[tuple[str, int], int] = {}
        self.ended = False
        self._changed = trio.Event()

    def _keep(self, name: str, index: int, text: str) -> None:
        """Add ``text`` to a command's output, dropping the oldest past :attr:`limit`."""
        chunks = (self.stdout if name == "stdout" else self.stderr).setdefault(index, deque())
        key = (name, index)
        chunks.append(text)
        kept = self._kept.get(key, 0) + len(text)
        excess = kept - self.limit
        if excess > 0 and key not in self.dropped:
            logger.debug(
                "%s of command %d passed %d characters: the oldest are dropped",
                name,
                index,
                self.limit,
            )
        while excess > 0 and chunks:
            first = chunks[0]
            if len(first) <= excess:
                chunks.popleft()
                cut = len(first)
            else:
                chunks[0] = first[excess:]
                cut = excess
            excess -= cut
            kept -= cut
            self.dropped[key] = self.dropped.get(key, 0) + cut
        self._kept[key] = kept

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, script: Script, batch_id: str) -> None:
        ctx = script.ctx
        await trio.lowlevel.checkpoint()
        try:
            async with ctx.yagna.activity.open_exec_stream(ctx.activity_id, batch_id) as stream:
                async for event in stream:
                    kind = event.kind
                    if isinstance(kind, StdOut | StdErr):
                        text = _text(kind.output)
                        if text:
                            name = "stdout" if isinstance(kind, StdOut) else "stderr"
                            self._keep(name, event.index, text)
                    elif isinstance(kind, Finished):
                        self.codes[event.index] = kind.return_code
                        self._notify()
        except YagnaError as exc:
            # Polling stays the authority; the stream only adds exit codes and output.
            logger.debug(
                "event stream of batch %s ended: %s",
                batch_id,
                exc,
                extra={"activity_id": ctx.activity_id, "agreement_id": ctx.agreement_id},
            )
        finally:
            self.ended = True
            self._notify()

    async def wait_finished(self, index: int) -> None:
        with trio.move_on_after(STREAM_GRACE):
            await trio.lowlevel.checkpoint()
            while index not in self.codes and not self.ended:
                await self._changed.wait()

    def output(self, index: int, stderr: bool = False) -> str | None:
        chunks = (self.stderr if stderr else self.stdout).get(index)
        return "".join(chunks) if chunks else None


class Script:
    """An ordered batch of commands for one activity.

    Each command method appends a command and returns its :class:`CommandHandle`;
    ``await script`` (or :meth:`execute`) runs the batch and returns the results in command
    order. ``timeout`` (seconds, ``None``: none) bounds the whole batch. ``wait_for_results``
    is kept for the generator style: when false, a handler that yields the script gets it back
    without waiting for it to finish.

    Get one from :meth:`WorkContext.new_script`. A script runs once.
    """

    def __init__(
        self, ctx: ScriptTarget, timeout: float | None = None, wait_for_results: bool = True
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be positive (or None)")
        self.ctx = ctx
        self.timeout = timeout
        self.wait_for_results = wait_for_results
        self._steps: list[_Step] = []
        self._executed = False
        self._ride: RideOut | None = None
        self._results: list[Result] | None = None

    def __repr__(self) -> str:
        state = "executed" if self._executed else "pending"
        return f"<Script activity={self.ctx.activity_id} commands={len(self._steps)} {state}>"

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def commands(self) -> tuple[str, ...]:
        """The commands so far, as text."""
        return tuple(step.text for step in self._steps)

    @property
    def deploys(self) -> bool:
        """Whether the script has a ``deploy`` command."""
        return any(isinstance(step.command, Deploy) for step in self._steps)

    @property
    def handles(self) -> tuple[CommandHandle, ...]:
        """The commands' handles, in order."""
        return tuple(step.handle for step in self._steps)

    @property
    def results(self) -> list[Result]:
        """The results of a successful run; ``RuntimeError`` before that."""
        if self._results is None:
            raise RuntimeError("the script has not run successfully (yet)")
        return list(self._results)

    # --- building -----------------------------------------------------------------------------

    def _add(self, command: ExeScriptCommand | None, text: str, **extra: Any) -> CommandHandle:
        if self._executed:
            raise RuntimeError("this script was already executed; make a new one")
        handle = CommandHandle(len(self._steps), text)
        self._steps.append(_Step(command, text, handle, **extra))
        return handle

    def _storage(self, what: str) -> TransferStorage:
        storage = self.ctx.storage
        if storage is None:
            raise TransferUnavailable(
                f"{what}: this WorkContext has no storage for file transfers "
                "(give it one, e.g. from open_http_storage())"
            )
        return storage

    def add(self, command: ExeScriptCommand, text: str | None = None) -> CommandHandle:
        """Append any exe-script command (a custom one, or one built by hand)."""
        return self._add(command, text or command.NAME)

    def deploy(self, **kwargs: Any) -> CommandHandle:
        """Append ``deploy``. ``kwargs`` are :class:`~golem_trio.yagna.Deploy` fields (``net``,
        ``hosts``, ``hostname``, ``volumes``, ``env``, ``progress``) over the context's
        ``deploy_args``; yapapi's ``progress_args`` is taken as ``progress`` (a mapping, or an
        attrs instance turned into one)."""
        args = dict(self.ctx.deploy_args)
        args.update(kwargs)
        progress_args = args.pop("progress_args", None)
        if progress_args is not None:
            if attrs.has(type(progress_args)):
                progress_args = {
                    key: value
                    for key, value in attrs.asdict(progress_args).items()
                    if value is not None
                }
            args["progress"] = dict(progress_args)
        unknown = sorted(set(args) - _DEPLOY_FIELDS)
        if unknown:
            raise TypeError(f"deploy() got unknown arguments: {', '.join(unknown)}")
        return self._add(Deploy(**args), "deploy")

    def start(self, *args: str) -> CommandHandle:
        """Append ``start`` with ``args``."""
        return self._add(Start(list(args)), " ".join(["start", *args]))

    def run(
        self,
        cmd: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        capture: Capture | None = None,
    ) -> CommandHandle:
        """Append ``run cmd args...``; stdout and stderr are captured as text (at the end, or
        streamed when the context streams output) unless ``capture`` says otherwise.

        The daemon's ``run`` has no environment: with ``env``, the command runs as
        ``/bin/sh -c 'export NAME=value; ...; exec "$0" "$@"' cmd args...`` (so the image needs
        ``/bin/sh``). Variable names must be valid shell names (``ValueError`` otherwise).
        """
        text = " ".join(["run", cmd, *args])
        if capture is None:
            mode = CaptureMode(stream=self.ctx.stream_output, format=CaptureFormat.STR)
            capture = Capture(stdout=mode, stderr=mode)
        if env:
            command = Run("/bin/sh", ["-c", _env_wrapper(env), cmd, *args], capture)
        else:
            command = Run(cmd, list(args), capture)
        return self._add(command, text, is_run=True)

    def upload_file(self, src_path: str | os.PathLike[str], dst: str) -> CommandHandle:
        """Append a transfer of the local file ``src_path`` to ``dst`` in the activity (read
        when the exe-unit fetches it). Needs the context's storage."""
        self._storage("upload_file")
        return self._add(
            None, f"upload {os.fspath(src_path)} -> {dst}", upload_path=Path(src_path), dst=dst
        )

    def upload_bytes(self, data: bytes, dst: str) -> CommandHandle:
        """Append a transfer of ``data`` to ``dst`` in the activity."""
        self._storage("upload_bytes")
        return self._add(
            None, f"upload <{len(data)} bytes> -> {dst}", upload_data=bytes(data), dst=dst
        )

    def upload_json(self, obj: Any, dst: str) -> CommandHandle:
        """Append a transfer of ``obj`` as JSON (UTF-8) to ``dst`` in the activity."""
        self._storage("upload_json")
        data = json.dumps(obj).encode()
        return self._add(None, f"upload <json> -> {dst}", upload_data=data, dst=dst)

    # yapapi's names from before 0.7.
    send_file = upload_file
    send_bytes = upload_bytes
    send_json = upload_json

    def download_file(
        self,
        src: str,
        dst_path: str | os.PathLike[str],
        limit: int | None = DEFAULT_FILE_DOWNLOAD_LIMIT,
    ) -> CommandHandle:
        """Append a transfer of ``src`` in the activity to the local file ``dst_path``. The
        handle resolves once the file is written.

        ``limit`` caps the file's size in bytes (default :data:`DEFAULT_FILE_DOWNLOAD_LIMIT`,
        1 GiB; ``None``: no cap). A larger file fails the command with
        :class:`DownloadTooLarge`, and nothing of it is written: the file arrives in a
        temporary file beside ``dst_path``, removed when the transfer is refused."""
        self._storage("download_file")
        _check_limit(limit)
        return self._add(
            None,
            f"download {src} -> {os.fspath(dst_path)}",
            download_src=src,
            download_path=Path(dst_path),
            limit=limit,
        )

    def download_bytes(self, src: str, limit: int = DEFAULT_DOWNLOAD_LIMIT) -> CommandHandle:
        """Append a transfer of ``src`` in the activity into memory; the result's ``data`` holds
        the bytes. More than ``limit`` bytes fail the command (:class:`DownloadTooLarge`)."""
        self._storage("download_bytes")
        _check_limit(limit)
        return self._add(None, f"download {src}", download_src=src, limit=limit)

    def download_json(self, src: str, limit: int = DEFAULT_DOWNLOAD_LIMIT) -> CommandHandle:
        """As :meth:`download_bytes`; the result's ``json`` property decodes it."""
        self._storage("download_json")
        _check_limit(limit)
        return self._add(None, f"download {src} (json)", download_src=src, limit=limit)

    def terminate(self) -> CommandHandle:
        """Append ``terminate`` (the exe-unit stops the activity's runtime)."""
        return self._add(Terminate(), "terminate")

    # --- running ------------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, list[Result]]:
        return self.execute().__await__()

    async def execute(self) -> list[Result]:
        """Run the batch; its results, in command order.

        Raises :class:`CommandExecutionError` for the first command that failed (its handle
        raises the same; the handles of the later commands raise :class:`CommandNotRun`),
        :class:`BatchTimeoutError` when ``timeout`` passed, :class:`ActivityGone` when the
        activity was destroyed or terminated, and the daemon's errors
        (:class:`~golem_trio.yagna.YagnaError`) as they are. Whatever happens, every handle has
        resolved when this returns or raises. An empty script is a no-op returning ``[]``.

        Cancellation: a checkpoint. If cancelled after the batch was sent, the batch may still
        run on the provider (nothing stops it but terminating the activity); the handles that
        had not resolved raise :class:`CommandNotRun`.
        """
        if self._executed:
            raise RuntimeError("this script was already executed; make a new one")
        self._executed = True
        ctx = self.ctx
        steps = list(self._steps)
        if not steps:
            await trio.lowlevel.checkpoint()
            self._results = []
            return []
        results: list[Result] = []
        batch_id: str | None = None
        error: BaseException | None = None
        try:
            await ctx._before(self)
            commands = [await step.build(ctx) for step in steps]
            with trio.move_on_after(math.inf if self.timeout is None else self.timeout) as scope:
                batch_id = await self._send(commands)
                ctx._emit(ScriptSent(ctx.activity_id, ctx.agreement_id, batch_id, self.commands))
                await self._collect(batch_id, steps, results)
            if scope.cancelled_caught:
                assert self.timeout is not None
                raise BatchTimeoutError(self.timeout, **ctx._where())
        except BaseException as exc:
            error = exc
            raise
        finally:
            # Shielded and bounded: a cancelled batch still unbinds what it published.
            with trio.move_on_after(CLEANUP_BOUND, shield=True):
                await trio.lowlevel.checkpoint()
                for step in steps:
                    await step.clean_up(ctx.storage)
            for step in steps:
                step.handle._fail(
                    CommandNotRun(
                        command=step.text, index=step.handle.index, cause=error, **ctx._where()
                    )
                )
            ctx._emit(ScriptFinished(ctx.activity_id, ctx.agreement_id, batch_id, error is None))
        self._results = results
        return list(results)

    async def _send(self, commands: list[ExeScriptCommand]) -> str:
        ctx = self.ctx
        failure: YagnaError | None = None
        try:
            return await ctx.yagna.activity.exec(ctx.activity_id, commands)
        except (NotFound, Gone) as exc:
            raise ActivityGone(exc.message, **ctx._where()) from exc
        except (ServerError, Conflict, DaemonUnreachable, DaemonTimeout) as exc:
            failure = exc
        await self._raise_if_gone(failure)
        raise failure

    async def _raise_if_gone(self, cause: BaseException | None) -> None:
        """Raise :class:`ActivityGone` if the activity is destroyed or terminated; return if it
        lives or the daemon cannot say (bounded by :data:`STATE_CHECK_BOUND`)."""
        ctx = self.ctx
        gone: ActivityGone | None = None
        with trio.move_on_after(STATE_CHECK_BOUND):
            await trio.lowlevel.checkpoint()
            try:
                state = await ctx.yagna.activity.get_state(ctx.activity_id)
            except (NotFound, Gone) as exc:
                gone = ActivityGone(exc.message, **ctx._where())
            except YagnaError as exc:
                logger.debug(
                    "activity state unknown: %s",
                    exc,
                    extra={"activity_id": ctx.activity_id, "agreement_id": ctx.agreement_id},
                )
            else:
                if not state.alive:
                    reason = state.reason or state.error_message or "terminated"
                    gone = ActivityGone(reason, **ctx._where())
        if gone is not None:
            raise gone from cause

    async def _collect(self, batch_id: str, steps: list[_Step], results: list[Result]) -> None:
        if not self.ctx.stream_output:
            await self._poll(batch_id, steps, results, None)
            return
        follower = _StreamFollower()
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower.run, self, batch_id)
            try:
                await self._poll(batch_id, steps, results, follower)
            except Exception as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _poll(
        self,
        batch_id: str,
        steps: list[_Step],
        results: list[Result],
        follower: _StreamFollower | None,
    ) -> None:
        """Ask for each command's result in turn until all are in or one failed.

        ``deploy`` and ``start`` have no output to show and nothing waits on them alone: a
        poll skips over them to the next command, whose answer carries theirs (results are
        cumulative). Should that poll bring nothing within its wait (an exe-unit that never
        reaches the awaited command, a failed ``deploy`` say, may answer only at the
        deadline), the next polls go one command at a time."""
        await trio.lowlevel.checkpoint()
        skip = True
        while len(results) < len(steps):
            index = len(results)
            awaited = _awaited(steps, index) if skip else index
            try:
                got = await self._next(
                    batch_id, awaited, isinstance(steps[awaited].command, Terminate)
                )
            except ActivityGone as gone:
                step = steps[index]
                if isinstance(step.command, Terminate) and index == len(steps) - 1:
                    # The activity ended because this command asked it to: an exe-unit may
                    # stop answering for its batch once it has terminated.
                    ctx = self.ctx
                    result = Result(index, step.text, True, None, None, None, "terminated")
                    ctx._emit(
                        CommandExecuted(
                            ctx.activity_id,
                            ctx.agreement_id,
                            index,
                            step.text,
                            True,
                            None,
                            None,
                            None,
                        )
                    )
                    results.append(result)
                    step.handle._resolve(result)
                    return
                # The command that was running is the one the activity died in.
                step.handle._fail(gone)
                raise
            by_index = {r.index: r for r in got}
            if index not in by_index:
                skip = skip and awaited == index
                continue
            # (With a command index, the daemon marks the awaited result as the batch's end
            # whether or not it is: only a failure or the last command ends the batch.)
            while len(results) <= awaited and len(results) in by_index:
                await self._take(steps[len(results)], by_index[len(results)], results, follower)

    async def _next(
        self, batch_id: str, index: int, terminating: bool = False
    ) -> list[ExeScriptCommandResult]:
        """One long poll for the result of command ``index``; ``[]`` if it is not in yet.

        For a ``terminate`` command (``terminating``) a 500 is not retried by the client: the
        daemon answers so once the exe-unit ended, and the activity's state says at once
        whether that is what happened, without the client's pauses between retries."""
        await trio.lowlevel.checkpoint()
        ctx = self.ctx
        failure: YagnaError | None = None
        try:
            got = await ctx.yagna.activity.get_exec_batch_results(
                ctx.activity_id,
                batch_id,
                wait=POLL_WAIT,
                command_index=index,
                retry_server_errors=not terminating,
            )
        except (NotFound, Gone) as exc:
            raise ActivityGone(exc.message, **ctx._where()) from exc
        except TRANSIENT_ERRORS as exc:
            failure = exc
        ride = self._ride_out()
        if failure is not None:
            await self._raise_if_gone(failure)
            if isinstance(failure, ReplyTooLarge):
                raise failure  # the same results would be as large again
            # The daemon failed, not the batch: ask again after a pause (raises once the
            # daemon has been failing for longer than its monitor's outage limit).
            await ride.failed(failure)
            return []
        ride.succeeded()
        if not got:
            # Nothing new within the wait: make sure the activity still lives.
            await self._raise_if_gone(None)
        return got

    def _ride_out(self) -> RideOut:
        """How this script's result polls ride out the daemon's faults: reported to the
        client's monitor, retried after bounded pauses, given up (the error raised) a few
        seconds after the monitor's outage limit, so that an engine stopping its services
        for the outage (``DaemonLost``) comes first."""
        if self._ride is None:
            monitor = self.ctx.yagna.monitor
            limit = monitor.outage_limit
            give_up = None if limit is None else limit + 2 * monitor.max_delay
            self._ride = monitor.ride_out("getExecBatchResults", give_up_after=give_up)
        return self._ride

    async def _take(
        self,
        step: _Step,
        raw: ExeScriptCommandResult,
        results: list[Result],
        follower: _StreamFollower | None,
    ) -> None:
        """Turn one command's daemon result into a :class:`Result` (or its error)."""
        await trio.lowlevel.checkpoint()
        ctx = self.ctx
        index = step.handle.index
        ok = raw.result is CommandResult.OK
        stdout, stderr = _text(raw.stdout), _text(raw.stderr)
        exit_code: int | None = None
        if step.is_run:
            found = _EXIT_CODE.search(raw.message or "")
            exit_code = 0 if ok else (int(found.group(1)) if found else None)
        if follower is not None:
            await follower.wait_finished(index)
            if step.is_run and index in follower.codes:
                exit_code = follower.codes[index]
            stdout = stdout if stdout is not None else follower.output(index)
            stderr = stderr if stderr is not None else follower.output(index, stderr=True)
        ok = ok and exit_code in (0, None)
        message = raw.message
        data: bytes | None = None
        if ok and step.receipt is not None:
            data, message, ok = await self._finish_download(step, step.receipt, message)
        ctx._emit(
            CommandExecuted(
                ctx.activity_id, ctx.agreement_id, index, step.text, ok, exit_code, stdout, stderr
            )
        )
        if ok:
            result = Result(index, step.text, True, exit_code, stdout, stderr, message, data)
            results.append(result)
            step.handle._resolve(result)
            return
        try:
            await self._raise_if_gone(None)
        except ActivityGone as gone:
            step.handle._fail(gone)
            raise
        receipt = step.receipt
        error: CommandExecutionError
        if receipt is not None and receipt.too_large and receipt.limit is not None:
            error = DownloadTooLarge(
                limit=receipt.limit,
                command=step.text,
                index=index,
                exit_code=exit_code,
                stdout=stdout,
                stderr=stderr,
                message=f"the file is larger than the limit of {receipt.limit} bytes"
                + (f" ({message})" if message else ""),
                **ctx._where(),
            )
        else:
            error = CommandExecutionError(
                command=step.text,
                index=index,
                exit_code=exit_code,
                stdout=stdout,
                stderr=stderr,
                message=message,
                **ctx._where(),
            )
        step.handle._fail(error)
        raise error

    async def _finish_download(
        self, step: _Step, receipt: Receipt, message: str | None
    ) -> tuple[bytes | None, str | None, bool]:
        """Wait for a download's bytes; ``(data, message, ok)``."""
        data: bytes | None = None
        problem: str | None = None
        with trio.move_on_after(DOWNLOAD_GRACE) as scope:
            await trio.lowlevel.checkpoint()
            try:
                data = await receipt.wait()
            except ReceiveFailed as exc:
                problem = f"download refused: {exc}"
        if scope.cancelled_caught:
            problem = "the downloaded file did not arrive"
        if problem is not None:
            return None, problem, False
        if step.download_path is not None:
            self.ctx._emit(DownloadFinished(self.ctx.activity_id, step.download_path))
        return data, message, True
