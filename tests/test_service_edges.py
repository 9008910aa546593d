"""The service at its edges: odd bodies answered alike by the raw ASGI fast path and FastAPI,
with messages that name what is wrong; bodies over the limit however they are sent; chosen
session ids that a URL can reach; pagination cursors; keys only in the header; revoked keys on
the hot routes; and the client's errors for answers that are not the API's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service_support import Keys, error_of, headers, open_service, open_session
from thirdway.client import ApiError, Client, ServerError
from thirdway.errors import ThirdwayError
from thirdway.gateway import banking
from thirdway.service import ServiceConfig, create_app
from thirdway.service.state import Services


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Keys, Services]]:
    """Two apps over the same services: with the fast path and without."""
    fast, keys, services = open_service(tmp_path / "data", max_body_bytes=64 * 1024)
    config = ServiceConfig(data_dir=tmp_path / "data", console=False, max_body_bytes=64 * 1024)
    slow = TestClient(create_app(config, services=services, fast_path=False))
    yield fast, slow, keys, services
    services.close()


def _json_headers(key: str, content_type: str = "application/json") -> dict[str, str]:
    return {**headers(key), "Content-Type": content_type}


def _both_refuse(apps: Any, path: str, content: bytes, content_type: str) -> str:
    """Post ``content`` through both apps; both answer the same 400; its message."""
    fast, slow, keys, services = apps
    size = services.gate.log.size()
    answers = [
        app.post(path, content=content, headers=_json_headers(keys.agent, content_type))
        for app in (fast, slow)
    ]
    assert answers[0].json() == answers[1].json()
    assert services.gate.log.size() == size  # nothing logged
    error = error_of(answers[0], 400)
    assert error["code"] == "invalid_input"
    message: str = error["message"]
    return message


def test_a_body_that_is_not_utf8_is_named(apps: Any) -> None:
    fast, _, keys, _ = apps
    sid = open_session(fast, keys.agent)
    body = json.dumps(banking.read_proposal(sid)).encode()[:-1] + b', "goal": "\xff"}'
    for path in (f"/v1/sessions/{sid}/proposals", f"/v1/sessions/{sid}/observations"):
        message = _both_refuse(apps, path, body, "application/json")
        assert message.startswith("the request body is not valid JSON: not UTF-8 text (byte ")


def test_a_body_nested_too_deeply_is_named(apps: Any) -> None:
    fast, _, keys, _ = apps
    sid = open_session(fast, keys.agent)
    body = b"[" * 20_000 + b"]" * 20_000
    message = _both_refuse(apps, f"/v1/sessions/{sid}/proposals", body, "application/json")
    assert message == "the request body is not valid JSON: nested too deeply"


def test_a_body_sent_as_another_media_type_names_the_content_type(apps: Any) -> None:
    fast, _, keys, _ = apps
    sid = open_session(fast, keys.agent)
    body = json.dumps(banking.read_proposal(sid)).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        message = _both_refuse(apps, f"/v1/sessions/{sid}/proposals", body, content_type)
        assert "Content-Type: application/json" in message
    # a JSON media type with parameters is JSON, and is served
    ok = fast.post(
        f"/v1/sessions/{sid}/proposals",
        content=body,
        headers=_json_headers(keys.agent, "application/json; charset=utf-8"),
    )
    assert ok.status_code == 200 and ok.json()["outcome"] == "granted"


def test_duplicate_keys_and_huge_numbers_are_answered_alike(apps: Any) -> None:
    fast, slow, keys, _ = apps
    bodies = [
        b'{"instruction": "a", "instruction": ""}',  # the last one counts: too short
        b'{"instruction": "hi", "session": ' + b"9" * 400 + b"}",
        b'{"instruction": "hi", "agent": NaN}',
        b'{"instruction": "hi", "x": 1e999}',
    ]
    for body in bodies:
        got, want = (
            app.post("/v1/sessions", content=body, headers=_json_headers(keys.agent))
            for app in (fast, slow)
        )
        assert got.status_code == want.status_code == 400, (body, got.text)
        assert got.json() == want.json()


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"instruction": "'
    sent = 0
    while sent < total:
        yield b"x" * 4096
        sent += 4096
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_a_413_before_the_gate(apps: Any) -> None:
    fast, slow, keys, services = apps
    size = services.gate.log.size()
    for app in (fast, slow):
        answer = app.post(
            "/v1/sessions", content=_chunks(80 * 1024), headers=_json_headers(keys.agent)
        )
        assert "content-length" not in answer.request.headers  # sent chunked
        assert error_of(answer, 413)["code"] == "payload_too_large"
    assert services.gate.log.size() == size


@pytest.mark.parametrize(
    "session", ["a/b", "a?b", "a#b", "a%2Fb", "a b", ".", "..", ".hidden", "x" * 129, ""]
)
def test_a_chosen_session_id_no_url_can_reach_is_refused(apps: Any, session: str) -> None:
    fast, slow, keys, services = apps
    size = services.gate.log.size()
    for app in (fast, slow):
        answer = app.post(
            "/v1/sessions",
            json={"instruction": "hi", "session": session},
            headers=headers(keys.agent),
        )
        assert "session" in error_of(answer, 400)["message"]
    assert services.gate.log.size() == size


def test_a_chosen_session_id_is_reachable(apps: Any) -> None:
    fast, _, keys, _ = apps
    sid = "pay-bill:2023.12@home_1"
    opened = fast.post(
        "/v1/sessions", json={"instruction": banking.INSTRUCTION, "session": sid},
        headers=headers(keys.agent),
    )  # fmt: skip
    assert opened.status_code == 201, opened.text
    answer = fast.post(
        f"/v1/sessions/{sid}/proposals",
        json=banking.read_proposal(sid),
        headers=headers(keys.agent),
    )
    assert answer.json()["outcome"] == "granted", answer.text


@pytest.mark.parametrize(
    ("cursor", "status"),
    [("-1", 400), ("abc", 400), ("1.5", 400), ("", 400), ("٣", 400), ("1\n", 400),
     (" 1", 400), ("0x1", 400), ("9" * 21, 400), ("9" * 20, 200), ("0", 200), ("007", 200)],
)  # fmt: skip
def test_pagination_cursors(apps: Any, cursor: str, status: int) -> None:
    fast, _, keys, _ = apps
    sid = open_session(fast, keys.agent)
    for path, key in (
        ("/v1/log/entries", keys.auditor),
        ("/v1/dialogues", keys.auditor),
        (f"/v1/sessions/{sid}/observations", keys.agent),
    ):
        answer = fast.get(path, params={"cursor": cursor}, headers=headers(key))
        assert answer.status_code == status, (path, cursor, answer.text)
        if status == 400:
            assert "cursor" in error_of(answer, 400)["message"]
        elif cursor.startswith("9"):
            assert answer.json() == {"items": [], "next_cursor": None}


def test_a_key_anywhere_but_the_header_is_no_key(apps: Any) -> None:
    fast, _, keys, _ = apps
    for name in ("key", "api_key", "access_token", "token", "authorization"):
        answer = fast.get("/v1/whoami", params={name: keys.admin})
        assert error_of(answer, 401)["code"] == "unauthorized"
    cookie = fast.get("/v1/whoami", headers={"Cookie": f"key={keys.admin}"})
    assert error_of(cookie, 401)["code"] == "unauthorized"


def test_a_revoked_key_is_refused_on_the_hot_routes(apps: Any) -> None:
    fast, slow, keys, services = apps
    sid = open_session(fast, keys.agent)
    services.keys.revoke(keys.agent.split("_")[1])
    size = services.gate.log.size()
    for app in (fast, slow):
        for path, body in (
            ("/v1/sessions", {"instruction": "hi"}),
            (f"/v1/sessions/{sid}/proposals", banking.read_proposal(sid)),
            (f"/v1/sessions/{sid}/actions", banking.read_proposal(sid)),
            (f"/v1/sessions/{sid}/executions", {"token": "t", "call": {"tool": "x"}}),
        ):
            answer = app.post(path, json=body, headers=headers(keys.agent))
            assert error_of(answer, 401)["message"] == "the API key is not valid", path
    assert services.gate.log.size() == size


def _client(status: int, content: bytes, content_type: str) -> Client:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"Content-Type": content_type})

    return Client("http://thirdway.test", "tw_x_y", transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("status", "content", "content_type"),
    [
        (200, b"<html>captive portal</html>", "text/html"),
        (200, b'{"unexpected": true}', "application/json"),
        (200, b"", "application/json"),
        (307, b"", "text/plain"),
    ],
)
def test_the_client_turns_an_answer_that_is_not_the_apis_into_an_api_error(
    status: int, content: bytes, content_type: str
) -> None:
    with _client(status, content, content_type) as client, pytest.raises(ApiError) as err:
        client.whoami()
    assert err.value.code == "bad_answer" and err.value.status == status
    assert "GET /v1/whoami" in str(err.value) and isinstance(err.value, ThirdwayError)


def test_the_client_names_a_gateway_error_page_as_a_server_error() -> None:
    with _client(502, b"Bad Gateway", "text/plain") as client, pytest.raises(ServerError) as err:
        client.whoami()
    assert err.value.status == 502 and "Bad Gateway" in str(err.value)
