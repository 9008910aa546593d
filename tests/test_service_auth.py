"""Properties of the API keys: only the exact key authenticates, whatever else is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thirdway.errors import InputError
from thirdway.service.auth import KeyStore, Principal, SQLiteKeyStore, bearer
from thirdway.service.errors import Forbidden, Unauthorized


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    keys = SQLiteKeyStore(tmp_path_factory.mktemp("keys") / "keys.db")
    return keys


@pytest.fixture(scope="module")
def key(store: KeyStore) -> str:
    return store.create("agent-1", "agent")


def test_the_exact_key_authenticates(store: KeyStore, key: str) -> None:
    assert store.authenticate(key) == Principal("agent-1", "agent", key.split("_")[1])


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), replacement=st.characters(codec="ascii"))
def test_any_one_character_change_is_refused(
    store: KeyStore, key: str, position: int, replacement: str
) -> None:
    index = position % len(key)
    changed = key[:index] + replacement + key[index + 1 :]
    if changed == key:
        return
    with pytest.raises(Unauthorized):
        store.authenticate(changed)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_arbitrary_text_never_authenticates(store: KeyStore, key: str, text: str) -> None:
    if text == key:
        return
    with pytest.raises(Unauthorized):
        store.authenticate(text)


def test_truncated_and_extended_keys_are_refused(store: KeyStore, key: str) -> None:
    for wrong in (key[:-1], key + "A", key.upper(), key.replace("tw_", "TW_"), "tw__", "tw_"):
        with pytest.raises(Unauthorized):
            store.authenticate(wrong)
    with pytest.raises(Unauthorized, match="required"):
        store.authenticate(None)


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer(None) is None


def test_keys_survive_a_restart_and_names_keep_their_role(tmp_path: Path) -> None:
    first = SQLiteKeyStore(tmp_path / "k.db")
    made = first.create("alice", "auditor")
    first.close()
    again = SQLiteKeyStore(tmp_path / "k.db")
    assert again.authenticate(made).role == "auditor"
    assert again.create("alice", "auditor") != made  # a second key for the same principal
    with pytest.raises(InputError, match="keeps one role"):
        again.create("alice", "admin")


def test_role_checks() -> None:
    agent = Principal("agent-1", "agent", "k")
    agent.require_agent("agent-1")
    with pytest.raises(Forbidden, match="cannot act for agent"):
        agent.require_agent("agent-2")
    with pytest.raises(Forbidden, match="auditor role"):
        agent.require("auditor")
    auditor = Principal("alice", "auditor", "k")
    with pytest.raises(Forbidden, match="agent role"):
        auditor.require_agent("alice")
