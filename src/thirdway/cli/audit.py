"""``thirdway audit …``: the verification dialogue from the command line.

``list`` and ``show`` only read the log. ``ask``, ``approve`` and ``deny`` record the auditor's
challenge or decision in the log (after the same checks as the console: no agent decides, no
decision without a reason, m of n, the state machine's rules); the gateway process that holds
the gatekeeper picks a recorded decision up from the log and releases or refuses the capability.
``epochs verify`` checks every spot-audit epoch against its committed secret (exit 1 when a
selection did not follow it); ``epochs start`` / ``end`` open and close one.

Everything works on a gatekeeper's data folder (``--data-dir``: ``log.db``, ``epochs/``) or on
a log file (``--log``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from thirdway.cli.common import console, fail, friendly_errors
from thirdway.dialogue import DialogueService, EpochKeeper, Review, make_challenge
from thirdway.dialogue.challenges import KINDS, LABELS
from thirdway.dialogue.model import Dialogue
from thirdway.errors import InputError
from thirdway.ledger.log import TransparencyLog
from thirdway.trust.text import iso

app = typer.Typer(
    help="Verification dialogues: list, show, ask, approve, deny; spot-audit epochs.",
    no_args_is_help=True,
)
epochs_app = typer.Typer(help="Spot-audit epochs: start, end, verify.", no_args_is_help=True)
app.add_typer(epochs_app, name="epochs")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="THIRDWAY_DATA_DIR", help="The gatekeeper's data folder (log.db)."
    ),
]
LogOption = Annotated[Path | None, typer.Option("--log", help="The log database file instead.")]
HandleArg = Annotated[str, typer.Argument(help="The dialogue id (e.g. esc-…, spot:12).")]
AuditorOption = Annotated[str, typer.Option("--auditor", help="Your auditor id.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (required).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def register(root: typer.Typer) -> None:
    """Attach ``thirdway audit …``."""
    root.add_typer(app, name="audit")


def _paths(data_dir: Path | None, log: Path | None) -> tuple[Path, Path | None]:
    if (data_dir is None) == (log is None):
        raise InputError("give the gatekeeper's --data-dir or a --log file (one of them)")
    if data_dir is not None:
        if not data_dir.is_dir():
            raise InputError(f"data folder not found: {data_dir}")
        return data_dir / "log.db", data_dir / "epochs"
    assert log is not None
    return log, None


def _service(data_dir: Path | None, log: Path | None, *, read_only: bool) -> DialogueService:
    db, epochs = _paths(data_dir, log)
    if not db.exists():
        raise InputError(f"log file not found: {db}")
    opened = TransparencyLog.open(db, create=False)
    keeper = EpochKeeper(epochs) if epochs is not None else None
    return DialogueService(opened, primary=False, read_only=read_only, epochs=keeper)


def _summary(dialogue: Dialogue, now: int) -> dict[str, Any]:
    return {
        "id": dialogue.id,
        "kind": dialogue.kind,
        "agent": dialogue.agent,
        "tool": dialogue.tool,
        "risk": dialogue.risk,
        "state": dialogue.state,
        "approvals": [vote.auditor for vote in dialogue.approvals],
        "required_approvals": dialogue.required_approvals,
        "age_seconds": max(0, now - dialogue.opened_at),
        "expires_at": dialogue.expires_at,
        "overdue": _overdue(dialogue, now),
    }


def _overdue(dialogue: Dialogue, now: int) -> bool:
    """Open in the log but past its deadline: ``list`` and ``show`` only read, so the expiry is
    recorded by the next process that writes (the gateway, or a CLI ``ask``/``approve``/``deny``,
    which is then refused)."""
    return dialogue.open and now >= dialogue.expires_at


OVERDUE = "past its deadline: it expires when the gateway next syncs; no decision can be recorded"


@app.command("list")
@friendly_errors
def list_(
    data_dir: DataDir = None,
    log: LogOption = None,
    everything: Annotated[bool, typer.Option("--all", help="Closed dialogues too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The dialogues waiting for an auditor (with --all, every dialogue), oldest first."""
    service = _service(data_dir, log, read_only=True)
    with service.log:
        now = service.now()
        rows = [_summary(d, now) for d in service.dialogues(open_only=not everything)]
        waiting = sorted(
            h
            for h, ref in service.store.escalations.items()
            if h not in service.store.dialogues and not ref.final and not ref.denied_by
        )
    if as_json:
        typer.echo(json.dumps({"dialogues": rows, "unopened_escalations": waiting}, indent=2))
        return
    table = Table("dialogue", "kind", "agent", "tool", "risk", "state", "approvals", "age")
    for row in rows:
        table.add_row(
            row["id"], row["kind"], row["agent"], row["tool"] or "—", row["risk"] or "—",
            row["state"] + (" (past its deadline)" if row["overdue"] else ""),
            f"{len(row['approvals'])} of {row['required_approvals']}",
            f"{row['age_seconds']} s",
        )  # fmt: skip
    console.print(table)
    for handle in waiting:
        console.print(f"escalation {handle}: not opened yet (the gateway opens it when it syncs)")


