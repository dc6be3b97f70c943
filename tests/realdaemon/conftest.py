"""Fixtures for tests against the real yagna daemon (PyPI golem-node).

Every test in this folder gets the ``realdaemon`` marker. The daemon is started
once per session; when its binary is missing the tests fail (they are never
skipped), with a message that says how to install it.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from golem_trio.localnet.yagna import (
    YagnaNode,
    YagnaNotInstalled,
    find_yagna_binary,
    namespaces_problem,
)

_HERE = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.realdaemon)


@pytest.fixture(scope="session")
def yagna_node() -> Iterator[YagnaNode]:
    """One started daemon with a requestor and a provider identity, for the whole session."""
    missing: str | None = None
    try:
        find_yagna_binary()
    except YagnaNotInstalled as exc:
        missing = str(exc)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    with YagnaNode.start() as node:
        yield node


@pytest.fixture
def namespaces() -> None:
    """The two-node network's private network namespace can be made here (root, util-linux,
    iproute2); else the test fails, never skips, with a message that says what is missing."""
    problem = namespaces_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
