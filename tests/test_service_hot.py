"""The hot routes' raw ASGI fast path answers exactly as the FastAPI routes do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service_support import OTHER, Keys, headers, open_service, open_session, read_bill
from thirdway.gateway import banking
from thirdway.service import ServiceConfig, create_app, hot
from thirdway.service.state import Services


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Keys, Services]]:
    """Two apps over the same services: with the fast path and without."""
    fast, keys, services = open_service(tmp_path / "data")
    config = ServiceConfig(data_dir=tmp_path / "data", console=False)
    slow = TestClient(create_app(config, services=services, fast_path=False))
    yield fast, slow, keys, services
    services.close()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each hot-route request was answered by the fast path (True) or handed on."""
    seen: list[bool] = []
    real = hot.HotRoutes._answer

    async def spy(self: hot.HotRoutes, *args: Any) -> bool:
        answered = await real(self, *args)
        seen.append(answered)
        return answered

    monkeypatch.setattr(hot.HotRoutes, "_answer", spy)
    return seen


def both(
    fast: TestClient, slow: TestClient, path: str, *, body: Any = None, **kwargs: Any
) -> tuple[Any, Any]:
    if body is not None:
        kwargs["json"] = body
    return fast.post(path, **kwargs), slow.post(path, **kwargs)


def same(fast: Any, slow: Any) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.json() == slow.json()
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.headers["content-length"] == slow.headers["content-length"]


def test_refusals_before_and_inside_the_gate_are_the_same(apps: Any, taken: list[bool]) -> None:
    fast, slow, keys, _ = apps
    sid = open_session(fast, keys.agent)
    good = banking.read_proposal(sid)
    unhosted = banking.read_proposal(sid)
    unhosted["action"]["tool"] = "format_disk"
    invalid = banking.read_proposal(sid)
    invalid["steps"][0]["cites"][0]["obs"] = "zero"
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, Any]]] = [
        # handed on to FastAPI (before the gate)
        ("proposals", {"body": good}),  # no key
        ("proposals", {"body": good, "headers": headers("tw_nope_nope")}),
        ("proposals", {"body": good, "headers": {"Authorization": "Basic abc"}}),
        ("actions", {"body": invalid, "headers": headers(keys.agent)}),
        ("actions", {"body": [good], "headers": headers(keys.agent)}),
        ("actions", {"content": b'{"x": ', "headers": {**headers(keys.agent), **json_type}}),
        ("actions", {"content": b"", "headers": {**headers(keys.agent), **json_type}}),
        ("actions", {"content": b"NaN", "headers": {**headers(keys.agent), **json_type}}),
        ("executions", {"body": {"token": "", "call": {}}, "headers": headers(keys.agent)}),
        (
            "actions",
            {
                "content": b'{"session": "x"}',
                "headers": {**headers(keys.agent), "Content-Type": "text/plain"},
            },
        ),
        # answered by the fast path (the gate or the access check refuses)
        ("actions", {"body": unhosted, "headers": headers(keys.agent)}),
        ("actions", {"body": good, "headers": headers(keys.auditor)}),
        ("proposals", {"body": good, "headers": headers(keys.other)}),
        ("proposals", {"body": {**good, "agent": OTHER}, "headers": headers(keys.agent)}),
        ("actions", {"body": banking.read_proposal("s-x"), "headers": headers(keys.agent)}),
        (
            "executions",
            {
                "body": {"token": "garbage", "call": good["action"]},
                "headers": headers(keys.agent),
            },
        ),
    ]
    for route, kwargs in cases:
        fast_answer, slow_answer = both(fast, slow, f"/v1/sessions/{sid}/{route}", **kwargs)
        same(fast_answer, slow_answer)
        assert fast_answer.status_code >= 400, (route, kwargs, fast_answer.text)
    gone = both(fast, slow, "/v1/sessions/s-nope/actions", body=good, headers=headers(keys.agent))
    same(*gone)
    assert gone[0].status_code == 404
    # the session's opening, answered; of the cases, the first three and the text/plain one
    # never reach it (no plain key or content type), the next seven it handed on, the last
    # seven it answered
    assert taken == [True] + [False] * 7 + [True] * 7


def test_answers_of_the_gate_have_the_same_form(apps: Any, taken: list[bool]) -> None:
    fast, slow, keys, services = apps
    answers = []
    for client in (fast, slow):
        sid = open_session(client, keys.agent)
        bill = read_bill(client, keys.agent, sid)  # propose + execute
        acted = client.post(
            f"/v1/sessions/{sid}/actions",
            json=banking.read_proposal(sid),
            headers=headers(keys.agent),
        )
        escalated = client.post(
            f"/v1/sessions/{sid}/actions",
            json=banking.payment_proposal(sid, bill),
            headers=headers(keys.agent),
        )
        answers.append((acted, escalated))
    # open, propose, execute, two actions; the slow app has no fast path
    assert taken == [True] * 5
    for fast_answer, slow_answer in zip(answers[0], answers[1], strict=True):
        assert fast_answer.status_code == slow_answer.status_code == 200
        assert fast_answer.headers["content-type"] == slow_answer.headers["content-type"]
        got, want = fast_answer.json(), slow_answer.json()
        assert set(got) == set(want) and set(got["outcome"]) == set(want["outcome"])
        assert got["outcome"]["outcome"] == want["outcome"]["outcome"]
    executed = answers[0][0].json()["executed"]
    assert executed["ok"] is True and executed["content"] == banking.bill_text()
    assert services.gate.log.verify().ok


