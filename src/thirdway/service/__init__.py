"""The gateway's HTTP service: everything the Gatekeeper and the dialogue service do, over a
FastAPI app with per-principal API keys (roles agent / auditor / admin).

:func:`create_app` builds the app from a :class:`ServiceConfig`; :mod:`.auth` holds the key
store and the role checks; :mod:`.routes` the endpoints; :mod:`.limits` the request size limit
and pagination. ``thirdway serve`` runs it under uvicorn.
"""

from thirdway.service.app import create_app
from thirdway.service.auth import KeyStore, Principal, Role
from thirdway.service.config import ServiceConfig, load_config

__all__ = ["KeyStore", "Principal", "Role", "ServiceConfig", "create_app", "load_config"]
