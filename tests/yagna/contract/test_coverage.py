"""Every requestor-side operation of the specs has a client method: the calls of
``client_calls.CALLS`` are run against the fake daemon and the operations their requests reach
are compared with :func:`requestor_operations`. A removed or renamed client method, or a method
that stops reaching its operation, fails here unless the operation is excluded below."""

from __future__ import annotations

import contextlib

from .client_calls import CALLS, FakeDaemon, run_call
from .openapi_support import requestor_operations

#: Requestor-side operations the client deliberately does not offer, and why.
EXCLUDED: dict[tuple[str, str], str] = {
    ("activity-api.yaml", "callEncrypted"): (
        "the encrypted channel of SGX exe-units (docs/daemon-notes.md §4.1: SGX only); the "
        "project runs no SGX payloads"
    ),
    ("payment-api.yaml", "issueInvoice"): (
        "providers issue invoices; the spec tags the operation requestor too, but a requestor "
        "only receives them (and the spec's Invoice body cannot be valid: its required "
        "`status` is readOnly)"
    ),
}


async def _reached_operations() -> set[tuple[str, str]]:
    reached: set[tuple[str, str]] = set()
    for call in CALLS:
        daemon = FakeDaemon(reply=call.reply)
        # A call may fail after its request was checked (a known decoding bug): the operation
        # was still reached with a valid request, which is what coverage is about.
        with contextlib.suppress(Exception):
            await run_call(call, daemon)
        reached |= {(op.spec, op.operation_id) for op in daemon.operations()}
    return reached


async def test_every_requestor_operation_has_a_client_method() -> None:
    reached = await _reached_operations()
    missing = [
        str(op)
        for op in requestor_operations()
        if (op.spec, op.operation_id) not in reached and (op.spec, op.operation_id) not in EXCLUDED
    ]
    assert not missing, "requestor operations without a client method:\n" + "\n".join(missing)

    stale = sorted(key for key in EXCLUDED if key in reached)
    assert not stale, (
        f"excluded operations the client now covers (drop them from EXCLUDED): {stale}"
    )


def test_exclusions_name_requestor_operations() -> None:
    known = {(op.spec, op.operation_id) for op in requestor_operations()}
    assert set(EXCLUDED) <= known, set(EXCLUDED) - known
    assert all(reason.strip() for reason in EXCLUDED.values())


def test_calls_reach_only_requestor_operations() -> None:
    known = {(op.spec, op.operation_id) for op in requestor_operations()}
    assert not [call.id for call in CALLS if call.operation not in known]
