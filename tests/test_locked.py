"""Locked tools run only with a valid, unspent token for exactly the call being made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from thirdway.capability import (
    CapabilityClaims,
    CapabilityError,
    CapabilityIssuer,
    LockedTool,
    MemorySpentSet,
    SQLiteSpentSet,
    locked,
    verify_capability,
)
from thirdway.errors import InputError

NOW = 1_700_000_000.0
ISSUER = CapabilityIssuer()


def mint(tool: str, args: dict[str, Any], *, agent: str = "agent-1", ttl: int = 60) -> str:
    claims = CapabilityClaims.for_call(
        agent=agent,
        session="s-1",
        tool=tool,
        args=args,
        proposal_index=7,
        verdict_sha256="cd" * 32,
        now=NOW,
        ttl_seconds=ttl,
    )
    return ISSUER.mint(claims)


class Bank:
    """A tool that records every time it actually runs."""

    def __init__(self) -> None:
        self.payments: list[tuple[str, float]] = []

    def send_money(self, recipient: str, amount: float) -> str:
        self.payments.append((recipient, amount))
        return f"paid {amount} to {recipient}"


def locked_bank(clock: float = NOW) -> tuple[Bank, LockedTool[str]]:
    bank = Bank()
    tool = LockedTool(
        bank.send_money,
        "send_money",
        verifier=ISSUER.verifier(),
        spent_set=MemorySpentSet(),
        clock=lambda: clock,
    )
    return bank, tool


def test_a_valid_token_runs_the_tool_once():
    bank, tool = locked_bank()
    token = mint("send_money", {"recipient": "UK12", "amount": 98.7})
    assert tool(token=token, recipient="UK12", amount=98.7) == "paid 98.7 to UK12"
    with pytest.raises(CapabilityError) as info:
        tool(token=token, recipient="UK12", amount=98.7)
    assert info.value.reason == "spent"
    assert bank.payments == [("UK12", 98.7)]


def test_a_token_for_a_pays_nobody_else_and_stays_usable():
    bank, tool = locked_bank()
    token = mint("send_money", {"recipient": "UK12", "amount": 98.7})
    with pytest.raises(CapabilityError) as info:
        tool(token=token, recipient="ATTACKER", amount=98.7)
    assert info.value.reason == "wrong_args"
    with pytest.raises(CapabilityError):
        tool(token=token, recipient="UK12", amount=9870)
    assert bank.payments == []
    tool(token=token, recipient="UK12", amount=98.7)  # a refusal does not spend the token
    assert bank.payments == [("UK12", 98.7)]


def test_expired_tokens_and_other_tools_are_refused():
    bank, late_tool = locked_bank(clock=NOW + 61)
    token = mint("send_money", {"recipient": "UK12", "amount": 1})
    with pytest.raises(CapabilityError, match="expired"):
        late_tool(token=token, recipient="UK12", amount=1)
    _, tool = locked_bank()
    other = mint("update_password", {"recipient": "UK12", "amount": 1})
    with pytest.raises(CapabilityError) as info:
        tool(token=other, recipient="UK12", amount=1)
    assert info.value.reason == "wrong_tool"
    assert bank.payments == []


def test_agent_and_session_are_checked_when_given():
    bank, tool = locked_bank()
    token = mint("send_money", {"recipient": "UK12", "amount": 1})
    args = {"recipient": "UK12", "amount": 1}
    with pytest.raises(CapabilityError, match="wrong_agent"):
        tool.invoke(token, args, agent="agent-2")
    with pytest.raises(CapabilityError, match="wrong_session"):
        tool.invoke(token, args, session="s-2")
    assert tool.invoke(token, args, agent="agent-1", session="s-1") == "paid 1 to UK12"
    assert len(bank.payments) == 1


def test_the_function_gets_the_canonical_arguments():
    received: list[dict[str, Any]] = []

    def record(**kwargs: Any) -> None:
        received.append(kwargs)

    tool = LockedTool(
        record, "record", verifier=ISSUER.verifier(), spent_set=MemorySpentSet(), clock=lambda: NOW
    )
    args = {"n": 1.0, "nested": {"b": [2.0], "a": "x"}}
    tool.invoke(mint("record", args), args)
    assert received == [{"n": 1, "nested": {"a": "x", "b": [2]}}]
    assert type(received[0]["n"]) is int


def test_arguments_the_function_cannot_take_are_refused_before_spending():
    bank, tool = locked_bank()
    args = {"recipient": "UK12", "amount": 1, "memo": "hi"}
    token = mint("send_money", args)
    with pytest.raises(InputError, match="does not accept"):
        tool.invoke(token, args)
    assert bank.payments == []
    assert not tool.spent_set.is_spent(
        tool.verifier.verify(token, tool="send_money", args=args, now=NOW).nonce
    )


def test_a_failing_tool_still_uses_up_its_token():
    def explode() -> None:
        raise RuntimeError("tool broke")

    tool = LockedTool(
        explode, verifier=ISSUER.verifier(), spent_set=MemorySpentSet(), clock=lambda: NOW
    )
    token = mint("explode", {})
    with pytest.raises(RuntimeError):
        tool(token=token)
    with pytest.raises(CapabilityError, match="spent"):
        tool(token=token)


def test_the_decorator_locks_a_function(tmp_path: Path):
    calls: list[str] = []
    spent = SQLiteSpentSet(tmp_path / "spent.db")

    @locked(verifier=ISSUER.verifier(), spent_set=spent, clock=lambda: NOW)
    def delete_file(file_id: str) -> str:
        """Delete a file."""
        calls.append(file_id)
        return "deleted"

    assert isinstance(delete_file, LockedTool)
    assert delete_file.name == "delete_file"
    assert delete_file.__doc__ == "Delete a file."
    with pytest.raises(TypeError):
        delete_file("13")  # type: ignore[call-arg]  # no token, no call
    with pytest.raises(CapabilityError, match="malformed"):
        delete_file(token="", file_id="13")
    assert delete_file(token=mint("delete_file", {"file_id": "13"}), file_id="13") == "deleted"
    assert calls == ["13"]
    spent.close()


_json_leaf = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=6)
_call_args = st.fixed_dictionaries(
    {"recipient": st.text(max_size=8), "amount": st.integers(0, 10**6) | st.floats(0, 1e6)}
)


def _foreign(args: dict[str, Any]) -> str:
    claims = CapabilityClaims.for_call(
        agent="x",
        session="s",
        tool="send_money",
        args=args,
        proposal_index=0,
        verdict_sha256="00" * 32,
        now=NOW,
    )
    return CapabilityIssuer().mint(claims)


@st.composite
def _token_and_call(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A call, and a token that is sometimes for exactly that call and often not."""
    args = draw(_call_args)
    token_args = draw(st.one_of(st.just(args), _call_args))
    token = draw(
        st.one_of(
            st.text(max_size=200),
            st.binary(max_size=100).map(lambda b: b.hex()),
            st.just(token_args).map(lambda a: mint("send_money", a)),
            st.just(token_args).map(lambda a: mint("send_money", a, ttl=1)),
            st.just(token_args).map(lambda a: mint("read_file", a)),
            st.just(token_args).map(_foreign),
        )
    )
    return token, args


