"""Every verdict cites the charter it was given under, and the gateway acts only on a verdict
citing the charter it runs under (the charter is "hashed into every verdict and trust event")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gatekeeper_support import entries, fabricated_transfer, open_gate, types
from thirdway.charter import default_charter_sha256, load_charter, parse_charter
from thirdway.charter.load import default_charter_text
from thirdway.errors import InputError
from thirdway.gateway import Denied, Granted, InProcessVerifier, banking
from thirdway.gateway.factory import open_gateway
from thirdway.gateway.trust_link import attach_trust
from thirdway.gateway.verifiers import VerifierResult
from thirdway.protocol.models import Observation, Proposal, TrustEvent, Verdict
from thirdway.trust import Context, load_context
from thirdway.verify import verify

AGENT = "agent-7"
OTHER_TEXT = re.sub(
    r'(?m)^version: "[^"]+"$', 'version: "7.0-test"', default_charter_text().decode()
)
OTHER = parse_charter(OTHER_TEXT, "test charter")
assert OTHER.version == "7.0-test"


def other_context() -> Context:
    return Context(charter=OTHER, tiers=load_context().tiers)


def test_the_verifier_core_copies_the_charter_it_is_given() -> None:
    sid = "s-1"
    observations = [Observation(session=sid, index=0, channel="principal", content="pay")]
    proposal = Proposal.model_validate(banking.read_proposal(sid))
    assert verify(proposal, observations, banking.manifests()).charter_sha256 is None
    cited = verify(proposal, observations, banking.manifests(), charter_sha256=OTHER.sha256)
    assert cited.charter_sha256 == OTHER.sha256 != default_charter_sha256()
    assert default_charter_sha256() == load_charter().sha256


def test_a_granted_verdict_cites_the_gateways_charter(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path)
    with gate:
        assert gate.charter_sha256 == load_charter().sha256
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        granted = gate.propose(sid, banking.read_proposal(sid))
        assert isinstance(granted, Granted)
        assert granted.verdict.charter_sha256 == gate.charter_sha256
        logged = entries(gate)[granted.proposal_index + 1]
        assert logged.type == "verdict"
        assert logged.payload["verdict"]["charter_sha256"] == gate.charter_sha256  # type: ignore[index,call-overload]


class _Uncited(InProcessVerifier):
    """Judges as the real verifier does, but cites ``cited`` (None: no charter)."""

    name = "uncited"

    def __init__(self, cited: str | None) -> None:
        super().__init__(banking.manifests())
        self.cited = cited

    def __call__(
        self,
        proposal: Proposal,
        observations: Sequence[Observation],
        history: Sequence[Proposal],
        recorded_before: int,
    ) -> VerifierResult:
        verdict = verify(proposal, observations, self.manifests, self.policy, history,
                         recorded_before=recorded_before, charter_sha256=self.cited)  # fmt: skip
        assert verdict.verdict == "pass"  # a verdict the gateway would otherwise act on
        return VerifierResult(verdict)


@pytest.mark.parametrize(
    ("cited", "reason"),
    [
        (None, "the verdict cites no charter"),
        (OTHER.sha256, f"given under charter {OTHER.sha256[:16]}"),
    ],
)
def test_a_passing_verdict_under_no_or_another_charter_gets_no_token(
    tmp_path: Path, cited: str | None, reason: str
) -> None:
    gate, bank, _ = open_gate(tmp_path, verifier=_Uncited(cited))
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        denied = gate.propose(sid, banking.read_proposal(sid))
        assert isinstance(denied, Denied) and denied.verdict is None
        assert reason in denied.reason and not denied.retryable
        assert types(gate, denied.proposal_index or 0) == ["proposal", "verdict"]
        logged = entries(gate)[(denied.proposal_index or 0) + 1].payload
        assert str(logged["error"]).startswith("CharterMismatch")
        assert "capability" not in types(gate) and not bank.calls


def test_a_gatekeeper_under_another_charter_refuses_the_default_verifiers_verdicts(
    tmp_path: Path,
) -> None:
    gate, _, _ = open_gate(tmp_path, charter_sha256=OTHER.sha256, verifier=InProcessVerifier(
        banking.manifests()))  # fmt: skip
    with gate:
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        denied = gate.propose(sid, banking.read_proposal(sid))
        assert isinstance(denied, Denied) and "given under charter" in denied.reason
    with pytest.raises(InputError, match="charter SHA-256"):
        open_gate(tmp_path / "bad", charter_sha256="not-a-hash")


def test_trust_under_another_charter_than_the_gatekeepers_is_refused(tmp_path: Path) -> None:
    gate, _, _ = open_gate(tmp_path)
    with gate, pytest.raises(InputError, match="charter is not the one the gatekeeper"):
        attach_trust(gate, other_context())


def _sanction_and_verdict(gateway: Any) -> tuple[Verdict, TrustEvent]:
    gate = gateway.gate
    sid = gate.open_session(AGENT, banking.INSTRUCTION)
    denied = gate.propose(sid, fabricated_transfer(sid))
    assert isinstance(denied, Denied) and denied.verdict is not None
    trust = [e for e in entries(gate) if e.type == "trust"]
    assert len(trust) == 1
    return denied.verdict, TrustEvent.model_validate(trust[0].payload)


def test_the_gateway_factory_runs_verdicts_and_trust_under_one_charter(tmp_path: Path) -> None:
    bank = banking.Bank()
    with open_gateway(
        tmp_path, tools=bank.registry(), trust_context=other_context(), dialogue=False
    ) as gateway:
        assert gateway.gate.charter_sha256 == OTHER.sha256
        verdict, sanction = _sanction_and_verdict(gateway)
        assert verdict.charter_sha256 == sanction.charter_sha256 == OTHER.sha256


def test_the_enclaves_verdicts_cite_the_charter_it_measured(tmp_path: Path) -> None:
    bank = banking.Bank()
    with open_gateway(
        tmp_path,
        tools=bank.registry(),
        trust_context=other_context(),
        enclave=True,
        trust_first_use=True,
        dialogue=False,
    ) as gateway:
        assert gateway.enclave is not None
        attestation = gateway.enclave.client.attestation
        assert attestation is not None and attestation.components.charter == OTHER.sha256
        verdict, sanction = _sanction_and_verdict(gateway)
        assert verdict.charter_sha256 == sanction.charter_sha256 == OTHER.sha256
        signed = [e for e in entries(gateway.gate) if e.type == "verdict"][-1].payload
        assert signed["verifier"] == "thirdway.enclave" and "signed" in signed
