"""Health, identity, keys, trust and the verifier's attestation."""

from __future__ import annotations

import os

from fastapi import APIRouter

from thirdway.gateway import EnclaveVerifier
from thirdway.service import schemas
from thirdway.service.deps import Caller, Svc
from thirdway.service.errors import ERROR_RESPONSES, NotFound

router = APIRouter(tags=["service"], responses=ERROR_RESPONSES)


@router.get("/v1/health", response_model=schemas.Health)
def health(svc: Svc) -> schemas.Health:
    """Liveness (no key needed), and which worker process answered."""
    return schemas.Health(log_size=svc.gate.log.size(), worker=os.getpid())


@router.get("/v1/whoami", response_model=schemas.WhoAmI)
def whoami(who: Caller) -> schemas.WhoAmI:
    return schemas.WhoAmI(name=who.name, role=who.role)


@router.post("/v1/keys", response_model=schemas.KeyCreated, status_code=201)
def create_key(body: schemas.KeyRequest, svc: Svc, who: Caller) -> schemas.KeyCreated:
    """Create an API key (admins only). The key is in this answer and nowhere else."""
    who.require("admin")
    key = svc.keys.create(body.name, body.role)
    return schemas.KeyCreated(name=body.name, role=body.role, key=key)


@router.get("/v1/keys", response_model=list[schemas.KeyInfoBody])
def list_keys(svc: Svc, who: Caller) -> list[schemas.KeyInfoBody]:
    """Every key's id, principal, role and times (admins only; never a secret)."""
    who.require("admin")
    return [schemas.KeyInfoBody(**vars(info)) for info in svc.keys.listing()]


@router.delete("/v1/keys/{key_id}", response_model=schemas.KeyInfoBody)
def revoke_key(key_id: str, svc: Svc, who: Caller) -> schemas.KeyInfoBody:
    """Revoke a key (admins only): refused from the next request on."""
    who.require("admin")
    found = next((info for info in svc.keys.listing() if info.key_id == key_id), None)
    if found is None or found.revoked_at is not None:
        raise NotFound(f"no active key with id {key_id[:40]!r}")
    svc.keys.revoke(key_id)
    revoked = next(info for info in svc.keys.listing() if info.key_id == key_id)
    return schemas.KeyInfoBody(**vars(revoked))


@router.get("/v1/trust/{agent}", response_model=schemas.TrustBody)
def trust(agent: str, svc: Svc, who: Caller) -> schemas.TrustBody:
    """An agent's trust state and tier history, recomputed from the log."""
    if agent not in svc.dialogues.agents():
        raise NotFound(f"no agent {agent[:80]!r} in this log")
    state, points = svc.dialogues.trust(agent)
    tiers = [
        schemas.TierPointBody(index=p.index, at=p.at, kind=p.kind, tier=p.tier) for p in points
    ]
    return schemas.TrustBody(state=state, tiers=tiers)


@router.get("/v1/attestation", response_model=schemas.AttestationBody)
def attestation(svc: Svc, who: Caller) -> schemas.AttestationBody:
    """The verifier's attestation, when it runs in the enclave; the in-process verifier has none
    (verdicts are then as trustworthy as this process)."""
    verifier = svc.gate.verifier
    if isinstance(verifier, EnclaveVerifier):
        found = verifier.client.attestation
        return schemas.AttestationBody(
            verifier=verifier.name,
            attested=found is not None,
            attestation=found,
            note="signed verdicts from the isolated verifier process",
        )
    return schemas.AttestationBody(
        verifier=getattr(verifier, "name", type(verifier).__name__),
        attested=False,
        note="the verifier runs in the gateway process: no attestation",
    )
