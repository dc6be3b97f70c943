"""The emulated daemon as an ASGI app: identity, version and each API's routes."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._core import Daemon, DaemonError
from ._http import authenticate, error_response, json_response

__all__ = ["EMULATED_VERSION", "build_app"]

#: The daemon version the emulator reproduces.
EMULATED_VERSION = "0.17.6"


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
    return Starlette(
        routes=routes,
        middleware=list(middleware),
        exception_handlers={DaemonError: daemon_error, 404: not_found},
    )