@settings(max_examples=200, deadline=None)
@given(case=_token_and_call(), clock=st.sampled_from([NOW, NOW + 30, NOW + 60, NOW + 10**6]))
def test_the_tool_never_runs_without_a_valid_token(case, clock):
    """Over garbage, foreign, expired, other-tool and other-args tokens: the function runs only
    when the token is genuinely for this call, at most once."""
    token, args = case
    bank, tool = locked_bank(clock=clock)
    genuine = _is_genuine(token, args, clock)
    try:
        tool.invoke(token, args)
        ran = True
    except CapabilityError:
        ran = False
    assert ran == genuine
    assert len(bank.payments) == (1 if genuine else 0)
    with pytest.raises(CapabilityError):
        tool.invoke(token, args)
    assert len(bank.payments) == (1 if genuine else 0)
    event("genuine" if genuine else "refused")


def _is_genuine(token: str, args: dict[str, Any], now: float) -> bool:
    """Independent oracle: decode the claims with the issuer's key and compare by hand."""
    from biscuit_auth import Biscuit

    from thirdway.protocol import canonical_sha256

    try:
        source = Biscuit.from_base64(token, ISSUER.public_key).block_source(0)
    except Exception:
        return False
    facts = dict(line.rstrip(";").split("(", 1) for line in source.strip().splitlines())
    return (
        facts["tool"] == '"send_money")'
        and facts["args_sha256"] == f'"{canonical_sha256(args)}")'
        and int(facts["expires_at"].rstrip(")")) > now
    )


def test_verify_capability_serves_a_resource_in_another_process(tmp_path: Path):
    spent = SQLiteSpentSet(tmp_path / "spent.db")
    args = {"recipient": "UK12", "amount": 5}
    token = mint("send_money", args)
    key = ISSUER.public_key_text  # all the resource is configured with
    claims = verify_capability(token, "send_money", args, public_key=key, spent_set=spent, now=NOW)
    assert claims.proposal_index == 7
    with pytest.raises(CapabilityError, match="spent"):
        verify_capability(token, "send_money", args, public_key=key, spent_set=spent, now=NOW)
    fresh = mint("send_money", args)
    with pytest.raises(CapabilityError, match="wrong_args"):
        verify_capability(
            fresh, "send_money", {**args, "amount": 6}, public_key=key, spent_set=spent, now=NOW
        )
    with pytest.raises(CapabilityError, match="unknown_key"):
        verify_capability(
            fresh,
            "send_money",
            args,
            public_key=CapabilityIssuer().public_key_text,
            spent_set=spent,
            now=NOW,
        )
    assert (
        verify_capability(
            fresh, "send_money", args, public_key=ISSUER.public_key, spent_set=spent, now=NOW
        ).nonce
        != claims.nonce
    )
    spent.close()
