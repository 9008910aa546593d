"""Schemathesis against the published OpenAPI document, over ASGI (no network): no 5xx, every
status documented, every body matching its declared schema. Bounded: a few examples per
operation, no deadline flakiness, well under a minute."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as sch_checks

from service_support import open_service

pytestmark = pytest.mark.slow

# Schemathesis needs the app when the module is collected, so the service is built here and
# removed when the test process exits.
FOLDER = Path(tempfile.mkdtemp(prefix="thirdway-schemathesis-"))
CLIENT, KEYS, SERVICES = open_service(FOLDER, max_body_bytes=64 * 1024)
atexit.register(shutil.rmtree, FOLDER, True)
atexit.register(SERVICES.close)
APP = CLIENT.app
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

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
