"""What one service process holds: the key store, the gatekeeper and its dialogue service.

The gatekeeper takes each agent's tier from the dialogue service (the trust fold over the
log), and the dialogue service is built on the gatekeeper, so the tier source is a small
indirection filled in once both exist.

The verifier is the pure in-process one followed by the deterministic instruction-endorsement
judge (:mod:`thirdway.gateway.endorsement`): an action value that an injected instruction in
the record names is held for an auditor even when the principal wrote it too. The AgentDojo
replay measures exactly this pair, so the service stops what the README says it stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thirdway.dialogue import DialogueService, EpochKeeper
from thirdway.dialogue.auditors import AuditorRegistry, auto_config
from thirdway.gateway import DEFAULT_TIER, Gatekeeper, InProcessVerifier, ToolRegistry, banking
from thirdway.gateway.endorsement import InstructionEndorsementJudge, JudgedVerifier
from thirdway.protocol.manifest import ManifestSet
from thirdway.service.auth import KeyStore, SQLiteKeyStore
from thirdway.service.config import ServiceConfig

KEYS_NAME = "keys.db"


class _TrustTiers:
    """A ``TierSource`` reading the dialogue service's trust fold once it exists."""

    def __init__(self) -> None:
        self.service: DialogueService | None = None

    def tier(self, agent: str) -> int:
        return DEFAULT_TIER if self.service is None else self.service.tier(agent)


def hosted_tools(config: ServiceConfig) -> ToolRegistry:
    if config.tools == "banking":
        return banking.Bank().registry()
    return ToolRegistry()


def judged_verifier(tools: ToolRegistry) -> JudgedVerifier:
    """The service's verifier: in-process verification, then the endorsement judge (it may
    only make a verdict stricter: escalate, never pass what the verifier held)."""
    manifests = tools.merged_manifests(ManifestSet())
    return JudgedVerifier(InProcessVerifier(manifests), (InstructionEndorsementJudge(),))


def open_keys(config: ServiceConfig) -> KeyStore:
    """The API keys: in the PostgreSQL database when ``db`` is one (every worker reads them
    there), else ``keys.db`` in the data folder."""
    if config.postgres:
        from thirdway.service.keys_pg import PostgresKeyStore

        return PostgresKeyStore(config.db)
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SQLiteKeyStore(config.data_dir / KEYS_NAME)


@dataclass
class Services:
    config: ServiceConfig
    keys: KeyStore
    gate: Gatekeeper
    dialogues: DialogueService
    closed: bool = field(default=False)

    @classmethod
    def open(cls, config: ServiceConfig, tools: ToolRegistry | None = None) -> Services:
        config.check_supported()
        keys = open_keys(config)
        tiers = _TrustTiers()
        registry = tools if tools is not None else hosted_tools(config)
        try:
            # with PostgreSQL the log and spent-set live in the database (shared by every
            # worker; the elected one signs checkpoints) and data_dir keeps the signing keys
            gate = Gatekeeper.open(
                config.data_dir,
                db=config.db if config.postgres else None,
                checkpoint_every_s=config.checkpoint_seconds if config.postgres else None,
                shared=config.workers > 1 and not config.postgres,
                tools=registry,
                verifier=judged_verifier(registry),
                tiers=tiers,
                sessions_per_agent=config.sessions_per_agent,
                chars_per_agent=config.chars_per_agent,
            )
        except BaseException:
            keys.close()
            raise
        try:
            auditors = AuditorRegistry(
                gate.auditors,
                auto=auto_config(
                    enabled=config.auto_auditor, risks=list(config.auto_auditor_risks)
                ),
                critical_approvals=gate.required_approvals,
            )
            dialogues = DialogueService.for_gatekeeper(
                gate, auditors=auditors, epochs=EpochKeeper(config.data_dir / "epochs")
            )
        except BaseException:
            gate.close()
            keys.close()
            raise
        tiers.service = dialogues
        return cls(config, keys, gate, dialogues)

    def close(self) -> None:
        """Close the log and spent-set (everything answered is already durable) and the keys."""
        if self.closed:
            return
        self.closed = True
        self.gate.close()
        self.keys.close()
