"""The exec event stream (SSE) as the daemon frames it (docs/daemon-notes.md §4.5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2
import pytest
import trio

from golem_trio.yagna import (
    ApiConfig,
    DecodeError,
    Finished,
    NotFound,
    Started,
    StdErr,
    StdOut,
    UnknownRuntimeEventKind,
    YagnaClient,
)


def frame(n: int, index: int, kind: object, event: str = "runtime") -> bytes:
    data = {
        "batch_id": "b1",
        "index": index,
        "timestamp": "2024-05-01T10:00:00.123456789",
        "kind": kind,
    }
    return f"event: {event}\ndata: {json.dumps(data)}\nid: {n}\n\n".encode()


class NeverEnding(httpx2.AsyncByteStream):
    """The daemon's stream: frames, then ``:ping`` comments, and it never closes."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await trio.lowlevel.checkpoint()
            yield chunk
        yield b":ping\n\n"
        await trio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


CHUNKS = [
    b":ping\n\n",
    frame(0, 0, {"started": {"command": {"run": {"entry_point": "/bin/echo", "args": ["hi"]}}}}),
    frame(1, 0, {"stdout": "hi\n"}),
    # A frame split across chunks, and a byte-array output.
    frame(2, 0, {"stderr": [119, 97, 114, 110]})[:17],
    frame(2, 0, {"stderr": [119, 97, 114, 110]})[17:],
    frame(3, 0, {"finished": {"return_code": 0, "message": None}}),
    frame(4, 0, {"something_new": {}}),
    frame(5, 0, {"stdout": "ignored"}, event="other"),
    frame(6, 1, {"finished": {"return_code": 3, "message": "exit 3"}}),
]


async def test_stream_decodes_frames_and_closes_cleanly() -> None:
    body = NeverEnding(CHUNKS)
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    config = ApiConfig(app_key="k")
    async with YagnaClient(config, transport=httpx2.MockTransport(handler)) as yagna:
        kinds = []
        with trio.fail_after(5):
            async with yagna.activity.open_exec_stream("act", "b1") as stream:
                async for event in stream:
                    assert event.batch_id == "b1"
                    assert event.timestamp.tzinfo is not None
                    kinds.append((event.index, event.kind))
                    if isinstance(event.kind, Finished) and event.kind.return_code != 0:
                        break
    assert seen[0].headers["accept"] == "text/event-stream"
    assert seen[0].url.path == "/activity-api/v1/activity/act/exec/b1"
    assert body.closed
    assert [type(k) for _, k in kinds] == [
        Started,
        StdOut,
        StdErr,
        Finished,
        UnknownRuntimeEventKind,
        Finished,
    ]
    assert kinds[1][1] == StdOut("hi\n")
    assert kinds[2][1] == StdErr(b"warn")
    assert kinds[5] == (1, Finished(3, "exit 3"))


@pytest.mark.parametrize(
    "bad",
    [
        b"event: runtime\ndata: {not json\n\n",
        b'event: runtime\ndata: {"batch_id": "b1"}\n\n',
        b'event: runtime\ndata: {"batch_id": "b1", "index": "zero", "timestamp": "x",'
        b' "kind": {}}\n\n',
    ],
)
async def test_malformed_frames_are_decode_errors(bad: bytes) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=NeverEnding([bad])
        )

    async with YagnaClient(ApiConfig(app_key="k"), transport=httpx2.MockTransport(handler)) as y:
        async with y.activity.open_exec_stream("act", "b1") as stream:
            with pytest.raises(DecodeError, match="getExecBatchResults"):
                await stream.__anext__()


async def test_stream_errors_are_typed() -> None:
    def not_found(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(404, json={"message": "batch not found"})

    async with YagnaClient(ApiConfig(app_key="k"), transport=httpx2.MockTransport(not_found)) as y:
        with pytest.raises(NotFound, match="batch not found"):
            async with y.activity.open_exec_stream("act", "b1"):
                pass  # pragma: no cover

    def json_instead(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=[])

    async with YagnaClient(
        ApiConfig(app_key="k"), transport=httpx2.MockTransport(json_instead)
    ) as y:
        with pytest.raises(DecodeError, match="event stream"):
            async with y.activity.open_exec_stream("act", "b1"):
                pass  # pragma: no cover


async def test_stream_that_ends_stops_iteration() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=frame(0, 0, {"finished": {"return_code": 0, "message": None}}),
        )

    async with YagnaClient(ApiConfig(app_key="k"), transport=httpx2.MockTransport(handler)) as y:
        async with y.activity.open_exec_stream("act", "b1") as stream:
            events = [event async for event in stream]
    assert [e.kind for e in events] == [Finished(0, None)]
