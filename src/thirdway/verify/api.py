"""``verify``: the one entry point of the deterministic reasoning-chain verifier.

The verdict is a pure function of its inputs: no I/O, no clock, no randomness, and z3 bounded by
a deterministic resource count. Its canonical bytes (RFC 8785) are therefore reproducible by
anyone holding the log: ``proposal_sha256`` names the proposal judged, ``context_sha256``
everything else it was judged against (see :func:`context_digest`), and ``charter_sha256`` the
charter it was given under (passed in by the caller: the core reads no charter file).

Combining findings: any ``incomplete`` or ``deception`` finding denies; otherwise the strictest
decision asked by a ``policy`` finding wins (escalate or deny); no findings pass. The verifier
does not raise on any proposal, validated or not: limits it would exceed become ``too_large``
and any internal failure becomes ``verifier_error`` — both deny (fail closed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from thirdway.protocol.canonical import canonical_sha256, orjson_canonical, sha256_hex
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Decision, Finding, Observation, Proposal, Verdict
from thirdway.verify import (
    attribution,
    binding,
    codes,
    consistency,
    grounding,
    memo,
    provenance,
    screen,
    structure,
    toolcheck,
)
from thirdway.verify.context import Context
from thirdway.verify.issues import Issue, issue
from thirdway.verify.policy import VerifyPolicy
from thirdway.verify.record import Record, spans_of, text_of

STRICTNESS: dict[Decision, int] = {"pass": 0, "escalate": 1, "deny": 2}

CHECKS = (
    structure.check,
    grounding.check,
    attribution.check,
    binding.check,
    provenance.check,
    screen.check,
    toolcheck.check,
    consistency.check,
)
"""The seven checks of DESIGN (the manifest-level part of provenance in ``toolcheck``)."""


def verify(
    proposal: Proposal,
    observations: Sequence[Observation],
    manifests: ManifestSet,
    policy: VerifyPolicy | None = None,
    history: Sequence[Proposal] = (),
    *,
    recorded_before: int | None = None,
    charter_sha256: str | None = None,
) -> Verdict:
    """Judge ``proposal`` against the gateway's record.

    ``observations`` is the record (other sessions' observations may be included; they are never
    evidence). ``recorded_before`` is the proposal's position in its session: observations of
    the session with ``index >= recorded_before`` were recorded after it. ``None`` means every
    observation given precedes the proposal. ``history`` holds the agent's earlier *passing*
    proposals in the session, for contradiction checks. ``charter_sha256`` (the SHA-256 of the
    charter the caller runs under, :attr:`thirdway.charter.Charter.sha256`) is copied into the
    verdict; a gateway acts only on a verdict citing its own charter.
    """
    policy = policy or VerifyPolicy()
    try:
        issues = _issues(proposal, observations, manifests, policy, history, recorded_before)
    except Exception as exc:  # fail closed: a verifier bug must deny, never pass or crash
        issues = [
            issue(
                codes.VERIFIER_ERROR,
                f"the verifier could not examine this proposal ({type(exc).__name__}); denied",
            )
        ]
    findings = _findings(issues)
    return Verdict(
        session=_safe_id(getattr(proposal, "session", None)) or "unknown",
        verdict=decide(issues),
        findings=findings,
        proposal_sha256=_digest(lambda: model_sha256(proposal)),
        context_sha256=_digest(
            lambda: context_digest(observations, manifests, policy, history, recorded_before)
        ),
        charter_sha256=charter_sha256,
    )


def _issues(
    proposal: Proposal,
    observations: Sequence[Observation],
    manifests: ManifestSet,
    policy: VerifyPolicy,
    history: Sequence[Proposal],
    recorded_before: int | None,
) -> list[Issue]:
    record = Record(proposal.session, observations, recorded_before)
    ctx = Context(proposal, record, manifests, policy, history)
    too_large = structure.check_size(ctx)
    if too_large:
        return too_large
    issues = [
        issue(
            codes.INCONSISTENT_RECORD,
            f"the record holds several observations with index {index} in this session",
            evidence=[index],
        )
        for index in sorted(set(record.duplicates))
    ]
    for check in CHECKS:
        issues.extend(check(ctx))
    return issues


def prepare(observation: Observation) -> None:
    """Derive now what every verification derives from ``observation`` alone: its normalised
    text, its instruction spans (data only) and its hash for the context digest.

    These are pure functions of the observation, memoised per object
    (:mod:`thirdway.verify.memo`), and they are most of a first verification's cost (50 KB of
    tool output: about 1 ms of screening, normalising and hashing). A gateway that calls this
    when it records an observation, before any proposal cites it, takes that work off the
    proposal's path; a verdict is the same either way. Invalid input is left for ``verify`` to
    judge (this never raises on it).
    """
    try:
        text_of(observation)
        spans_of(observation)
        _hash(observation)
    except Exception:  # the verifier reports it (fail closed) when it meets it
        pass


def decide(issues: Sequence[Issue]) -> Decision:
    """The strictest decision any issue asks for; ``pass`` when there is none."""
    decision: Decision = "pass"
    for found in issues:
        if STRICTNESS[found.effective_decision] > STRICTNESS[decision]:
            decision = found.effective_decision
    return decision


def _findings(issues: Sequence[Issue]) -> list[Finding]:
    """Wire findings, without repeats, in a fixed order (code, step, evidence, message)."""
    unique = {
        (i.code, _safe_id(i.step) or "", i.evidence, _safe_text(i.message)): i for i in issues
    }
    return [
        Finding(
            code=code,
            severity=codes.SEVERITY[code],
            step=step or None,
            message=message,
            evidence=list(evidence),
        )
        for code, step, evidence, message in sorted(unique)
    ]


def context_digest(
    observations: Sequence[Observation],
    manifests: ManifestSet,
    policy: VerifyPolicy,
    history: Sequence[Proposal],
    recorded_before: int | None,
) -> str:
    """SHA-256 of everything besides the proposal that the verdict depends on.

    The RFC 8785 canonical JSON of ``{"observations": [h...], "manifests": h, "policy": h,
    "history": [h...], "recorded_before": n | null}``, each ``h`` the hex SHA-256 of that
    object's own canonical JSON (observations and history in the order given). Per-object hashes
    are cached, so a session's record is hashed once, not at every proposal.
    """
    document = {
        "observations": [_hash(o) for o in observations],
        "manifests": _hash(manifests),
        "policy": _hash(policy),
        "history": [_hash(p) for p in history],
        "recorded_before": recorded_before,
    }
    # Only ASCII keys, hex strings, an integer and null: here json.dumps with sorted keys and
    # no spaces writes exactly the RFC 8785 bytes, at C speed (a session has many observations).
    return sha256_hex(json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii"))


def _hash(model: object) -> str:
    return memo.derived(model, "sha256", lambda: model_sha256(model))


def observation_sha256(obs: Observation) -> str:
    """``canonical_sha256(obs)``, at C speed (see :func:`model_sha256`)."""
    return model_sha256(obs)


def model_sha256(model: object) -> str:
    """``canonical_sha256(model)``, at C speed where ``orjson`` writes the same bytes.

    The ``rfc8785`` package escapes strings with a Python callback per escaped character, so a
    session's worth of tool output takes milliseconds to hash through it. For a dump that
    :func:`~thirdway.protocol.canonical.orjson_ready` accepts (every observation and proposal
    seen in practice), ``orjson`` writes exactly the RFC 8785 bytes (50 KB of tool output: 5 µs,
    not 100); anything else, a lone surrogate included, takes the reference path, which names
    the problem.
    """
    if not isinstance(model, BaseModel):
        return canonical_sha256(model)
    fast = orjson_canonical(model.model_dump(mode="json", by_alias=True), owned=True)
    return sha256_hex(fast) if fast is not None else canonical_sha256(model)


def _digest(compute: Callable[[], str]) -> str | None:
    """A hash, or None when the input cannot be canonicalised (only without validation)."""
    try:
        return compute()
    except Exception:
        return None


def _safe_text(text: str) -> str:
    """Valid Unicode, bounded: messages quote input, which may not have been validated."""
    return text.encode("utf-8", "replace").decode("utf-8")[:4000]


def _safe_id(value: object) -> str | None:
    """A wire ``Id`` or None, so a malformed step id can never break the verdict itself."""
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        return None
    if any(ord(c) < 0x20 for c in value):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value
