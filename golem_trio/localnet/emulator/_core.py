"""The emulated daemon's shared core: errors, identities and app keys (random, while ids are
seeded), background tasks."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio

from ._clock import NetClock
from ._ids import Ids

__all__ = ["Daemon", "DaemonError", "NodeIdentity", "flatten"]


class DaemonError(Exception):
    """An error answer, shaped as the daemon shapes it.

    ``body`` is the JSON body (by default ``{"message": message}``); ``plain`` makes it a
    plain-text body instead (the daemon's 401s); ``content_type`` overrides the JSON media type
    (``application/problem+json`` for allocation validation errors).
    """

    def __init__(
        self,
        status: int,
        message: str | None,
        *,
        plain: bool = False,
        body: Any = None,
        content_type: str = "application/json",
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.plain = plain
        self.body = {"message": message} if body is None else body
        self.content_type = content_type


@attrs.define
class NodeIdentity:
    """An identity of the daemon with its app key (the requestor, or an emulated provider)."""

    node_id: str
    name: str
    app_key: str = attrs.field(repr=False)
    role: str = "manager"


def flatten(properties: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested property objects into dotted keys, as the daemon stores them."""
    flat: dict[str, Any] = {}
    for key, value in properties.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class Daemon:
    """State shared by every API of the emulated daemon and by the emulated providers.

    Each API keeps its own state object (``market``, ...), created by the LocalNet that owns
    this daemon. Background work (provider reactions, exec batches) runs in ``nursery``.
    """

    def __init__(self, clock: NetClock, ids: Ids, nursery: trio.Nursery) -> None:
        self.clock = clock
        self.ids = ids
        self.nursery = nursery
        self._by_key: dict[str, NodeIdentity] = {}
        self._by_node: dict[str, NodeIdentity] = {}

    def add_identity(self, name: str, *, app_key: str | None = None) -> NodeIdentity:
        """A new identity: its node id from the seeded ids, its app key random (never derived
        from the seed, so knowing the seed does not give the key)."""
        node_id = self.ids.node()
        self.ids.app_key()  # drawn and dropped, so every seeded id stays what it was
        identity = NodeIdentity(node_id, name, app_key or secrets.token_hex(16))
        self._by_key[identity.app_key] = identity
        self._by_node[identity.node_id] = identity
        return identity

    def identity(self, node_id: str) -> NodeIdentity | None:
        return self._by_node.get(node_id)

    def authenticate(self, app_key: str | None) -> NodeIdentity:
        """The identity an app key acts for; the daemon's plain-text 401 otherwise."""
        if not app_key:
            raise DaemonError(401, "Missing application key", plain=True)
        identity = self._by_key.get(app_key)
        if identity is None:
            raise DaemonError(401, "Invalid application key", plain=True)
        return identity

    def spawn(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn`` in the background, for as long as the network lives."""
        self.nursery.start_soon(fn)
