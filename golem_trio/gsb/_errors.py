"""The bus client's errors; all derive from :class:`~golem_trio.GolemError`."""

from __future__ import annotations

from .._errors import GolemError

__all__ = ["GsbCallError", "GsbClosed", "GsbError", "GsbProtocolError", "GsbRegisterError"]


class GsbError(GolemError):
    """Base class of every error of the bus client."""


class GsbProtocolError(GsbError):
    """Bytes that are not a valid frame, packet or payload."""


class GsbClosed(GsbError):
    """The connection to the bus is closed (or broke); no reply will come."""


class GsbRegisterError(GsbError):
    """The router refused a register or unregister request.

    Attributes:
        code: the router's reply code (400 bad request, 404 not registered, 409 conflict).
        service_id: the service address concerned.
    """

    def __init__(self, service_id: str, code: int, message: str) -> None:
        super().__init__(f"{service_id}: code {code}" + (f": {message}" if message else ""))
        self.service_id = service_id
        self.code = code
        self.message = message


class GsbCallError(GsbError):
    """A call answered with a non-zero reply code.

    Attributes:
        address: the called address.
        code: 400 (bad request, e.g. no such service) or 500 (service failure).
        message: the reply data as text (the bus sends the error's description).
    """

    def __init__(self, address: str, code: int, message: str) -> None:
        super().__init__(f"GSB call {address} failed with code {code}: {message}")
        self.address = address
        self.code = code
        self.message = message
