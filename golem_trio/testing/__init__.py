"""``golem_trio.testing``: check a run against the invariants of docs/architecture.md §4.

Use it in your own tests: run your services on a LocalNet, then
``assert_invariants(net, budget=...)`` reads the network's ledger and says what was left open,
unpaid or wrongly paid; :func:`snapshot_tasks` before and after the engine tells whether it
left tasks running.
"""

from golem_trio._exports import fixup_module_metadata

from ._invariants import InvariantViolation as InvariantViolation
from ._invariants import TaskSnapshot as TaskSnapshot
from ._invariants import assert_invariants as assert_invariants
from ._invariants import check_invariants as check_invariants
from ._invariants import snapshot_tasks as snapshot_tasks

__all__ = [
    "InvariantViolation",
    "TaskSnapshot",
    "assert_invariants",
    "check_invariants",
    "snapshot_tasks",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
