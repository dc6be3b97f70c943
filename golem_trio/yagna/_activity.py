"""Activity API (``/activity-api/v1``), requestor side: create, exec, results, state, destroy.

Cancellation, for every method: a checkpoint; if cancelled, the request may or may not have
reached the daemon.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import trio

from ._convert import decode, encode
from ._errors import (
    DaemonTimeout,
    DaemonUnreachable,
    DecodeError,
    NotFound,
    RequestTimeout,
    error_for_status,
)
from ._http import HttpLayer, _error_message
from ._models import (
    ActivityState,
    ActivityUsage,
    CreateActivityResult,
    ExeScriptCommand,
    ExeScriptCommandResult,
    ExeScriptCommandState,
    RuntimeEvent,
)

__all__ = ["ActivityApi", "ExecEventStream"]

#: Seconds that closing a stream may take when the caller is being cancelled.
CLOSE_BOUND = 5.0

#: The daemon compares the Accept header literally (docs/daemon-notes.md §4.5).
SSE_ACCEPT = "text/event-stream"


def exe_script_text(commands: Sequence[ExeScriptCommand]) -> str:
    """The ``text`` of an ``ExeScriptRequest``: the commands as a JSON array in a string."""
    return json.dumps(encode(list(commands)), separators=(",", ":"))


class ExecEventStream:
    """The runtime events of one exec batch, as they happen (async iterator).

    The daemon never ends this stream by itself: stop iterating after the ``finished`` event
    of the last command, or of any command with a non-zero return code. Frames other than
    ``event: runtime`` are skipped; a frame that is not a valid runtime event raises
    :class:`DecodeError`.
    """

    def __init__(self, operation: str, response: httpx2.Response) -> None:
        self._operation = operation
        self._source = httpx2.EventSource(response).__aiter__()

    def __aiter__(self) -> ExecEventStream:
        return self

    async def __anext__(self) -> RuntimeEvent:
        while True:
            try:
                frame = await self._source.__anext__()
            except httpx2.SSEError as exc:
                raise DecodeError(self._operation, f"bad event stream: {exc}") from exc
            except httpx2.TimeoutException as exc:
                raise DaemonTimeout(self._operation, "event stream went silent") from exc
            except httpx2.TransportError as exc:
                raise DaemonUnreachable(self._operation, f"event stream broke: {exc}") from exc
            if frame.event != "runtime":
                continue
            try:
                data = json.loads(frame.data)
            except ValueError as exc:
                raise DecodeError(
                    self._operation, f"event data is not JSON: {frame.data[:80]!r}"
                ) from exc
            result: RuntimeEvent = decode(self._operation, data, RuntimeEvent)
            return result

    async def aclose(self) -> None:
        await self._source.aclose()  # type: ignore[attr-defined]


class ActivityApi:
    """Typed calls of the activity API. Get one from :attr:`YagnaClient.activity`."""

    def __init__(self, http: HttpLayer) -> None:
        self._http = http
        self._base = http.config.activity_base

    async def create_activity(self, agreement_id: str, *, wait: float | None = None) -> str:
        """Create an activity for an approved agreement (the bare-string request form).

        The daemon waits up to ``wait`` s (default 5) for the provider's exe-unit; a
        :class:`RequestTimeout` means it did not come up in time. Not retried.
        """
        result: str = await self._http.call_json(
            "createActivity",
            "POST",
            f"{self._base}/activity",
            str,
            body=agreement_id,
            params={"timeout": wait},
            long_poll=wait if wait is not None else 5.0,
        )
        return result

    async def create_activity_with_credentials(
        self,
        agreement_id: str,
        *,
        requestor_pub_key: str | None = None,
        wait: float | None = None,
    ) -> CreateActivityResult:
        """The object request form of ``createActivity``: the reply carries ``credentials``
        (SGX runtimes) next to the activity id."""
        body: dict[str, Any] = {"agreementId": agreement_id}
        if requestor_pub_key is not None:
            body["requestorPubKey"] = requestor_pub_key
        result: CreateActivityResult = await self._http.call_json(
            "createActivity",
            "POST",
            f"{self._base}/activity",
            CreateActivityResult,
            body=body,
            params={"timeout": wait},
            long_poll=wait if wait is not None else 5.0,
        )
        return result

    async def exec(self, activity_id: str, commands: Sequence[ExeScriptCommand]) -> str:
        """Send a batch of commands; returns the batch id. Not retried (it would run twice)."""
        result: str = await self._http.call_json(
            "exec",
            "POST",
            f"{self._base}/activity/{activity_id}/exec",
            str,
            body={"text": exe_script_text(commands)},
        )
        return result

    async def get_exec_batch_results(
        self,
        activity_id: str,
        batch_id: str,
        *,
        wait: float | None = None,
        command_index: int | None = None,
        retry_server_errors: bool = True,
    ) -> list[ExeScriptCommandResult]:
        """Results of a batch so far, cumulative from command 0, in order.

        Waits up to ``wait`` s for the last command (or ``command_index``) to finish. When
        the wait runs out the daemon answers with what is finished, except with a
        ``command_index``, where it answers 408: that is returned here as ``[]`` (nothing new:
        poll again).

        ``retry_server_errors=False`` raises a 500 at once instead of retrying it (a 503 is
        still retried): for a caller that knows better what a 500 means, such as one awaiting
        a ``terminate`` command, whose exe-unit is gone once it ran (the daemon then answers
        500 for the batch).
        """
        try:
            result: list[ExeScriptCommandResult] = await self._http.call_json(
                "getExecBatchResults",
                "GET",
                f"{self._base}/activity/{activity_id}/exec/{batch_id}",
                list[ExeScriptCommandResult],
                params={"timeout": wait, "commandIndex": command_index},
                safe=retry_server_errors,
                long_poll=wait if wait else None,
            )
        except RequestTimeout:
            if command_index is None:
                raise
            await trio.lowlevel.checkpoint()  # the failed call checkpointed; say so
            return []
        return result

    @asynccontextmanager
    async def open_exec_stream(
        self, activity_id: str, batch_id: str
    ) -> AsyncIterator[ExecEventStream]:
        """Open the batch's event stream (SSE). Open it right after :meth:`exec`: the daemon
        does not replay events sent before the stream was opened.

        Cancellation: exiting the block closes the stream; the batch itself goes on.
        """
        operation = "getExecBatchResults"
        request = self._http.build(
            "GET",
            f"{self._base}/activity/{activity_id}/exec/{batch_id}",
            headers={"Accept": SSE_ACCEPT},
            stream=True,
        )
        client = self._http.client(long_poll=True)
        try:
            response = await client.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise DaemonTimeout(operation, "event stream did not open in time") from exc
        except httpx2.TransportError as exc:
            raise DaemonUnreachable(operation, f"event stream did not open: {exc}") from exc
        try:
            if not 200 <= response.status_code < 300:
                await response.aread()
                raise error_for_status(response.status_code)(
                    operation,
                    status=response.status_code,
                    message=self._http.redact(_error_message(response)),
                    method="GET",
                    path=request.url.path,
                )
            content_type = response.headers.get("content-type", "").partition(";")[0].strip()
            if content_type != SSE_ACCEPT:
                raise DecodeError(operation, f"expected an event stream, got {content_type!r}")
            stream = ExecEventStream(operation, response)
            try:
                yield stream
            finally:
                with trio.move_on_after(CLOSE_BOUND, shield=True):
                    await stream.aclose()
        finally:
            with trio.move_on_after(CLOSE_BOUND, shield=True):
                await response.aclose()

    async def get_state(self, activity_id: str) -> ActivityState:
        result: ActivityState = await self._http.call_json(
            "GetActivityState",
            "GET",
            f"{self._base}/activity/{activity_id}/state",
            ActivityState,
            safe=True,
        )
        return result

    async def get_usage(self, activity_id: str) -> ActivityUsage:
        result: ActivityUsage = await self._http.call_json(
            "GetActivityUsage",
            "GET",
            f"{self._base}/activity/{activity_id}/usage",
            ActivityUsage,
            safe=True,
        )
        return result

    async def get_running_command(self, activity_id: str) -> list[ExeScriptCommandState]:
        """What runs now; ``[]`` when nothing does (the daemon's 404)."""
        try:
            result: list[ExeScriptCommandState] = await self._http.call_json(
                "GetRunningCommand",
                "GET",
                f"{self._base}/activity/{activity_id}/command",
                list[ExeScriptCommandState],
                safe=True,
            )
        except NotFound:
            await trio.lowlevel.checkpoint()  # the failed call checkpointed; say so
            return []
        return result

    async def get_activity_agreement(self, activity_id: str) -> str:
        result: str = await self._http.call_json(
            "getActivityAgreement",
            "GET",
            f"{self._base}/activity/{activity_id}/agreement",
            str,
            safe=True,
        )
        return result

    async def list_activities(self, agreement_id: str) -> list[str]:
        """Ids of the activities of an agreement (daemon only, not in the specs)."""
        result: list[str] = await self._http.call_json(
            "listActivities",
            "GET",
            f"{self._base}/activity",
            list[str],
            params={"agreementId": agreement_id},
            safe=True,
        )
        return result

    async def destroy_activity(self, activity_id: str, *, wait: float | None = None) -> None:
        """Destroy the activity (the provider stops everything in it). Retried; a repeat that
        finds it gone counts as done."""
        await self._http.call(
            "DestroyActivity",
            "DELETE",
            f"{self._base}/activity/{activity_id}",
            params={"timeout": wait},
            safe=True,
            gone_ok=True,
            long_poll=wait if wait is not None else 5.0,
        )
