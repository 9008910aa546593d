"""The issuer's memory of its own tokens (IssuedTokens): the issuer's verifier answers exactly as a
verifier that decodes every token does, only faster, and the memory stays bounded."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from thirdway.capability import CapabilityClaims, CapabilityError, CapabilityIssuer
from thirdway.capability import tokens as tokens_module
from thirdway.capability.tokens import CapabilityVerifier, IssuedTokens

NOW = 1_700_000_000.0
ARGS: dict[str, Any] = {"recipient": "UK12345678901234567890", "amount": 98.7}
ISSUER = CapabilityIssuer()
REMEMBERING = ISSUER.verifier()
DECODING = CapabilityVerifier(ISSUER.public_key)


def _claims(**changes: Any) -> CapabilityClaims:
    fields: dict[str, Any] = {
        "agent": "agent-1",
        "session": "s-1",
        "tool": "send_money",
        "args": ARGS,
        "proposal_index": 7,
        "verdict_sha256": "ab" * 32,
        "now": NOW,
    }
    fields.update(changes)
    return CapabilityClaims.for_call(**fields)


def _answer(verifier: CapabilityVerifier, token: str, **request: Any) -> object:
    try:
        return verifier.verify(token, **request)
    except CapabilityError as exc:
        return exc.reason, str(exc)


TOKEN = ISSUER.mint(_claims())


@settings(max_examples=150, deadline=None)
@given(
    tool=st.sampled_from(["send_money", "read_file"]),
    args=st.sampled_from([ARGS, {**ARGS, "amount": 98.71}, {"amount": 98.7}]),
    agent=st.sampled_from([None, "agent-1", "agent-2"]),
    session=st.sampled_from([None, "s-1", "s-2"]),
    age=st.integers(min_value=-5, max_value=120),
)
def test_the_issuers_verifier_answers_as_a_decoding_verifier(
    tool: str, args: dict[str, Any], agent: str | None, session: str | None, age: int
) -> None:
    request = {"tool": tool, "args": args, "agent": agent, "session": session, "now": NOW + age}
    assert REMEMBERING.issued is not None and REMEMBERING.issued.find(TOKEN) is not None
    assert _answer(REMEMBERING, TOKEN, **request) == _answer(DECODING, TOKEN, **request)


def test_the_issuers_verifier_skips_decoding_only_its_own_exact_tokens(monkeypatch) -> None:
    decoded: list[str] = []
    original = CapabilityVerifier._parse

    def counting(self: CapabilityVerifier, token: str):  # type: ignore[no-untyped-def]
        decoded.append(token)
        return original(self, token)

    monkeypatch.setattr(CapabilityVerifier, "_parse", counting)
    request = {"tool": "send_money", "args": ARGS, "now": NOW}
    assert REMEMBERING.verify(TOKEN, **request).nonce
    assert decoded == []
    altered = TOKEN[:-2] + ("A" if TOKEN[-2] != "A" else "B") + TOKEN[-1]
    assert isinstance(_answer(REMEMBERING, altered, **request), tuple)
    assert decoded == [altered]
    other = CapabilityIssuer(ISSUER.private_key_bytes()).mint(
        _claims()
    )  # same key, not minted here
    assert REMEMBERING.verify(other, **request).nonce
    assert decoded == [altered, other]


def test_biscuit_still_enforces_on_the_remembered_path(monkeypatch) -> None:
    monkeypatch.setattr(tokens_module, "_explain", lambda claims, request: None)
    for request in (
        {"tool": "read_file", "args": ARGS, "now": NOW},
        {"tool": "send_money", "args": {"amount": 1}, "now": NOW},
        {"tool": "send_money", "args": ARGS, "now": NOW + 61},
        {"tool": "send_money", "args": ARGS, "agent": "agent-2", "now": NOW},
    ):
        answer = _answer(REMEMBERING, TOKEN, **request)
        assert isinstance(answer, tuple) and answer[0] == "refused", request


def test_expired_tokens_are_forgotten_and_the_memory_is_bounded() -> None:
    issued = IssuedTokens(limit=3)
    issuer = CapabilityIssuer()
    issuer.issued = issued
    past = [issuer.mint(_claims(now=NOW)) for _ in range(3)]  # long expired by the wall clock
    assert len(issued) == 1  # each new one forgot the expired ones before it
    live = [issuer.mint(_claims(now=time.time())) for _ in range(5)]
    assert len(issued) == 3  # the limit: the last two were not remembered
    assert issued.find(past[-1]) is None
    assert [issued.find(token) is not None for token in live] == [True] * 3 + [False] * 2
    verifier = CapabilityVerifier(issuer.public_key, issued=issued)
    for token in live:  # remembered or not, each verifies
        assert verifier.verify(token, tool="send_money", args=ARGS, now=time.time())


def test_a_spent_token_is_forgotten_and_still_refused_as_spent() -> None:
    from thirdway.capability import MemorySpentSet
    from thirdway.capability.locked import LockedTool

    issuer = CapabilityIssuer()
    calls: list[float] = []

    def send_money(recipient: str, amount: float) -> str:
        calls.append(amount)
        return "sent"

    now = time.time()  # the memory forgets by the wall clock: live tokens
    tool = LockedTool(
        send_money, verifier=issuer.verifier(), spent_set=MemorySpentSet(), clock=lambda: now
    )
    token = issuer.mint(_claims(now=now))
    other = issuer.mint(_claims(now=now))
    assert len(issuer.issued) == 2
    assert tool.invoke(token, ARGS) == "sent"
    assert issuer.issued.find(token) is None  # spent: forgotten
    assert issuer.issued.find(other) is not None  # not spent: still remembered
    again = _answer_invoke(tool, token)
    assert again[0] == "spent"
    assert calls == [98.7]


def _answer_invoke(tool: Any, token: str) -> tuple[str, str]:
    try:
        tool.invoke(token, ARGS)
    except CapabilityError as exc:
        return exc.reason, str(exc)
    raise AssertionError("a spent token ran again")
