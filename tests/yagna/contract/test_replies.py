"""Property test: every spec-valid reply (as generated from the patched specs, with unknown extra
keys a newer daemon might add) decodes into the client's model without error."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
import trio
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from .client_calls import (
    CALLS,
    KNOWN_CLIENT_BUGS,
    ClientCall,
    FakeDaemon,
    conforms,
    run_call,
    runtime_events,
    spec_operation,
    sse_body,
)
from .openapi_support import (
    Operation,
    daemon_reply,
    from_schema,
    response_schema,
    spec_example,
)

# No shrinking: each example runs a whole client call, and shrinking a failure takes minutes;
# the failure message shows the reply as generated.
_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _reply_strategy(call: ClientCall) -> st.SearchStrategy[Any] | None:
    op = spec_operation(call)
    if call.method == "open_exec_stream":
        return st.lists(from_schema(op.spec, "RuntimeEvent"), max_size=4)
    schema = call.reply_schema or response_schema(op)
    if schema is None or schema.get("enum") == [None]:
        return None  # no body, or the JSON body null: nothing to vary
    return from_schema(op.spec, schema)


def _fixed_example(call: ClientCall) -> Any:
    op = spec_operation(call)
    if call.method == "open_exec_stream":
        return runtime_events()
    schema = call.reply_schema or response_schema(op)
    assert schema is not None
    return spec_example(op.spec, schema)


def _reply(op: Operation, body: Any, call: ClientCall) -> httpx2.Response:
    if call.method == "open_exec_stream":
        return httpx2.Response(
            200, headers={"Content-Type": "text/event-stream"}, content=sse_body(body)
        )
    return daemon_reply(op, body)


_CASES = [
    pytest.param(
        call,
        id=call.id,
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_CLIENT_BUGS[call.id])]
        if call.id in KNOWN_CLIENT_BUGS
        else [],
    )
    for call in CALLS
    if not call.variant and _reply_strategy(call) is not None
]


@pytest.mark.parametrize("call", _CASES)
def test_generated_replies_decode(call: ClientCall) -> None:
    strategy = _reply_strategy(call)
    assert strategy is not None

    @_SETTINGS
    @given(body=strategy)
    @example(body=_fixed_example(call))  # one of each variant, every field set
    def check(body: Any) -> None:
        daemon = FakeDaemon(reply=lambda op, _request: _reply(op, body, call))
        result = trio.run(run_call, call, daemon)
        assert conforms(result, call.returns), f"{call.id}: {result!r} from {json.dumps(body)}"
        if isinstance(body, list):
            assert len(result) == len(body)

    check()
