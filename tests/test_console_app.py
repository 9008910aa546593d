"""The auditor console over HTTP (FastAPI's TestClient): sign-in, CSRF, the pages, the forms
and what they do, labels, headers, and the quote highlighting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dialogue_support import (
    AGENT,
    PASSWORD_CALL,
    escalate_password_change,
    escalate_payment,
    goal_answer,
    open_service,
    payment_call,
)
from gatekeeper_support import entries as gate_entries
from gatekeeper_support import fabricated_transfer
from thirdway.console import StaticAuditorAuth, create_console_app
from thirdway.console.charts import tier_chart
from thirdway.console.render import highlight
from thirdway.dialogue import DialogueService
from thirdway.gateway import Gatekeeper
from thirdway.protocol.canonical import canonical_json
from thirdway.trust import actions
from thirdway.trust.config import load_context
from thirdway.trust.events import event_id, to_log_entry
from thirdway.trust.rules import sanction_for_findings

CREDENTIALS = {"alice": "alice-secret", "bob": "bob-secret", AGENT: "agent-secret"}


class Console:
    def __init__(self, gate: Gatekeeper, service: DialogueService, client: TestClient) -> None:
        self.gate, self.service, self.client = gate, service, client

    def login(self, auditor: str = "alice") -> None:
        response = self.client.post(
            "/login",
            data={"auditor": auditor, "secret": CREDENTIALS[auditor], "next": "/"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text

    def token(self, page: str, action: str) -> str:
        html = self.client.get(page).text
        pattern = (
            rf'action="[^"]*{re.escape(action)}"[^>]*>\s*'
            r'<input type="hidden" name="csrf_token" value="([0-9a-f]*)"'
        )
        found = re.search(pattern, html)
        assert found, f"no form posting to {action} on {page}"
        return found.group(1)

    def post(self, action: str, page: str, **fields: str) -> Any:
        token = self.token(page, action)
        return self.client.post(
            action, data={**fields, "csrf_token": token}, follow_redirects=False
        )


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    gate, service, _, _ = open_service(tmp_path)
    app = create_console_app(service, auth=StaticAuditorAuth(CREDENTIALS))
    with gate, TestClient(app) as client:
        yield Console(gate, service, client)


def test_pages_need_a_signed_in_auditor(console: Console) -> None:
    for page in ("/", "/dialogues", "/dialogues/x", "/agents/a", "/log"):
        response = console.client.get(page, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    assert console.client.get("/queue/rows", headers={"HX-Request": "true"}).status_code == 401


def test_sign_in_refuses_wrong_secrets_and_agents(console: Console) -> None:
    wrong = console.client.post("/login", data={"auditor": "alice", "secret": "nope"})
    assert wrong.status_code == 401 and "wrong secret" in wrong.text
    unknown = console.client.post("/login", data={"auditor": "mallory", "secret": "x"})
    assert unknown.status_code == 401
    escalate_payment(console.gate)
    console.service.sync()
    agent = console.client.post("/login", data={"auditor": AGENT, "secret": "agent-secret"})
    assert agent.status_code == 401 and "is an agent" in agent.text
    good = console.client.post(
        "/login",
        data={"auditor": "alice", "secret": "alice-secret", "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert good.status_code == 303 and good.headers["location"] == "/"
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_forms_need_their_own_csrf_token(console: Console) -> None:
    _, _, handle = escalate_payment(console.gate)
    console.login()
    page = f"/dialogues/{handle}"
    deny_token = console.token(page, "/deny")  # the dialogue is opened by now
    size = console.gate.log.size()
    for token in ("", "0" * 64, deny_token):
        response = console.client.post(
            f"/dialogues/{handle}/approve", data={"reason": "ok", "csrf_token": token}
        )
        assert response.status_code == 403 and "out of date" in response.text
    assert console.gate.log.size() == size
    assert console.service.dialogue(handle).state == "opened"


def test_challenge_answer_approve_releases_the_token(console: Console) -> None:
    sid, bill, handle = escalate_payment(console.gate)
    console.login()
    page = f"/dialogues/{handle}"
    queue = console.client.get("/").text
    assert handle in queue and "financial" in queue
    html = console.client.get(page).text
    assert '<mark title="cited by goal, s1">pay the bill' in html
    assert "send_money" in html and "No findings." in html

    response = console.post(f"{page}/challenge", page, kind="quote_instruction", obs="", text="")
    assert response.status_code == 303
    assert "Waiting for the agent's answer" in console.client.get(f"{page}/thread").text
    console.service.answer(handle, AGENT, goal_answer())
    thread = console.client.get(f"{page}/thread").text
    assert "You asked me to pay the December bill." in thread and "hx-trigger" not in thread

    blank = console.post(f"{page}/approve", page, reason="   ")
    assert blank.status_code == 400 and "without a reason" in blank.text
    response = console.post(f"{page}/approve", page, reason="matches the instruction")
    assert response.status_code == 303
    done = console.client.get(page).text
    assert "Approved." in done and "approved</strong> by alice" in done
    resolution = console.service.resolution(handle, AGENT)
    assert resolution.status == "granted" and resolution.token is not None
    assert console.gate.execute(sid, resolution.token, payment_call(sid, bill)).ok


def test_deny_and_refusals_are_shown(console: Console) -> None:
    _, bill, handle = escalate_payment(console.gate)
    console.login()
    page = f"/dialogues/{handle}"
    bad = console.post(f"{page}/challenge", page, kind="counterfactual", obs="abc")
    assert bad.status_code == 400 and "whole number" in bad.text
    future = console.post(f"{page}/challenge", page, kind="counterfactual", obs="999")
    assert future.status_code == 400 and "not recorded before the proposal" in future.text
    unknown = console.post(f"{page}/challenge", page, kind="flatter")
    assert unknown.status_code == 400 and "unknown challenge kind" in unknown.text
    console.post(f"{page}/challenge", page, kind="counterfactual", obs=str(bill))
    early = console.post(f"{page}/approve", page, reason="fine")
    assert early.status_code == 409 and "waits for the answer" in early.text
    denied = console.post(f"{page}/deny", page, reason="the payee changed its IBAN")
    assert denied.status_code == 303
    resolution = console.service.resolution(handle, AGENT)
    assert resolution.status == "denied" and "the payee changed its IBAN" in resolution.reason
    assert "no-such" in console.client.get("/dialogues/no-such").text


def test_pages_render_the_agent_and_the_log(console: Console) -> None:
    _, _, handle = escalate_payment(console.gate)
    console.login()
    console.post(f"/dialogues/{handle}/deny", f"/dialogues/{handle}", reason="no")
    agent = console.client.get(f"/agents/{AGENT}").text
    assert "<svg" in agent and "Trust tier over time" in agent and "override" in agent
    log = console.client.get("/log").text
    assert "No checkpoint has been signed yet" in log
    signed = console.post("/log/checkpoint", "/log")
    assert signed.status_code == 303
    log = console.client.get("/log").text
    assert "signature and root verified" in log
    assert f"is in the checkpointed tree of {console.gate.log.size()}" in log
    assert console.client.get("/log?entry=abc").status_code == 400
    assert "not covered by the latest checkpoint" in console.client.get("/log?entry=99999").text


def _row(html: str, handle: str) -> str:
    """The queue's table row linking to ``handle``."""
    rows = [row for row in re.findall(r"<tr>.*?</tr>", html, re.S) if handle in row]
    assert len(rows) == 1, f"no single row for {handle}"
    return rows[0]


