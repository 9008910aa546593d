"""Python clients of the gateway service: :class:`Client` (sync) and :class:`AsyncClient`.

Errors are ``thirdway.errors`` types carrying the server's message (see :mod:`.errors`).
"""

from thirdway.client.clients import AsyncClient, Client
from thirdway.client.errors import (
    ApiError,
    BadRequest,
    CapabilityRefused,
    Conflict,
    Forbidden,
    NotFound,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "CapabilityRefused",
    "Client",
    "Conflict",
    "Forbidden",
    "NotFound",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
]