def test_a_request_log_line_names_the_principal(
    apps: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fast, _, keys, _ = apps
    sid = open_session(fast, keys.agent)
    with caplog.at_level("INFO", logger="thirdway.service"):
        answer = fast.post(
            f"/v1/sessions/{sid}/actions",
            json=banking.read_proposal(sid),
            headers=headers(keys.agent),
        )
    assert answer.status_code == 200
    lines = [r for r in caplog.records if getattr(r, "path", "").endswith("/actions")]
    assert [(r.status, r.principal) for r in lines] == [(200, "agent-7")]  # type: ignore[attr-defined]


def test_an_unexpected_failure_in_the_fast_path_is_the_json_500(
    apps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, _, keys, services = apps
    sid = open_session(fast, keys.agent)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.gate, "act", broken)
    answer = fast.post(
        f"/v1/sessions/{sid}/actions", json=banking.read_proposal(sid), headers=headers(keys.agent)
    )
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal"
    assert "disk on fire" not in answer.text


def test_opening_sessions_answers_the_same(apps: Any, taken: list[bool]) -> None:
    fast, slow, keys, _ = apps
    cases: list[tuple[dict[str, Any], str]] = [
        ({"instruction": "x", "role": "admin"}, keys.agent),  # invalid: handed on
        ({"instruction": ""}, keys.agent),  # invalid: handed on
        ({"instruction": "x"}, keys.auditor),
        ({"instruction": "x", "agent": OTHER}, keys.agent),
        ({"instruction": "x", "session": "s-taken"}, keys.agent),  # the second time: 409
        ({"instruction": "x", "session": "s-taken"}, keys.agent),
    ]
    statuses = []
    for body, key in cases:
        fast_answer = fast.post("/v1/sessions", json=body, headers=headers(key))
        body = {**body, "session": "s-taken-2"} if "session" in body else body
        slow_answer = slow.post("/v1/sessions", json=body, headers=headers(key))
        assert fast_answer.status_code == slow_answer.status_code, fast_answer.text
        got, want = fast_answer.json(), slow_answer.json()
        if fast_answer.status_code == 201:
            assert got == {"session": "s-taken", "agent": "agent-7"}
            assert want == {"session": "s-taken-2", "agent": "agent-7"}
        else:
            assert got == {
                "error": {**want["error"], "message": want["error"]["message"].replace("-2", "")}
            }
        statuses.append(fast_answer.status_code)
    assert statuses == [400, 400, 403, 403, 201, 409]
    assert taken == [False, False, True, True, True, True]
    opened = fast.post("/v1/sessions", json={"instruction": "x"}, headers=headers(keys.agent))
    assert opened.status_code == 201 and opened.headers["content-type"] == "application/json"
    assert set(opened.json()) == {"session", "agent"}


def test_closing_sessions_answers_the_same(apps: Any, taken: list[bool]) -> None:
    """``DELETE /v1/sessions/{sid}`` without a body is answered by the fast path exactly as the
    FastAPI route answers it, refusals included; anything else is handed on."""
    fast, slow, keys, services = apps
    json_type = {"Content-Type": "application/json"}

    def close_both(make: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Both answers, each session id in them read as ``SID`` (each app closes its own)."""
        answers = []
        for client in (fast, slow):
            sid = make(client)
            answer = client.delete(f"/v1/sessions/{sid}", **kwargs)
            answer._content = answer.content.replace(sid.encode(), b"SID")
            answer.headers["content-length"] = str(len(answer._content))
            answers.append(answer)
        return answers[0], answers[1]

    def opened(client: TestClient) -> str:
        return open_session(client, keys.agent)

    cases: list[tuple[Any, dict[str, Any], int, bool]] = [
        # answered: closed, with or without a JSON content type
        (opened, {"headers": headers(keys.agent)}, 200, True),
        (opened, {"headers": {**headers(keys.agent), **json_type}}, 200, True),
        # answered: refused by the access check or the gate
        (opened, {"headers": headers(keys.other)}, 404, True),  # not told it exists
        (opened, {"headers": headers(keys.auditor)}, 403, True),
        (lambda _client: "s-nope", {"headers": headers(keys.agent)}, 404, True),
        # handed on: no key, an unknown key, a body
        (opened, {}, 401, False),
        (opened, {"headers": headers("tw_nope_nope")}, 401, None),
    ]
    for make, kwargs, status, answered in cases:
        taken.clear()
        fast_answer, slow_answer = close_both(make, **kwargs)
        same(fast_answer, slow_answer)
        assert fast_answer.status_code == status, fast_answer.text
        deletes = taken[1:] if make is opened else taken  # the opening went through it too
        assert deletes == ([] if answered is False else [bool(answered)])
    # A DELETE with a body is FastAPI's: the fast path never reads one.
    taken.clear()
    sid = open_session(fast, keys.agent)
    with_body = fast.request(
        "DELETE", f"/v1/sessions/{sid}", content=b"{}", headers={**headers(keys.agent), **json_type}
    )
    assert with_body.status_code == 200 and taken == [True]  # only the opening
    closed = fast.delete(f"/v1/sessions/{sid}", headers=headers(keys.agent))
    assert closed.status_code == 404
    assert services.gate.log.verify().ok
