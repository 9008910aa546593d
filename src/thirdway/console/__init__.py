"""The auditor console (FastAPI + Jinja2 + vendored htmx, server-rendered, no build step).

:func:`create_console_app` builds it over a :class:`~thirdway.dialogue.DialogueService`;
:mod:`.auth` holds the pluggable auditor check, the session and the CSRF tokens.
"""

from thirdway.console.app import create_console_app
from thirdway.console.auth import AuditorAuth, StaticAuditorAuth

__all__ = ["AuditorAuth", "StaticAuditorAuth", "create_console_app"]