@app.command("show")
@friendly_errors
def show(
    handle: HandleArg, data_dir: DataDir = None, log: LogOption = None, as_json: JsonOption = False
) -> None:
    """A dialogue: the action, the chain's verdict, every challenge and answer, the votes."""
    service = _service(data_dir, log, read_only=True)
    with service.log:
        review = service.review(handle)
        now = service.now()
    if not as_json:
        _print_review(review, now)
        return
    document = {
        "dialogue": review.dialogue.model_dump(mode="json", by_alias=True),
        "proposal": (
            review.proposal.model_dump(mode="json", by_alias=True) if review.proposal else None
        ),
        "verdict": review.verdict.model_dump(mode="json") if review.verdict else None,
        "tier": review.trust.tier,
        "overdue": _overdue(review.dialogue, now),
    }
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _print_review(review: Review, now: int) -> None:
    d = review.dialogue
    console.print(
        f"[bold]{d.id}[/] ({d.kind}) — {d.state}; agent {d.agent} at tier {review.trust.tier}",
        highlight=False,
    )
    console.print(
        f"opened {iso(d.opened_at)}, expires {iso(d.expires_at)}; {d.reason}", highlight=False
    )
    if _overdue(d, now):
        console.print(f"[bold red]{OVERDUE}[/]", highlight=False)
    if review.proposal is not None:
        action = review.proposal.action
        console.print(
            f"action: {action.tool} {json.dumps(action.args, ensure_ascii=False)}", highlight=False
        )
        console.print(
            f"goal: observation {review.proposal.goal.obs}: “{review.proposal.goal.quote}”",
            highlight=False,
        )
        for step in review.proposal.steps:
            cites = "; ".join(f"obs {c.obs}: “{c.quote}”" for c in step.cites)
            console.print(
                f"  {step.id}: {step.claim}" + (f" [{cites}]" if cites else ""), highlight=False
            )
    if review.verdict is not None:
        console.print(f"verdict: {review.verdict.verdict}", highlight=False)
        for finding in review.verdict.findings:
            console.print(
                f"  {finding.code} ({finding.severity}): {finding.message}", highlight=False
            )
    for turn in d.turns:
        console.print(
            f"[bold]challenge {turn.number}[/] by {turn.asked_by}: {turn.challenge.question()}",
            highlight=False,
        )
        if turn.answer is None:
            console.print("  (waiting for the agent's answer)")
            continue
        console.print(f"  answer: {turn.answer.text}", highlight=False)
        findings = [*(turn.verdict.findings if turn.verdict else []), *turn.findings]
        for finding in findings:
            console.print(
                f"  {finding.code} ({finding.severity}): {finding.message}", highlight=False
            )
        if not findings:
            console.print("  consistent with the chain")
    for vote in d.approvals:
        console.print(
            f"approved by {vote.auditor} at {iso(vote.at)}: {vote.reason}", highlight=False
        )
    if d.denial is not None:
        console.print(
            f"denied by {d.denial.auditor} at {iso(d.denial.at)}: {d.denial.reason}",
            highlight=False,
        )


@app.command("ask")
@friendly_errors
def ask(
    handle: HandleArg,
    auditor: AuditorOption,
    kind: Annotated[str, typer.Option("--kind", help="One of: " + ", ".join(KINDS) + ".")],
    obs: Annotated[
        int | None, typer.Option("--obs", min=0, help="Counterfactual: observation k.")
    ] = None,
    text: Annotated[str, typer.Option("--text", help="Your words (required for free_text).")] = "",
    data_dir: DataDir = None,
    log: LogOption = None,
) -> None:
    """Put a challenge to the agent."""
    challenge = make_challenge(kind, obs=obs, text=text)
    service = _service(data_dir, log, read_only=False)
    with service.log:
        dialogue = service.challenge(handle, auditor, challenge)
    console.print(
        f"challenge {len(dialogue.turns)} ({LABELS[challenge.kind].lower()}) recorded in {handle}",
        highlight=False,
    )


