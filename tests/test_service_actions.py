"""``POST /v1/sessions/{sid}/actions``: propose and, when granted, execute in one request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service_support import OTHER, Keys, error_of, headers, open_service, open_session
from thirdway.gateway import banking
from thirdway.protocol.models import LogEntry
from thirdway.service.state import Services


@pytest.fixture
def api(tmp_path: Path) -> tuple[TestClient, Keys, Services]:
    return open_service(tmp_path / "data")


def act(client: TestClient, key: str, sid: str, proposal: Any) -> Any:
    return client.post(f"/v1/sessions/{sid}/actions", json=proposal, headers=headers(key))


def log_types(services: Services, start: int = 0) -> list[str]:
    log = services.gate.log
    return [LogEntry.model_validate_json(log.entry(i)).type for i in range(start, log.size())]


def read_bill(client: TestClient, key: str, sid: str) -> int:
    answer = act(client, key, sid, banking.read_proposal(sid))
    assert answer.status_code == 200, answer.text
    index: int = answer.json()["executed"]["result_index"]
    return index


def test_a_granted_action_runs_in_one_request(api: Any) -> None:
    client, keys, services = api
    sid = open_session(client, keys.agent)
    start = services.gate.log.size()
    answer = act(client, keys.agent, sid, banking.read_proposal(sid))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"outcome", "executed"}
    assert body["outcome"]["outcome"] == "granted" and body["outcome"]["token"]
    done = body["executed"]
    assert done["ok"] is True and done["tool"] == "read_file"
    assert "Car Rental" in done["content"]
    assert done["log_index"] == services.gate.log.size() - 1
    assert log_types(services, start) == [
        "proposal", "verdict", "decision", "capability", "observation", "observation", "execution"
    ]  # fmt: skip
    page = client.get(f"/v1/sessions/{sid}/observations", headers=headers(keys.agent)).json()
    assert [o["channel"] for o in page["items"]] == ["principal", "call", "data"]
    assert page["items"][done["result_index"]]["content"] == done["content"]
    # the token in the answer is spent
    again = client.post(
        f"/v1/sessions/{sid}/executions",
        json={"token": body["outcome"]["token"], "call": banking.read_proposal(sid)["action"]},
        headers=headers(keys.agent),
    )
    error = error_of(again, 409)
    assert error["code"] == "capability_refused" and error["reason"] == "spent"


def test_the_log_matches_the_two_request_flow(tmp_path: Path) -> None:
    """The same three actions over the two routes and over ``/actions``: the same entry types
    in the same order."""
    shapes = []
    for flow in ("two", "one"):
        client, keys, services = open_service(tmp_path / flow)
        sid = open_session(client, keys.agent)
        for proposal in (banking.read_proposal(sid), None, None):
            if proposal is None:
                bill = len(services.gate.observations(sid)) - 1
                proposal = banking.payment_proposal(sid, bill)
            if flow == "one":
                assert act(client, keys.agent, sid, proposal).status_code == 200
                continue
            url = f"/v1/sessions/{sid}"
            outcome = client.post(url + "/proposals", json=proposal, headers=headers(keys.agent))
            if outcome.json()["outcome"] == "granted":
                call = {"token": outcome.json()["token"], "call": proposal["action"]}
                ran = client.post(url + "/executions", json=call, headers=headers(keys.agent))
                assert ran.status_code == 200
        shapes.append(log_types(services))
        services.close()
    assert shapes[0] == shapes[1]
    assert shapes[1].count("execution") == 1 and shapes[1].count("dialogue") == 2


def test_a_denied_action_runs_nothing(api: Any) -> None:
    client, keys, services = api
    sid = open_session(client, keys.agent)
    bill = read_bill(client, keys.agent, sid)
    start = services.gate.log.size()
    answer = act(client, keys.agent, sid, banking.injected_transfer_proposal(sid, bill))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"]["outcome"] == "denied"
    assert body["outcome"]["reason"].startswith("the verifier denied")
    assert body.get("executed") is None and "token" not in body["outcome"]
    written = log_types(services, start)
    assert written[:3] == ["proposal", "verdict", "decision"]
    assert "capability" not in written and "execution" not in written
    assert len(services.gate.observations(sid)) == bill + 1  # nothing ran, nothing recorded


def test_an_escalated_action_waits_and_its_handle_works_later(api: Any) -> None:
    client, keys, services = api
    sid = open_session(client, keys.agent)
    bill = read_bill(client, keys.agent, sid)
    answer = act(client, keys.agent, sid, banking.payment_proposal(sid, bill))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["outcome"]["outcome"] == "escalated" and body.get("executed") is None
    handle = body["outcome"]["handle"]
    assert "execution" not in log_types(services, body["outcome"]["proposal_index"])
    decided = client.post(
        f"/v1/dialogues/{handle}/approve",
        json={"reason": "the bill is genuine"},
        headers=headers(keys.auditor),
    )
    assert decided.status_code == 200, decided.text
    resolution = client.get(
        f"/v1/dialogues/{handle}/resolution", headers=headers(keys.agent)
    ).json()
    if resolution["status"] != "granted":  # a second auditor may be needed
        assert resolution["status"] == "pending", resolution
        second = client.post(
            f"/v1/dialogues/{handle}/approve",
            json={"reason": "agreed"},
            headers=headers(keys.auditor2),
        )
        assert second.status_code == 200, second.text
        resolution = client.get(
            f"/v1/dialogues/{handle}/resolution", headers=headers(keys.agent)
        ).json()
    assert resolution["status"] == "granted" and resolution["token"], resolution
    call = banking.payment_proposal(sid, bill)["action"]
    ran = client.post(
        f"/v1/sessions/{sid}/executions",
        json={"token": resolution["token"], "call": call},
        headers=headers(keys.agent),
    )
    assert ran.status_code == 200 and ran.json()["ok"] is True, ran.text


def test_a_tool_not_hosted_here_is_a_400_and_nothing_is_logged(api: Any) -> None:
    client, keys, services = api
    sid = open_session(client, keys.agent)
    size = services.gate.log.size()
    proposal = banking.read_proposal(sid)
    proposal["action"]["tool"] = "format_disk"
    error = error_of(act(client, keys.agent, sid, proposal), 400)
    assert "'format_disk' is not hosted here" in error["message"]
    assert services.gate.log.size() == size


def test_another_agent_cannot_act_in_the_session_or_as_someone_else(api: Any) -> None:
    client, keys, services = api
    sid = open_session(client, keys.agent)
    size = services.gate.log.size()
    theirs = act(client, keys.other, sid, banking.read_proposal(sid))
    unknown = act(client, keys.other, "s-nope", banking.read_proposal("s-nope"))
    # the same answer as for a session that does not exist: nothing about it or its owner
    assert error_of(theirs, 404) == {
        **error_of(unknown, 404),
        "message": f"no open session {sid!r}",
    }
    named = act(client, keys.agent, sid, {**banking.read_proposal(sid), "agent": OTHER})
    assert "cannot propose as agent" in error_of(named, 403)["message"]
    assert services.gate.log.size() == size


def test_auditors_and_admins_cannot_act(api: Any) -> None:
    client, keys, services = api
    sid = open_session(client, keys.agent)
    size = services.gate.log.size()
    for key in (keys.auditor, keys.admin):
        answer = act(client, key, sid, banking.read_proposal(sid))
        assert "agent role" in error_of(answer, 403)["message"]
    assert error_of(act(client, "tw_nope_nope", sid, banking.read_proposal(sid)), 401)
    assert services.gate.log.size() == size


def test_unknown_sessions_are_404(api: Any) -> None:
    client, keys, _ = api
    answer = act(client, keys.agent, "s-nope", banking.read_proposal("s-nope"))
    assert error_of(answer, 404)["code"] == "not_found"


def test_malformed_and_invalid_bodies_are_400s_naming_the_problem(api: Any) -> None:
    client, keys, services = api
    sid = open_session(client, keys.agent)
    size = services.gate.log.size()
    broken = client.post(
        f"/v1/sessions/{sid}/actions",
        content=b'{"session": ',
        headers={**headers(keys.agent), "Content-Type": "application/json"},
    )
    assert "not valid JSON" in error_of(broken, 400)["message"]
    proposal = banking.read_proposal(sid)
    proposal["steps"][0]["cites"][0]["obs"] = "zero"
    invalid = act(client, keys.agent, sid, proposal)
    assert "steps.0.cites.0.obs" in error_of(invalid, 400)["message"]
    extra = act(client, keys.agent, sid, {**banking.read_proposal(sid), "token": "x"})
    assert "token" in error_of(extra, 400)["message"]
    elsewhere = act(client, keys.agent, sid, banking.read_proposal("s-other"))
    assert "names session" in error_of(elsewhere, 400)["message"]
    assert services.gate.log.size() == size


def test_oversized_bodies_get_413(tmp_path: Path) -> None:
    client, keys, services = open_service(tmp_path / "d", max_body_bytes=4096)
    sid = open_session(client, keys.agent)
    size = services.gate.log.size()
    proposal = banking.read_proposal(sid)
    proposal["goal"] = "x" * 5000
    error = error_of(act(client, keys.agent, sid, proposal), 413)
    assert error["code"] == "payload_too_large" and "4096" in error["message"]
    assert services.gate.log.size() == size
    assert act(client, keys.agent, sid, banking.read_proposal(sid)).status_code == 200


def test_the_route_is_published_with_its_answer_and_errors(api: Any) -> None:
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/sessions/{sid}/actions"]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Acted"
    }
    assert {"400", "401", "403", "404", "409", "413"} <= set(operation["responses"])
    assert "422" not in operation["responses"]
    acted = spec["components"]["schemas"]["Acted"]
    assert set(acted["properties"]) == {"outcome", "executed"}
