"""Routes of the emulated activity API (``/activity-api/v1``), requestor side."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._activity import ActivityState
from ._core import Daemon
from ._http import authenticate, json_body, json_response, query_float, query_int

__all__ = ["PING_INTERVAL", "StreamAborted", "activity_routes"]

PREFIX = "/activity-api/v1"

#: The daemon keeps an ended event stream open with a ``:ping`` comment this often.
PING_INTERVAL = 15.0

#: The daemon compares the Accept header literally (docs/daemon-notes.md §4.5).
SSE = "text/event-stream"


def _frame(event: dict[str, Any], frame_id: int) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"event: runtime\ndata: {data}\nid: {frame_id}\n\n".encode()


class StreamAborted(Exception):
    """Raised inside an event stream whose activity is gone, so that the server aborts the
    body: the real daemon forwards the stream to the exe-unit, and once that has gone the call
    fails and the chunked body is cut off (clients see a payload error, not a clean end, which
    an SSE client would answer by reconnecting)."""


class _Frames:
    """The SSE body: the batch's events as frames, then a ``:ping`` comment at once and every
    :data:`PING_INTERVAL` seconds, for as long as the activity lives."""

    def __init__(
        self, events: trio.MemoryReceiveChannel[dict[str, Any]], alive: Callable[[], bool]
    ) -> None:
        self._events = events
        self._alive = alive
        self._ended = False
        self._pinged = False
        self._next_id = 0

    def __aiter__(self) -> _Frames:
        return self

    async def __anext__(self) -> bytes:
        if not self._ended:
            try:
                event = await self._events.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self._ended = True
            else:
                frame = _frame(event, self._next_id)
                self._next_id += 1
                return frame
        if self._pinged:
            await trio.sleep(PING_INTERVAL)
        else:
            await trio.lowlevel.checkpoint()
        if not self._alive():
            raise StreamAborted
        self._pinged = True
        return b":ping\n\n"


class _EventStream(StreamingResponse):
    """A never-ending event stream; however it ends (the client went away, the server stops),
    its channel is closed, so the batch stops feeding it."""

    def __init__(
        self, events: trio.MemoryReceiveChannel[dict[str, Any]], alive: Callable[[], bool]
    ) -> None:
        super().__init__(_Frames(events, alive), media_type=SSE)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._events.close()


def activity_routes(daemon: Daemon, activity: ActivityState) -> list[Route]:
    """The activity API's routes, each named after its OpenAPI ``operationId``."""

    async def create_activity(request: Request) -> Response:
        me = authenticate(daemon, request)
        wait = query_float(request, "timeout", 5.0)
        body = await json_body(request)
        return json_response(await activity.create_activity(me.node_id, body, wait))

    async def list_activities(request: Request) -> Response:
        me = authenticate(daemon, request)
        agreement_id = request.query_params.get("agreementId")
        return json_response(activity.list_activities(me.node_id, agreement_id))

    async def destroy_activity(request: Request) -> Response:
        me = authenticate(daemon, request)
        query_float(request, "timeout", 5.0)
        await activity.destroy_activity(me.node_id, request.path_params["act"])
        return json_response(None)

    async def exec_script(request: Request) -> Response:
        me = authenticate(daemon, request)
        body = await json_body(request)
        return json_response(activity.exec(me.node_id, request.path_params["act"], body))

    async def get_exec_batch_results(request: Request) -> Response:
        me = authenticate(daemon, request)
        act, batch = request.path_params["act"], request.path_params["batch"]
        if request.headers.get("accept") == SSE:
            events = activity.watch(me.node_id, act, batch)

            def alive() -> bool:
                state = activity.get_state(me.node_id, act)["state"][0]
                return bool(state != "Terminated")

            return _EventStream(events, alive)
        results = await activity.batch_results(
            me.node_id,
            act,
            batch,
            query_float(request, "timeout", 0.0),
            query_int(request, "commandIndex"),
        )
        return json_response(results)

    async def get_activity_agreement(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(activity.activity_agreement(me.node_id, request.path_params["act"]))

    async def get_activity_state(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(activity.get_state(me.node_id, request.path_params["act"]))

    async def get_activity_usage(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(await activity.get_usage(me.node_id, request.path_params["act"]))

    async def get_running_command(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response(activity.running_command(me.node_id, request.path_params["act"]))

    p = PREFIX
    return [
        Route(f"{p}/activity", create_activity, methods=["POST"], name="createActivity"),
        Route(f"{p}/activity", list_activities, methods=["GET"], name="listActivities"),
        Route(
            f"{p}/activity/{{act}}", destroy_activity, methods=["DELETE"], name="DestroyActivity"
        ),
        Route(f"{p}/activity/{{act}}/exec", exec_script, methods=["POST"], name="exec"),
        Route(
            f"{p}/activity/{{act}}/exec/{{batch}}",
            get_exec_batch_results,
            methods=["GET"],
            name="getExecBatchResults",
        ),
        Route(
            f"{p}/activity/{{act}}/agreement",
            get_activity_agreement,
            methods=["GET"],
            name="getActivityAgreement",
        ),
        Route(
            f"{p}/activity/{{act}}/state",
            get_activity_state,
            methods=["GET"],
            name="GetActivityState",
        ),
        Route(
            f"{p}/activity/{{act}}/usage",
            get_activity_usage,
            methods=["GET"],
            name="GetActivityUsage",
        ),
        Route(
            f"{p}/activity/{{act}}/command",
            get_running_command,
            methods=["GET"],
            name="GetRunningCommand",
        ),
    ]
