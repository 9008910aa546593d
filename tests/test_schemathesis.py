"""Schemathesis against the published OpenAPI document, over ASGI (no network): no 5xx, every
status documented, every body matching its declared schema. Bounded: a few examples per
operation, no deadline flakiness, well under a minute."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as sch_checks

from service_support import AGENT, headers, open_service, open_session, read_bill
from thirdway.gateway import banking

pytestmark = pytest.mark.slow

# Schemathesis needs the app when the module is collected, so the service is built here and
# removed when the test process exits.
FOLDER = Path(tempfile.mkdtemp(prefix="thirdway-schemathesis-"))
CLIENT, KEYS, SERVICES = open_service(FOLDER, max_body_bytes=64 * 1024)
atexit.register(shutil.rmtree, FOLDER, True)
atexit.register(SERVICES.close)
APP = CLIENT.app
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

# A real session (with the bill read) and a real escalation, so that generated requests reach
# the gate and the dialogue service instead of stopping at 404.
SESSION = open_session(CLIENT, KEYS.agent)
BILL = read_bill(CLIENT, KEYS.agent, SESSION)
HANDLE = CLIENT.post(
    f"/v1/sessions/{SESSION}/proposals",
    json=banking.payment_proposal(SESSION, BILL),
    headers=headers(KEYS.agent),
).json()["handle"]
REAL = {"sid": SESSION, "handle": HANDLE, "agent": AGENT}


@schema.hook
def map_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Point path parameters at the real session, dialogue and agent (but never close the
    session: the later examples need it)."""
    operation = context.operation
    if not path_parameters or (operation is not None and operation.method.upper() == "DELETE"):
        return path_parameters
    return {name: REAL.get(name, value) for name, value in path_parameters.items()}


CHECKS = [
    sch_checks.not_a_server_error,
    sch_checks.status_code_conformance,
    sch_checks.content_type_conformance,
    sch_checks.response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
@pytest.mark.parametrize("role", ["agent", "auditor"])
def test_api_conforms_to_its_schema(case: schemathesis.Case, role: str) -> None:
    key = KEYS.agent if role == "agent" else KEYS.auditor
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
