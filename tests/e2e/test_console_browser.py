"""The auditor console in a real browser: Playwright driving Debian's Chromium (headless, launched
from /usr/bin/chromium; ``make test`` installs it). The console runs under uvicorn in a thread
on 127.0.0.1 with a free port; the agent acts through the Python API. Screenshots go to
``artifacts/screenshots/`` (queue, dialogue, approved, denied, agent, log; and
``failed-<test>.png`` for a failing test); they are kept after the run and ignored by git."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from dialogue_support import AGENT, escalate_payment, goal_answer, open_service, payment_call
from gatekeeper_support import CountingBank
from thirdway.console import StaticAuditorAuth, create_console_app
from thirdway.dialogue import DialogueService, make_challenge
from thirdway.gateway import Gatekeeper

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CREDENTIALS = {"alice": "alice-secret", "bob": "bob-secret"}
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'make test' (it installs Debian's chromium)")
    profile = tempfile.mkdtemp(prefix="thirdway-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Served:
    url: str
    gate: Gatekeeper
    service: DialogueService
    bank: CountingBank


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    gate, service, bank, _ = open_service(tmp_path)
    app = create_console_app(service, auth=StaticAuditorAuth(CREDENTIALS))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", gate, service, bank)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        gate.close()


@pytest.fixture
def page(browser: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page; if the test fails, what the browser showed is saved before it closes."""
    page = browser.new_page()
    yield page
    if getattr(request.node, "call_failed", False):
        shot(page, f"failed-{request.node.name}")
    page.close()
    browser.clear_cookies()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, served: Served, auditor: str = "alice") -> None:
    page.goto(served.url + "/")
    expect(page).to_have_url(f"{served.url}/login?next=/")
    page.get_by_label("Auditor id").fill(auditor)
    page.get_by_label("Secret").fill(CREDENTIALS[auditor])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#auditor-id")).to_have_text(auditor)


def test_challenge_answer_approve_and_the_token_works(page: Page, served: Served) -> None:
    sid, bill, handle = escalate_payment(served.gate)
    sign_in(page, served)
    row = page.get_by_role("row").filter(has_text="send_money")
    expect(row).to_contain_text("financial")
    shot(page, "queue")
    row.get_by_role("link").click()
    expect(page.locator("#dialogue-id")).to_have_text(handle)
    expect(page.locator("#obs-0 mark")).to_have_text("pay the bill 'bill-december-2023.txt'")
    expect(page.locator(f"#obs-{bill} mark").first).to_be_visible()

    page.get_by_label("Challenge").select_option("counterfactual")
    page.get_by_label("Observation k (counterfactual only)").fill(str(bill))
    page.get_by_role("button", name="Send challenge").click()
    expect(page.locator("#waiting")).to_be_visible()
    [(dialogue, turn)] = served.service.pending(AGENT)
    assert dialogue.id == handle and turn.challenge.obs == bill
    served.service.answer(
        handle,
        AGENT,
        {
            "text": "If the bill were false I would not pay: the IBAN and amount come from it.",
            "would_act": False,
            "steps": [{"id": "a1", "claim": "The IBAN is the bill's.",
                       "cites": [{"obs": bill, "quote": "IBAN: UK12345678901234567890"}]}],
        },
    )  # fmt: skip
    answer = page.locator("#answer-1")  # arrives through htmx polling, no reload
    expect(answer).to_contain_text("I would not pay")
    expect(answer).to_contain_text("Consistent with the chain.")
    shot(page, "dialogue")

    page.get_by_label("Reason for approving").fill("The bill matches the user's request.")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#outcome")).to_contain_text("approved")
    shot(page, "approved")
    resolution = served.service.resolution(handle, AGENT)
    assert resolution.status == "granted" and resolution.token is not None
    executed = served.gate.execute(sid, resolution.token, payment_call(sid, bill))
    assert executed.ok and served.bank.calls["send_money"] == 1


def focused(page: Page) -> dict[str, Any]:
    return page.evaluate(  # type: ignore[no-any-return]
        "() => { const e = document.activeElement; return {id: e.id, tag: e.tagName, "
        "href: e.getAttribute('href') || '', visible: e.matches(':focus-visible')}; }"
    )


def tab_to(page: Page, want: dict[str, str], limit: int = 120) -> list[str]:
    """Press Tab until the focused element matches ``want``; returns the ids passed."""
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        seen.append(now["id"] or now["href"] or now["tag"])
        if all(str(now.get(k, "")).endswith(v) or now.get(k) == v for k, v in want.items()):
            assert now["visible"], f"focus on {now} is not visible"
            return seen
    raise AssertionError(f"never reached {want} by Tab; passed {seen}")


