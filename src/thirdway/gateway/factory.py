"""One call that builds a fully wired gateway over a data folder: the gatekeeper, its trust
ledger, optionally the attested verifier enclave, and the verification dialogue service.

::

    with open_gateway(folder, tools=bank.registry(), enclave=True, trust_first_use=True) as gw:
        sid = gw.gate.open_session("agent-7", "pay my bill")
        outcome = gw.gate.propose(sid, proposal)     # tiers and sanctions from gw.trust
        gw.dialogue.sync()                           # dialogues opened, auto-approved, forwarded

Everything goes into the folder's one transparency log through the gatekeeper's writer; reopening
the folder rebuilds sessions, trust standings and dialogues from that log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from thirdway.dialogue import AuditorRegistry, DialogueService, auto_config
from thirdway.enclave.allowlist import MeasurementAllowList
from thirdway.enclave.attestation import expected_measurement
from thirdway.enclave.client import EnclaveClient, enclave_command
from thirdway.gateway.enclave_link import AttestedVerifier, allowlist_path
from thirdway.gateway.gatekeeper import Gatekeeper
from thirdway.gateway.tools import ToolRegistry
from thirdway.gateway.trust_link import TrustLedger, attach_trust
from thirdway.protocol.manifest import ManifestSet
from thirdway.trust import Context, load_context
from thirdway.verify import VerifyPolicy

FIRST_USE_REASON = "trusted on first use of this data folder (no allow-list existed)"


@dataclass
class Gateway:
    """The wired parts; :meth:`close` closes them in the right order."""

    gate: Gatekeeper
    trust: TrustLedger
    dialogue: DialogueService | None
    enclave: AttestedVerifier | None

    def close(self) -> None:
        try:
            if self.enclave is not None:
                self.enclave.close()
        finally:
            self.gate.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_gateway(
    data_dir: Path | str,
    *,
    db: str | None = None,
    tools: ToolRegistry | None = None,
    manifests: ManifestSet | None = None,
    verify_policy: VerifyPolicy | None = None,
    trust_context: Context | None = None,
    enclave: bool = False,
    enclave_package_root: Path | None = None,
    enclave_cmd: Sequence[str] | None = None,
    enclave_timeout_s: float = 2.0,
    trust_first_use: bool = False,
    operator: str = "installer",
    dialogue: bool = True,
    auto_auditor: bool = True,
    auditors: Iterable[str] | None = None,
    clock: Callable[[], float] = time.time,
    **gate_options: Any,
) -> Gateway:
    """Open (or create) the gateway over ``data_dir`` with everything wired.

    ``enclave``: verify in the attested enclave (started from ``enclave_package_root``'s copy of
    thirdway, or by ``enclave_cmd``), minting only while its measurement is operator-accepted;
    ``trust_first_use`` accepts the current measurement in ``operator``'s name when the folder
    has no allow-list yet (logged like any acceptance). ``dialogue``: run the dialogue service
    (with the automatic auditor unless ``auto_auditor=False``). ``db``: a ``postgresql://`` URL
    holding the log and the spent-set, shared by several workers (``data_dir`` then keeps only
    the shared keys; see :meth:`Gatekeeper.open`). ``gate_options`` go to :class:`Gatekeeper`.
    The gateway runs under ``trust_context``'s charter: its trust events and the verdicts it acts
    on (in-process or the enclave's) all cite that charter's hash."""
    folder = Path(data_dir)
    ctx = trust_context or load_context()
    registry = tools if tools is not None else ToolRegistry()
    merged = registry.merged_manifests(manifests or ManifestSet())
    policy = verify_policy or VerifyPolicy()
    verifier: AttestedVerifier | None = None
    if enclave:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        verifier = _enclave(
            folder, merged, policy, ctx, enclave_package_root, enclave_cmd, enclave_timeout_s
        )
        if trust_first_use and not allowlist_path(folder).exists():
            first = MeasurementAllowList()
            first.accept_measurement(verifier.expected, operator, FIRST_USE_REASON)
            first.save(allowlist_path(folder))
    gate = Gatekeeper.open(
        folder,
        db=db,
        tools=registry,
        manifests=merged,
        verifier=verifier,
        verify_policy=policy,
        charter_sha256=ctx.charter_sha256,
        charter_version=ctx.charter.version,
        auditors=auditors,
        clock=clock,
        **gate_options,
    )
    try:
        ledger = attach_trust(gate, ctx)
        if verifier is not None:
            verifier.bind(gate.append, gate.log)
            verifier.start()
        service = None
        if dialogue:
            registry_of_auditors = AuditorRegistry(
                gate.auditors,
                auto=auto_config(enabled=auto_auditor),
                critical_approvals=gate.required_approvals,
            )
            service = DialogueService.for_gatekeeper(
                gate, auditors=registry_of_auditors, ctx=ctx, clock=clock, verify_policy=policy
            )
    except BaseException:
        if verifier is not None:
            verifier.close()
        gate.close()
        raise
    return Gateway(gate=gate, trust=ledger, dialogue=service, enclave=verifier)


def _enclave(
    folder: Path,
    manifests: ManifestSet,
    policy: VerifyPolicy,
    ctx: Context,
    package_root: Path | None,
    command: Sequence[str] | None,
    timeout_s: float,
) -> AttestedVerifier:
    client = EnclaveClient(
        manifests,
        policy,
        ctx.charter,
        timeout_s=timeout_s,
        command=command if command is not None else enclave_command(package_root),
    )
    expected = expected_measurement(manifests, policy, ctx.charter, package_root)
    return AttestedVerifier(
        client, expected=expected, allowlist=allowlist_path(folder), package_root=package_root
    )
