"""The API's routers, one module per resource."""

from thirdway.service.routes import dialogues, log, misc, sessions

ROUTERS = (misc.router, sessions.router, dialogues.router, log.router)

__all__ = ["ROUTERS"]