def keyboard_sign_in(page: Page, served: Served, auditor: str) -> None:
    page.goto(served.url + "/login")
    tab_to(page, {"id": "auditor"})
    page.keyboard.type(auditor)
    page.keyboard.press("Tab")
    page.keyboard.type(CREDENTIALS[auditor])
    page.keyboard.press("Enter")
    expect(page.locator("#auditor-id")).to_have_text(auditor)


def test_keyboard_only_denial_reaches_the_agent_with_its_reason(page: Page, served: Served) -> None:
    sid, bill, handle = escalate_payment(served.gate)
    served.service.sync()
    keyboard_sign_in(page, served, "bob")
    tab_to(page, {"href": f"/dialogues/{handle}"})
    page.keyboard.press("Enter")
    expect(page.locator("#dialogue-id")).to_have_text(handle)
    passed = tab_to(page, {"id": "deny-reason"}, limit=200)
    for control in ("challenge-kind", "challenge-obs", "challenge-text", "challenge-submit",
                    "approve-reason", "approve-submit"):  # fmt: skip
        assert control in passed, f"{control} is not reachable by Tab"
    page.keyboard.type("The IBAN differs from the one on file.")
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "deny-submit"
    page.keyboard.press("Enter")
    expect(page.locator("#outcome")).to_contain_text("denied")
    shot(page, "denied")
    resolution = served.service.resolution(handle, AGENT)
    assert resolution.status == "denied" and resolution.token is None
    assert "The IBAN differs from the one on file." in resolution.reason
    assert "bob" in resolution.reason
    assert served.bank.calls["send_money"] == 0
    assert sid and bill


def test_keyboard_only_challenge_approve_and_the_agent_and_log_pages(
    page: Page, served: Served
) -> None:
    """The whole approval path without a mouse: choose a challenge kind with a key, send it,
    see the answer arrive, approve; then reach the agent's tier chart and the log page and sign
    a checkpoint there, all by Tab and Enter."""
    sid, bill, handle = escalate_payment(served.gate)
    served.service.sync()
    keyboard_sign_in(page, served, "alice")
    tab_to(page, {"href": f"/dialogues/{handle}"})
    page.keyboard.press("Enter")
    expect(page.locator("#dialogue-id")).to_have_text(handle)

    tab_to(page, {"id": "challenge-kind"}, limit=200)
    page.keyboard.press("r")  # type-ahead: "Restate the goal in your own words"
    assert page.locator("#challenge-kind").input_value() == "restate_goal"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.type("Say it in one sentence.")
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "challenge-submit"
    page.keyboard.press("Enter")
    expect(page.locator("#waiting")).to_be_visible()
    [(_, turn)] = served.service.pending(AGENT)
    assert (
        turn.challenge.kind == "restate_goal" and turn.challenge.text == "Say it in one sentence."
    )
    served.service.answer(handle, AGENT, goal_answer(0, "bill-december-2023.txt"))
    expect(page.locator("#answer-1")).to_contain_text("Consistent with the chain.")

    tab_to(page, {"id": "approve-reason"}, limit=200)
    page.keyboard.type("The restated goal is the user's request.")
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "approve-submit"
    page.keyboard.press("Enter")
    expect(page.locator("#outcome")).to_contain_text("approved")
    resolution = served.service.resolution(handle, AGENT)
    assert resolution.status == "granted" and resolution.token is not None
    assert served.gate.execute(sid, resolution.token, payment_call(sid, bill)).ok

    tab_to(page, {"href": f"/agents/{AGENT}"}, limit=200)
    page.keyboard.press("Enter")
    expect(page.locator("#agent-tier")).to_contain_text("2")
    expect(page.locator("#chart-h + svg, section[aria-labelledby=chart-h] svg")).to_have_count(1)
    expect(page.locator("#history")).to_contain_text("override")
    shot(page, "agent")

    tab_to(page, {"href": "/log"})
    page.keyboard.press("Enter")
    expect(page).to_have_url(served.url + "/log")
    tab_to(page, {"id": "sign-checkpoint"}, limit=200)
    page.keyboard.press("Enter")
    expect(page.locator(".flash").first).to_contain_text("Signed a checkpoint")
    expect(page.locator("#browser-inclusion")).to_have_attribute("data-result", "verified")


def test_the_queue_refresh_keeps_the_keyboard_focus(page: Page, served: Served) -> None:
    """The queue reloads its rows every 5 s (htmx); a keyboard user's place must survive it."""
    _, _, handle = escalate_payment(served.gate)
    served.service.sync()
    keyboard_sign_in(page, served, "alice")
    tab_to(page, {"href": f"/dialogues/{handle}"})
    swapped = page.evaluate(
        """() => new Promise((done) => {
            document.body.addEventListener('htmx:afterSettle', (e) => done(e.target.id),
                                           {once: true});
            setTimeout(() => done('no refresh'), 8000);
        })"""
    )
    assert swapped == "queue"
    now = focused(page)
    assert now["href"].endswith(f"/dialogues/{handle}") and now["visible"], now
    page.keyboard.press("Enter")
    expect(page.locator("#dialogue-id")).to_have_text(handle)


UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea'))
  .filter(e => e.labels === null || e.labels.length === 0)
  .map(e => e.outerHTML)"""


def test_every_field_has_a_label_and_the_browser_checks_the_log(page: Page, served: Served) -> None:
    _, _, handle = escalate_payment(served.gate)
    page.goto(served.url + "/login")
    assert page.evaluate(UNLABELLED) == []
    sign_in(page, served)
    page.goto(f"{served.url}/dialogues/{handle}")
    assert page.locator("textarea, select, input:not([type=hidden])").count() >= 5
    assert page.evaluate(UNLABELLED) == []

    page.goto(served.url + "/log")
    page.get_by_role("button", name="Sign a checkpoint of the current log").click()
    escalate_payment(served.gate)  # the log grows between two checkpoints
    page.get_by_role("button", name="Sign a checkpoint of the current log").click()
    assert page.evaluate(UNLABELLED) == []
    expect(page.locator("#browser-inclusion")).to_have_attribute("data-result", "verified")
    consistency = page.locator("output[data-check=consistency]")
    expect(consistency).to_have_count(1)
    expect(consistency).to_have_attribute("data-result", "verified")
    shot(page, "log")
    tampered = page.evaluate(
        """async () => {
            const o = document.querySelector('#browser-inclusion').dataset;
            const v = window.thirdwayVerify, proof = o.proof.split(',').map(v.fromB64);
            const root = v.fromB64(o.root); root[0] ^= 1;
            const entry = v.fromB64(o.entry); entry[entry.length - 1] ^= 1;
            return [
              await v.inclusion(v.fromB64(o.entry), Number(o.index), Number(o.size), proof, root),
              await v.inclusion(entry, Number(o.index), Number(o.size), proof, v.fromB64(o.root)),
            ];
        }"""
    )
    assert tampered == [False, False]
    cross_check_proofs_in_the_browser(page, served.gate)


def cross_check_proofs_in_the_browser(page: Page, gate: Gatekeeper) -> None:
    """The browser's RFC 9162 verifiers accept the server's proofs for every entry and for
    prefixes of every shape (powers of two included), and refuse a proof for the wrong pair."""
    log = gate.log
    size = log.size()
    cases = []
    for index in range(size):
        proof = [b64(p) for p in log.inclusion_proof(index, size)]
        cases.append(["inc", b64(log.entry(index)), index, size, proof, b64(log.root(size))])
    for first in sorted({1, 2, 3, 4, 7, 8, 13, 16, size - 1}):
        if first < size:
            proof = [b64(p) for p in log.consistency_proof(first, size)]
            roots = [b64(log.root(first)), b64(log.root(size))]
            cases.append(["con", first, size, proof, *roots])
            cases.append(["con-wrong", first + 1, size, proof, *roots])
    results = page.evaluate(
        """async (cases) => {
            const v = window.thirdwayVerify, d = (xs) => xs.map(v.fromB64), out = [];
            for (const c of cases) {
              if (c[0] === 'inc') out.push(await v.inclusion(v.fromB64(c[1]), c[2], c[3], d(c[4]),
                                                             v.fromB64(c[5])));
              else out.push(await v.consistency(c[1], c[2], d(c[3]), v.fromB64(c[4]),
                                                v.fromB64(c[5])));
            }
            return out;
        }""",
        cases,
    )
    expected = [case[0] != "con-wrong" for case in cases]
    assert results == expected


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@pytest.mark.skipif(not os.environ.get("THIRDWAY_README_SHOT"), reason="README screenshot only")
def test_readme_screenshot(page: Page, served: Served) -> None:  # pragma: no cover - manual
    """``THIRDWAY_README_SHOT=1`` writes docs/console-dialogue.png (the full page, 1040 px wide,
    quantised to 128 colours)."""
    _, bill, handle = escalate_payment(served.gate)
    sign_in(page, served)
    served.service.challenge(handle, "alice", make_challenge("restate_goal"))
    served.service.answer(
        handle, AGENT,
        {"text": "Pay the December car-rental bill the user named.",
         "goal": {"obs": 0, "quote": "pay the bill 'bill-december-2023.txt'"}},
    )  # fmt: skip
    page.set_viewport_size({"width": 1040, "height": 900})
    page.goto(f"{served.url}/dialogues/{handle}")
    target = Path(__file__).resolve().parents[2] / "docs" / "console-dialogue.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    from PIL import Image  # only for this manual helper: a 128-colour PNG keeps the file small

    Image.open(target).quantize(colors=128).save(target, optimize=True)
    assert target.stat().st_size < 300_000
    assert bill
