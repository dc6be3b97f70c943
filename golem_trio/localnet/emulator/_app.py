"""The emulated daemon as an ASGI app: identity, version and each API's routes."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

from ._core import Daemon, DaemonError
from ._http import authenticate, error_response, json_response

__all__ = ["EMULATED_VERSION", "IndexedRouter", "build_app"]

#: The daemon version the emulator reproduces.
EMULATED_VERSION = "0.17.6"

#: Path segments the router's index keys on ("/market-api/v1/demands/..." -> the first four,
#: the empty one before the first slash included).
_INDEX_DEPTH = 4


class IndexedRouter(Router):
    """Starlette's router, which tries its routes one by one, with an index in front: a request
    is matched only against the routes whose path starts as its own does (by the first
    :data:`_INDEX_DEPTH` segments, when a route's are all literal) and those that start with a
    parameter sooner, in their order. Only a route can take a request that its literal start
    fits, so the first full match is the one the plain scan would find. Anything else (no full
    match: a 405, a slash to redirect, a 404) goes to the plain scan."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        super().__init__(routes=list(routes))
        self._indexed = -1
        self._by_start: dict[tuple[str, ...], list[BaseRoute]] = {}
        self._unindexed: list[BaseRoute] = []

    def _index(self) -> None:
        by_start: dict[tuple[str, ...], list[BaseRoute]] = {}
        unindexed: list[BaseRoute] = []
        for route in self.routes:
            path = getattr(route, "path_format", None)
            start = tuple(path.split("/")[:_INDEX_DEPTH]) if isinstance(path, str) else ()
            if len(start) == _INDEX_DEPTH and not any("{" in part for part in start):
                by_start.setdefault(start, []).append(route)
            else:
                unindexed.append(route)
        order = {id(route): position for position, route in enumerate(self.routes)}
        self._by_start = {
            start: sorted([*routes, *unindexed], key=lambda r: order[id(r)])
            for start, routes in by_start.items()
        }
        self._unindexed = unindexed
        self._indexed = len(self.routes)

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that may take a request for ``path``, in their order."""
        if self._indexed != len(self.routes):
            self._index()
        start = tuple(path.split("/", _INDEX_DEPTH)[:_INDEX_DEPTH])
        return self._by_start.get(start, self._unindexed)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        # (Mounted under a root path, the plain scan works the route's path out.)
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            for route in self.candidates(scope["path"]):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)


def build_app(
    daemon: Daemon, api_routes: Sequence[Route], *, middleware: Sequence[Middleware] = ()
) -> Starlette:
    """An ASGI app serving the emulated daemon's REST API: identity, version and
    ``api_routes`` (each API's routes), behind ``middleware`` (outermost first)."""

    async def get_identity(request: Request) -> Response:
        me = authenticate(daemon, request)
        return json_response({"identity": me.node_id, "name": me.name, "role": me.role})

    async def get_version(request: Request) -> Response:
        return json_response(
            {
                "current": {
                    "version": EMULATED_VERSION,
                    "name": f"v{EMULATED_VERSION} (golem-trio LocalNet)",
                    "seen": True,
                    "releaseTs": "2026-03-13T00:00:00",
                },
                "pending": None,
            }
        )

    async def daemon_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DaemonError)
        return error_response(exc)

    async def not_found(request: Request, exc: Exception) -> Response:
        return Response(b"", status_code=404)

    routes = [
        Route("/me", get_identity, methods=["GET"], name="getIdentity"),
        Route("/version/get", get_version, methods=["GET"], name="getVersion"),
        *api_routes,
    ]
    app = Starlette(
        middleware=list(middleware),
        exception_handlers={DaemonError: daemon_error, 404: not_found},
    )
    app.router = IndexedRouter(routes)
    return app