def test_the_queue_shows_risk_and_age(console: Console) -> None:
    _, _, handle = escalate_payment(console.gate)
    console.login()
    row = _row(console.client.get("/").text, handle)
    assert "risk-financial" in row and "0 s" in row
    console.service.clock.now += 3720  # type: ignore[attr-defined]
    row = _row(console.client.get("/").text, handle)
    assert "1 h 2 min" in row and "send_money" in row and "tier 2" in row
    rows = console.client.get("/queue/rows").text
    assert "1 h 2 min" in _row(rows, handle), "the htmx refresh shows the same age"


def test_the_page_shows_findings_the_agents_tier_and_history(console: Console) -> None:
    sid, bill, handle = escalate_payment(console.gate)
    console.login()
    page = f"/dialogues/{handle}"
    console.post(f"{page}/challenge", page, kind="quote_instruction")
    console.service.answer(handle, AGENT, goal_answer(bill, "Car Rental"))
    html = console.client.get(page).text
    assert 'id="agent-tier">2 (' in html
    answer = html[html.index('id="answer-1"') :]
    assert "<code>goal_mismatch</code>" in answer and "Consistent with the chain" not in answer
    history = html[html.index("Recent trust events") :]
    assert "<td>probe</td><td>2</td>" in history  # the failed probe, tier after it

    # A denied proposal's findings, seen in the dialogue of an appeal of its sanction.
    ctx = load_context()
    now = int(console.service.now())
    denied = console.gate.propose(sid, fabricated_transfer(sid))
    assert denied.outcome == "denied"
    index = next(
        i for i, e in enumerate(gate_entries(console.gate)) if e.type == "proposal"
        and e.payload["proposal"]["action"]["args"].get("subject") == "Spotify Premium"
    )  # fmt: skip
    state, _ = console.service.trust(AGENT)
    sanction = sanction_for_findings(state, denied.findings, evidence=[index], at=now, ctx=ctx)
    assert sanction is not None
    console.gate.log.append(canonical_json(to_log_entry(sanction)))
    state, _ = console.service.trust(AGENT)
    appeal = actions.appeal(
        state, sanction_id=event_id(sanction), reason="the quote is real", at=now, ctx=ctx
    )
    console.gate.log.append(canonical_json(to_log_entry(appeal)))
    html = console.client.get(f"/dialogues/appeal:{event_id(sanction)}").text
    assert 'id="verdict">deny<' in html
    findings = html[html.index('id="findings"') :]
    assert "<code>fabricated_quote</code>" in findings and "deception" in findings
    assert 'id="agent-tier">1 (' in html
    history = html[html.index("Recent trust events") :]
    assert "<td>sanction</td><td>1</td>" in history and "<td>appeal</td>" in history


