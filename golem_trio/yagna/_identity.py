"""Identity (``GET /me``) and version (``GET /version/get``), served at the daemon's root."""

from __future__ import annotations

from ._http import HttpLayer
from ._models import Identity, VersionResponse

__all__ = ["IdentityApi"]


class IdentityApi:
    """Who the app key acts for, and which daemon this is. Get it from
    :attr:`YagnaClient.identity`.

    Cancellation: both methods are checkpoints and only read.
    """

    def __init__(self, http: HttpLayer) -> None:
        self._http = http
        self._root = http.config.api_url

    async def get_identity(self) -> Identity:
        """``GET /me``: the node id (``0x…``) this app key acts for."""
        result: Identity = await self._http.call_json(
            "getIdentity", "GET", f"{self._root}/me", Identity, safe=True
        )
        return result

    async def get_version(self) -> VersionResponse:
        """``GET /version/get`` (needs no app key)."""
        result: VersionResponse = await self._http.call_json(
            "getVersion", "GET", f"{self._root}/version/get", VersionResponse, safe=True
        )
        return result