def _decide(
    handle: str,
    auditor: str,
    reason: str,
    data_dir: Path | None,
    log: Path | None,
    *,
    approve: bool,
) -> None:
    service = _service(data_dir, log, read_only=False)
    with service.log:
        if approve:
            dialogue = service.approve(handle, auditor, reason)
        else:
            dialogue = service.deny(handle, auditor, reason)
    if dialogue.state == "approved":
        tail = (
            "; the gateway releases the capability when it next syncs"
            if dialogue.kind == "escalation"
            else ""
        )
        console.print(
            f"{handle} approved by {', '.join(dialogue.approvers)}{tail}", highlight=False
        )
    elif dialogue.state == "denied":
        console.print(f"{handle} denied by {auditor}; the agent is told: {reason}", highlight=False)
    else:
        console.print(
            f"approval recorded: {len(dialogue.approvals)} of {dialogue.required_approvals} "
            f"for {handle}",
            highlight=False,
        )


@app.command("approve")
@friendly_errors
def approve(
    handle: HandleArg,
    auditor: AuditorOption,
    reason: ReasonOption,
    data_dir: DataDir = None,
    log: LogOption = None,
) -> None:
    """Approve (one vote; critical actions need m distinct auditors)."""
    _decide(handle, auditor, reason, data_dir, log, approve=True)


@app.command("deny")
@friendly_errors
def deny(
    handle: HandleArg,
    auditor: AuditorOption,
    reason: ReasonOption,
    data_dir: DataDir = None,
    log: LogOption = None,
) -> None:
    """Deny: the dialogue closes and the agent is told the reason."""
    _decide(handle, auditor, reason, data_dir, log, approve=False)


@epochs_app.command("verify")
@friendly_errors
def epochs_verify(
    data_dir: DataDir = None, log: LogOption = None, as_json: JsonOption = False
) -> None:
    """Check every epoch: the revealed secret matches its commitment, and exactly the actions
    it selected were spot-audited. Exit 1 if not."""
    service = _service(data_dir, log, read_only=True)
    with service.log:
        reports = service.verify_epochs()
    if as_json:
        document = [
            {"epoch": r.epoch, "start_index": r.start_index, "end_index": r.end_index,
             "revealed": r.revealed, "candidates": r.candidates, "selected": r.selected,
             "audited": r.audited, "ok": r.ok, "problems": list(r.problems)}
            for r in reports
        ]  # fmt: skip
        typer.echo(json.dumps(document, indent=2))
    else:
        if not reports:
            console.print("no spot-audit epochs in this log")
        for r in reports:
            if not r.revealed and r.ok:
                console.print(
                    f"{r.epoch}: open (secret not revealed yet); {r.candidates} actions so far"
                )
                continue
            status = "[green]verified[/]" if r.ok else "[red]FAILED[/]"
            console.print(
                f"{r.epoch}: {status} — {r.candidates} actions granted, {r.selected} selected by "
                f"the secret, {r.audited} spot-audited",
                highlight=False,
            )
            for problem in r.problems:
                console.print(f"  {problem}", highlight=False, soft_wrap=True)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@epochs_app.command("start")
@friendly_errors
def epochs_start(
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", envvar="THIRDWAY_DATA_DIR", help="The gatekeeper's data folder."
        ),
    ],
) -> None:
    """Start an epoch: a fresh secret in <data-dir>/epochs, its SHA-256 committed to the log."""
    service = _service(data_dir, None, read_only=False)
    with service.log:
        epoch = service.start_epoch()
    console.print(f"started {epoch}", highlight=False)


@epochs_app.command("end")
@friendly_errors
def epochs_end(
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", envvar="THIRDWAY_DATA_DIR", help="The gatekeeper's data folder."
        ),
    ],
) -> None:
    """End the open epoch: reveal its secret, then verify it."""
    service = _service(data_dir, None, read_only=False)
    with service.log:
        report = service.end_epoch()
    if not report.ok:
        for problem in report.problems:
            console.print(f"  {problem}", highlight=False)
        raise fail(f"{report.epoch} ended but does not verify", code=1)
    console.print(
        f"ended {report.epoch}: {report.selected} of {report.candidates} actions selected; "
        "verified",
        highlight=False,
    )
