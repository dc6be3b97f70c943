"""Smoke tests of the daemon started by the ``yagna_node`` fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx2
import pytest

from golem_trio.localnet.yagna import YAGNA_VERSION, YagnaNode


@pytest.fixture
def http(yagna_node: YagnaNode) -> Iterator[httpx2.Client]:
    # trust_env=False: never route loopback calls through a proxy from the environment.
    with httpx2.Client(base_url=yagna_node.api_url, trust_env=False, timeout=10.0) as client:
        yield client


def test_version_needs_no_key(http: httpx2.Client) -> None:
    response = http.get("/version/get")
    assert response.status_code == 200
    body = response.json()
    assert body["current"]["version"] == YAGNA_VERSION


@pytest.mark.parametrize("role", ["requestor", "provider"])
def test_me_reports_the_identity_of_each_key(
    http: httpx2.Client, yagna_node: YagnaNode, role: str
) -> None:
    ident = yagna_node.requestor if role == "requestor" else yagna_node.provider
    response = http.get("/me", headers={"Authorization": f"Bearer {ident.app_key}"})
    assert response.status_code == 200
    body = response.json()
    assert body["identity"] == ident.node_id
    assert body["name"] == role
    assert body["role"] == "manager"


def test_identities_differ(yagna_node: YagnaNode) -> None:
    assert yagna_node.requestor_id != yagna_node.provider_id
    for node_id in (yagna_node.requestor_id, yagna_node.provider_id):
        assert node_id.startswith("0x")
        assert len(node_id) == 42


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "Bearer 0123456789abcdef0123456789abcdef"}, "Invalid application key"),
        ({}, "Missing application key"),
    ],
)
def test_bad_key_gets_401_plain_text(
    http: httpx2.Client, headers: dict[str, str], message: str
) -> None:
    response = http.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.text.strip() == message
    assert response.headers["content-type"].startswith("text/plain")


def test_repr_hides_app_keys(yagna_node: YagnaNode) -> None:
    text = repr(yagna_node)
    assert yagna_node.requestor_app_key not in text
    assert yagna_node.provider_app_key not in text
    assert yagna_node.requestor_id in text
    assert repr(yagna_node.requestor).count(yagna_node.requestor_app_key) == 0


def test_second_node_restarts_and_cleans_up(yagna_node: YagnaNode) -> None:
    """A node of its own: CLI access, restart, and nothing left behind on exit."""
    with YagnaNode() as node:
        assert node.api_url != yagna_node.api_url
        listed = node.cli_json("id", "list")
        assert {entry["address"] for entry in listed} == {node.requestor_id, node.provider_id}
        first_pid = node.pid
        node.restart()
        assert node.pid not in (None, first_pid)
        assert node.get_json("/me", node.provider_app_key)["identity"] == node.provider_id
        pid, data_dir = node.pid, node.data_dir
    assert pid is not None
    assert not node.running
    assert not data_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_several_provider_identities_are_local_to_one_daemon() -> None:
    with YagnaNode.start(providers=3) as node:
        providers = node.providers
        assert len({p.node_id for p in providers}) == 3
        assert providers[0] == node.provider
        assert node.requestor.node_id not in {p.node_id for p in providers}
        for provider in providers:
            me = node.get_json("/me", provider.app_key)
            assert me["identity"] == provider.node_id
        assert all(p.app_key not in node.log_tail(400) for p in providers)
