"""``thirdway verify``: verify a recorded proposal offline and print the verdict.

Anyone holding a proposal and the session's observations from the log can re-derive the verdict
the gateway's enclave signed: the output is the verdict's canonical JSON (RFC 8785), byte for
byte what the verifier produced. The verdict cites the charter given by ``--charter`` (default:
the packaged one), as the gateway's verdicts cite the charter it runs under. The exit status
says whether a verdict was *reached* (0, whatever the verdict is), not what it was; unreadable
input exits 2 with a one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError

from thirdway.charter import load_charter
from thirdway.cli.common import friendly_errors, read_input
from thirdway.errors import InputError, ThirdwayError
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Proposal
from thirdway.protocol.parse import MAX_DOCUMENT_BYTES, describe, parse_observations, parse_proposal
from thirdway.verify import verify

_HISTORY = TypeAdapter(list[Proposal])


def parse_history(data: bytes) -> list[Proposal]:
    """A JSON list of the agent's earlier passing proposals in the session."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(f"history is {len(data)} bytes; the limit is {MAX_DOCUMENT_BYTES}")
    try:
        return _HISTORY.validate_json(data)
    except ValidationError as exc:
        raise InputError(describe(exc, "history")) from None


def load_manifest_set(path: Path | None) -> ManifestSet:
    """Tool manifests from ``path`` (a YAML file or a folder of them), or the shipped ones."""
    try:
        from thirdway.policy.manifests import load_manifests
    except ImportError as exc:  # the loader ships with the policy package
        raise ThirdwayError(f"tool manifests cannot be loaded: {exc}") from None
    manifests: ManifestSet = load_manifests(path)
    return manifests


@friendly_errors
def verify_command(
    proposal: Annotated[
        Path, typer.Option("--proposal", help="The proposal (JSON, thirdway/1); '-' for stdin.")
    ],
    observations: Annotated[
        Path, typer.Option("--observations", help="The session's observations (a JSON list).")
    ],
    manifests: Annotated[
        Path | None,
        typer.Option(
            "--manifests", help="Tool manifests (YAML file or folder); default: the AgentDojo set."
        ),
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option("--history", help="Earlier passing proposals of the session (a JSON list)."),
    ] = None,
    recorded_before: Annotated[
        int | None,
        typer.Option(
            "--recorded-before",
            min=0,
            help="Index of the first observation recorded after the proposal "
            "(default: all given observations precede it).",
        ),
    ] = None,
    charter: Annotated[
        Path | None,
        typer.Option(
            "--charter", help="The charter the verdict is given under (default: the packaged one)."
        ),
    ] = None,
) -> None:
    """Verify a recorded proposal against its session's observations; print the verdict."""
    parsed_proposal = parse_proposal(read_input(proposal, "proposal"))
    parsed_observations = parse_observations(read_input(observations, "observations"))
    parsed_history = parse_history(read_input(history, "history")) if history else []
    verdict = verify(
        parsed_proposal,
        parsed_observations,
        load_manifest_set(manifests),
        history=parsed_history,
        recorded_before=recorded_before,
        charter_sha256=load_charter(charter).sha256,
    )
    typer.echo(canonical_json(verdict).decode("utf-8"))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Attach ``thirdway verify`` (``bench verify`` is registered with the benchmarks)."""
    app.command("verify")(verify_command)
