"""Errors of the work layer: a batch that failed, timed out, or lost its activity."""

from __future__ import annotations

from typing import Any

from .._errors import GolemError

__all__ = [
    "ActivityGone",
    "BatchError",
    "BatchTimeoutError",
    "CommandExecutionError",
    "CommandNotRun",
    "DownloadTooLarge",
    "TransferUnavailable",
]


def _tail(text: str | None, size: int = 400) -> str:
    if not text:
        return ""
    text = text.strip()
    return text if len(text) <= size else "..." + text[-size:]


class BatchError(GolemError):
    """Base class of the errors of one batch of commands on one activity.

    ``activity_id``, ``agreement_id``, ``provider_id`` and ``provider_name`` say where it
    happened (``None`` where unknown).
    """

    def __init__(
        self,
        message: str,
        *,
        activity_id: str | None = None,
        agreement_id: str | None = None,
        provider_id: str | None = None,
        provider_name: str | None = None,
    ) -> None:
        where = ", ".join(
            f"{key}={value}"
            for key, value in (
                ("activity", activity_id),
                ("provider", provider_name or provider_id),
            )
            if value
        )
        super().__init__(f"{message} [{where}]" if where else message)
        #: The message without the context.
        self.detail = message
        self.activity_id = activity_id
        self.agreement_id = agreement_id
        self.provider_id = provider_id
        self.provider_name = provider_name


class CommandExecutionError(BatchError):
    """A command of the batch failed: an ``Error`` result or a non-zero exit code.

    ``command`` is the command as text (``run /golem/run/x.py --stats``), ``index`` its place
    in the batch, ``exit_code`` its exit code where known, ``stdout``/``stderr`` its captured
    output and ``message`` what the provider said.
    """

    def __init__(
        self,
        *,
        command: str,
        index: int,
        exit_code: int | None,
        stdout: str | None,
        stderr: str | None,
        message: str | None,
        activity_id: str | None = None,
        agreement_id: str | None = None,
        provider_id: str | None = None,
        provider_name: str | None = None,
    ) -> None:
        text = f"command {index} ({command}) failed"
        if exit_code is not None:
            text += f" with exit code {exit_code}"
        if message:
            text += f": {message}"
        if stderr:
            text += f"; stderr: {_tail(stderr)}"
        super().__init__(
            text,
            activity_id=activity_id,
            agreement_id=agreement_id,
            provider_id=provider_id,
            provider_name=provider_name,
        )
        self.command = command
        self.index = index
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.message = message


class DownloadTooLarge(CommandExecutionError):
    """A download command failed because the file was larger than its ``limit`` (bytes): the
    transfer was refused (413) and nothing of it was kept, no partial file either."""

    def __init__(self, *, limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit


class CommandNotRun(BatchError):
    """The command never ran (or its result never came): an earlier command failed, the batch
    timed out, the daemon failed, or :meth:`Script.execute` was cancelled.

    ``cause`` is that reason (also chained as ``__cause__`` when raised from a handle).
    """

    def __init__(
        self,
        *,
        command: str,
        index: int,
        cause: BaseException | None,
        activity_id: str | None = None,
        agreement_id: str | None = None,
        provider_id: str | None = None,
        provider_name: str | None = None,
    ) -> None:
        text = cause.detail if isinstance(cause, BatchError) else str(cause)
        why = "" if cause is None else f": {type(cause).__name__}: {text}"
        super().__init__(
            f"command {index} ({command}) did not run{why}",
            activity_id=activity_id,
            agreement_id=agreement_id,
            provider_id=provider_id,
            provider_name=provider_name,
        )
        self.command = command
        self.index = index
        self.cause = cause


class BatchTimeoutError(BatchError):
    """The batch did not finish within the script's ``timeout`` (seconds). The commands may
    still run on the provider."""

    def __init__(
        self,
        timeout: float,
        *,
        activity_id: str | None = None,
        agreement_id: str | None = None,
        provider_id: str | None = None,
        provider_name: str | None = None,
    ) -> None:
        super().__init__(
            f"the batch did not finish within {timeout:g} s",
            activity_id=activity_id,
            agreement_id=agreement_id,
            provider_id=provider_id,
            provider_name=provider_name,
        )
        self.timeout = timeout


class ActivityGone(BatchError):
    """The activity no longer exists or was terminated (by the provider, or destroyed):
    nothing more can run in it. ``reason`` is what the daemon said, where it said anything."""

    def __init__(
        self,
        reason: str | None,
        *,
        activity_id: str | None = None,
        agreement_id: str | None = None,
        provider_id: str | None = None,
        provider_name: str | None = None,
    ) -> None:
        super().__init__(
            f"the activity is gone: {reason}" if reason else "the activity is gone",
            activity_id=activity_id,
            agreement_id=agreement_id,
            provider_id=provider_id,
            provider_name=provider_name,
        )
        self.reason = reason


class TransferUnavailable(GolemError, RuntimeError):
    """A file transfer was asked of a :class:`WorkContext` that has no storage to serve or
    receive the files (pass ``storage=`` an :class:`HttpStorage`), or a
    :class:`GftpStorage` cannot be opened (the daemon's service bus does not answer, or is
    another daemon's)."""
