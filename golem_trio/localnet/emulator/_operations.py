"""Which of the daemon's operations a request goes to, by method and path, from the emulator's
own route table (the routes are named by the API specs' operationIds)."""

from __future__ import annotations

import functools
from typing import Any

from starlette.routing import Match

from ._activity_routes import activity_routes
from ._app import IndexedRouter
from ._market_routes import market_routes
from ._payment_routes import payment_routes
from ._vpn_routes import vpn_routes

__all__ = ["operation_of"]

#: The operations ``build_app`` adds beside the APIs' routes.
_PLAIN = {("GET", "/me"): "getIdentity", ("GET", "/version/get"): "getVersion"}


@functools.cache
def _router() -> IndexedRouter:
    # The route tables close over the state they are given and never touch it when they are
    # made: matching paths needs none.
    nothing: Any = None
    return IndexedRouter(
        [
            *market_routes(nothing, nothing),
            *activity_routes(nothing, nothing),
            *payment_routes(nothing, nothing),
            *vpn_routes(nothing, nothing),
        ]
    )


def operation_of(method: str, path: str) -> str | None:
    """The operationId of a ``method`` request for ``path`` (no query), or ``None`` when no
    route of the daemon's APIs takes it."""
    method = method.upper()
    plain = _PLAIN.get((method, path))
    if plain is not None:
        return plain
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "path_params": {}}
    for route in _router().candidates(path):
        match, _child = route.matches(scope)
        if match is Match.FULL:
            name = getattr(route, "name", None)
            return name if isinstance(name, str) else None
    return None
