"""The console under ``thirdway serve`` signs auditors in with their API keys: revoking the key
ends the console sessions it opened at once, as it ends its API access (not when the cookie
expires, hours later), before any form of theirs can approve, deny or challenge."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from thirdway.console.auth import RevocableAuditorAuth
from thirdway.service import ServiceConfig, create_app
from thirdway.service.auth import ConsoleAuth


def _signed_in(client: TestClient, auditor: str, key: str) -> str:
    page = client.post(
        "/console/login", data={"auditor": auditor, "secret": key, "next": "/console/"}
    )
    assert page.status_code == 200 and "Queue" in page.text, page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


def test_revoking_an_auditors_key_ends_their_console_session(tmp_path: Path) -> None:
    app = create_app(ServiceConfig(data_dir=tmp_path))
    keys = app.state.services.keys
    alice_key = keys.create("alice", "auditor")
    bob_key = keys.create("bob", "auditor")
    alice, bob = TestClient(app), TestClient(app)
    alice_token = _signed_in(alice, "alice", alice_key)
    _signed_in(bob, "bob", bob_key)

    keys.revoke(alice_key.split("_")[1])

    page = alice.get("/console/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/console/login")
    form = alice.post(
        "/console/dialogues/esc-x/approve",
        data={"reason": "ok", "csrf_token": alice_token},
        follow_redirects=False,
    )
    assert form.status_code == 303 and form.headers["location"].startswith("/console/login")
    # the session is gone for good: a new key for alice must sign in again
    assert alice.get("/console/", follow_redirects=False).status_code == 303
    new_key = keys.create("alice", "auditor")
    _signed_in(alice, "alice", new_key)
    assert alice.get("/console/").status_code == 200
    # bob's session, signed in with a key still active, is untouched
    assert bob.get("/console/", follow_redirects=False).status_code == 200


def test_the_console_check_holds_only_for_that_auditors_active_auditor_key(
    tmp_path: Path,
) -> None:
    app = create_app(ServiceConfig(data_dir=tmp_path))
    keys = app.state.services.keys
    auth = ConsoleAuth(keys)
    assert isinstance(auth, RevocableAuditorAuth)
    alice = keys.create("alice", "auditor")
    agent = keys.create("agent-1", "agent")
    alice_id = auth.credential_id(alice)
    assert alice_id == alice.split("_")[1] and alice_id not in ("", alice)
    assert auth.still_valid("alice", alice_id)
    assert not auth.still_valid("bob", alice_id)  # another auditor's key
    assert not auth.still_valid("agent-1", auth.credential_id(agent))  # not an auditor key
    assert not auth.still_valid("alice", "")
    assert not auth.still_valid("alice", "0" * 16)
    keys.revoke(alice_id)
    assert not auth.still_valid("alice", alice_id)
