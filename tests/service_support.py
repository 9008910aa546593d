"""Shared pieces of the service tests: an app over a temporary folder with one key per role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from thirdway.gateway import banking
from thirdway.service import ServiceConfig, create_app
from thirdway.service.state import Services

AGENT = "agent-7"
OTHER = "agent-8"
AUDITOR = "alice"
AUDITOR2 = "bob"


@dataclass
class Keys:
    agent: str
    other: str
    auditor: str
    auditor2: str
    admin: str


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def open_service(folder: Path, **config: Any) -> tuple[TestClient, Keys, Services]:
    cfg = ServiceConfig(data_dir=folder, console=False, **config)
    services = Services.open(cfg)
    keys = Keys(
        agent=services.keys.create(AGENT, "agent"),
        other=services.keys.create(OTHER, "agent"),
        auditor=services.keys.create(AUDITOR, "auditor"),
        auditor2=services.keys.create(AUDITOR2, "auditor"),
        admin=services.keys.create("root", "admin"),
    )
    return TestClient(create_app(cfg, services=services)), keys, services


def open_session(client: TestClient, key: str) -> str:
    answer = client.post(
        "/v1/sessions", json={"instruction": banking.INSTRUCTION}, headers=headers(key)
    )
    assert answer.status_code == 201, answer.text
    sid: str = answer.json()["session"]
    return sid


def read_bill(client: TestClient, key: str, sid: str) -> int:
    """Propose and execute the honest read of the bill; the data observation's index."""
    granted = client.post(
        f"/v1/sessions/{sid}/proposals", json=banking.read_proposal(sid), headers=headers(key)
    ).json()
    assert granted["outcome"] == "granted", granted
    call = banking.read_proposal(sid)["action"]
    done = client.post(
        f"/v1/sessions/{sid}/executions",
        json={"token": granted["token"], "call": call},
        headers=headers(key),
    )
    assert done.status_code == 200, done.text
    index: int = done.json()["result_index"]
    return index


def error_of(answer: Any, status: int) -> dict[str, Any]:
    """The error object of an answer with ``status``, checked against the error contract."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]
