"""The emulator's indexed router picks the route Starlette's plain scan would pick."""

from __future__ import annotations

import re
from typing import Any

import httpx2
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Match, Route, Router

from golem_trio.localnet import ProviderSpec, open_localnet
from golem_trio.localnet.emulator._activity_routes import activity_routes
from golem_trio.localnet.emulator._app import IndexedRouter
from golem_trio.localnet.emulator._market_routes import market_routes
from golem_trio.localnet.emulator._payment_routes import payment_routes
from golem_trio.localnet.emulator._vpn_routes import vpn_routes

NOTHING: Any = None
ROUTES: list[BaseRoute] = [
    *market_routes(NOTHING, NOTHING),
    *activity_routes(NOTHING, NOTHING),
    *payment_routes(NOTHING, NOTHING),
    *vpn_routes(NOTHING, NOTHING),
]
TEMPLATES = sorted({r.path_format for r in ROUTES if isinstance(r, Route)})
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def first_full(routes: list[BaseRoute], method: str, path: str) -> BaseRoute | None:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in routes:
        match, _child = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


segment = st.text(alphabet="abcdef0123456789-_.:", min_size=0, max_size=6)


@st.composite
def paths(draw: st.DrawFn) -> str:
    template = draw(st.sampled_from(TEMPLATES))
    path = re.sub(r"\{[^}]*\}", lambda _m: draw(segment), template)
    match draw(st.integers(0, 4)):
        case 0:
            path += "/"
        case 1:
            path += "/" + draw(segment)
        case 2:
            cut = draw(st.integers(0, len(path)))
            path = path[:cut]
        case 3:
            path = path.replace("/", "//", 1)
        case _:
            pass
    return path


@settings(max_examples=400, deadline=None)
@given(method=st.sampled_from(METHODS), path=paths())
def test_the_index_finds_the_route_the_plain_scan_finds(method: str, path: str) -> None:
    router = IndexedRouter(ROUTES)
    plain = first_full(list(Router(routes=ROUTES).routes), method, path)
    indexed = first_full(router.candidates(path), method, path)
    assert indexed is plain


def test_routes_added_later_are_indexed() -> None:
    async def nothing(request: Any) -> Any:
        raise AssertionError

    router = IndexedRouter(ROUTES)
    path = "/market-api/v1/demands/x/extra/y"
    assert first_full(router.candidates(path), "GET", path) is None
    router.routes.append(Route("/market-api/v1/demands/{a}/extra/{b}", nothing, methods=["GET"]))
    assert first_full(router.candidates(path), "GET", path) is router.routes[-1]


async def test_the_served_daemon_still_answers_405_404_and_its_routes() -> None:
    async with open_localnet([ProviderSpec(name="p0")], serve=True) as net:
        assert net.url is not None
        headers = {"Authorization": f"Bearer {net.app_key}"}
        async with httpx2.AsyncClient(base_url=net.url, headers=headers) as client:
            assert (await client.get("/me")).status_code == 200
            assert (await client.get("/market-api/v1/demands")).status_code == 200
            assert (await client.delete("/market-api/v1/demands")).status_code == 405
            assert (await client.get("/market-api/v1/nowhere")).status_code == 404
            assert (await client.get("/nowhere")).status_code == 404