def test_security_headers(console: Console) -> None:
    response = console.client.get("/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    js = console.client.get("/static/htmx.min.js")
    assert js.status_code == 200 and js.text.startswith("/*! htmx.org 2.")


class _Fields(HTMLParser):
    """Collects form fields and the ids labels point at."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.fields.append(found)
        if tag == "label" and found.get("for"):
            self.labelled.add(str(found["for"]))


def test_every_form_field_has_a_label(console: Console) -> None:
    _, _, handle = escalate_payment(console.gate)
    pages = {"/login": console.client.get("/login").text}
    console.login()
    console.post("/log/checkpoint", "/log")
    for page in ("/", f"/dialogues/{handle}", "/log", f"/agents/{AGENT}"):
        pages[page] = console.client.get(page).text
    checked = 0
    for page, html in pages.items():
        parser = _Fields()
        parser.feed(html)
        for field in parser.fields:
            assert field.get("id") in parser.labelled, f"unlabelled field on {page}: {field}"
            checked += 1
    assert checked >= 7


def test_highlight_marks_quotes_across_whitespace_and_escapes_everything() -> None:
    content = "Total\t\t98.70 <b>due</b>\nPay to <script>alert(1)</script>"
    html = str(
        highlight(content, [("Total 98.70", "s2"), ("<script>", "s3"), ("98.70 <b>due", "s4")])
    )
    assert '<mark title="cited by s2, s4">Total\t\t98.70 &lt;b&gt;due</mark>' in html
    assert '<mark title="cited by s3">&lt;script&gt;</mark>' in html
    assert "<script>" not in html and "<b>" not in html
    assert str(highlight("nothing here", [("absent", "s1")])) == "nothing here"


def test_the_tier_chart_steps_through_each_change() -> None:
    names = ["quarantined", "probation", "standard", "trusted", "partner <&>"]
    svg = str(tier_chart([(50, 1), (100, 1), (150, 3)], start=(0, 2), now=200, names=names))
    # x = 110 + t / 200 * 510; y = 16 + (4 - tier) / 4 * 168
    assert 'd="M110.0,100.0 H237.5 V142.0 H365.0 H492.5 V58.0 H620.0"' in svg
    assert svg.count('<circle class="event"') == 3
    assert "3 trust events; tier 3 now." in svg
    assert "partner &lt;&amp;&gt;" in svg and "<&>" not in svg
    assert 'role="img"' in svg and "<title" in svg
    idle = str(tier_chart([], start=(10, 2), now=110, names=names))  # no event: a flat line
    assert 'd="M110.0,100.0 H620.0"' in idle and "0 trust events; tier 2 now." in idle


def test_m_of_n_approvals_in_the_console(tmp_path: Path) -> None:
    gate, service, bank, _ = open_service(tmp_path, tier=4)
    app = create_console_app(service, auth=StaticAuditorAuth(CREDENTIALS))
    with gate, TestClient(app) as client:
        console = Console(gate, service, client)
        sid, handle = escalate_password_change(gate)
        page = f"/dialogues/{handle}"
        console.login("alice")
        assert "2 distinct auditors must approve" in client.get(page).text
        assert console.post(f"{page}/approve", page, reason="she called").status_code == 303
        html = client.get(page).text
        assert "Your approval is recorded (1 of 2)." in html and 'id="approvals">1 of 2' in html
        again = console.post(f"{page}/approve", page, reason="really")
        assert again.status_code == 409 and "counts once" in again.text
        assert service.resolution(handle, AGENT).status == "pending"
        console.login("bob")
        assert console.post(f"{page}/approve", page, reason="confirmed").status_code == 303
        assert "approved</strong> by alice, bob" in client.get(page).text
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "granted" and resolution.token is not None
        assert gate.execute(sid, resolution.token, PASSWORD_CALL).ok
        assert bank.password == "hunter2-correct"
