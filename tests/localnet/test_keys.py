"""LocalNet's app keys are random (its ids stay seeded), and its own control routes
(``/localnet/faults``, ``/localnet/ledger``) want one, as the daemon's API does."""

from __future__ import annotations

import re

import httpx2
import trio

from golem_trio.localnet import ProviderSpec, open_localnet


async def test_the_same_seed_gives_the_same_ids_but_new_app_keys() -> None:
    runs = []
    for _ in range(2):
        async with open_localnet([ProviderSpec(name="p0")], seed=7) as net:
            provider_identity = net.providers[0][0]
            runs.append(
                (
                    net.requestor.node_id,
                    provider_identity.node_id,
                    net.app_key,
                    provider_identity.app_key,
                )
            )
    (requestor_a, provider_a, key_a, pkey_a), (requestor_b, provider_b, key_b, pkey_b) = runs
    assert (requestor_a, provider_a) == (requestor_b, provider_b)
    assert key_a != key_b
    assert pkey_a != pkey_b
    assert len({key_a, pkey_a}) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", key) for key in (key_a, key_b, pkey_a, pkey_b))


async def test_the_control_routes_want_the_app_key() -> None:
    async with open_localnet([ProviderSpec(name="p0")], serve=True) as net:
        assert net.url is not None
        with trio.fail_after(10):
            async with httpx2.AsyncClient(base_url=net.url, trust_env=False) as http:
                for method, path in [
                    ("GET", "/localnet/faults"),
                    ("POST", "/localnet/faults/kill-activity"),
                    ("GET", "/localnet/ledger"),
                ]:
                    reply = await http.request(method, path, json={} if method == "POST" else None)
                    assert reply.status_code == 401, (method, path)
                    assert reply.headers["content-type"].startswith("text/plain")
                    wrong = {"Authorization": "Bearer " + "0" * 32}
                    reply = await http.request(method, path, headers=wrong)
                    assert reply.status_code == 401, (method, path)
                auth = {"Authorization": f"Bearer {net.app_key}"}
                assert (await http.get("/localnet/faults", headers=auth)).status_code == 200
                ledger = await http.get("/localnet/ledger", params={"authToken": net.app_key})
                assert ledger.status_code == 200
                assert "agreements" in ledger.json()
                assert net.faults.json()["fired"] == []
