"""``thirdway probe …``: behavioural forensics against a model.

``thirdway probe sycophancy|alignment-faking|paraphrase|faithfulness|seduction|all`` runs the
probe(s) against the bundled SmolLM2 (``--model local``, the default), a ``.gguf`` file, or an
OpenAI-compatible endpoint (``--model-url URL --endpoint-model NAME``), writes the report
(markdown, PNG charts, ``results.json`` and one JSONL file of per-item records per probe) under
``--out``, and with ``--db`` appends each probe's result to a transparency log as a ``probe``
entry; with ``--agent ID`` (repeatable) the conclusive results also become trust evidence for the
agents that run on the probed model (see ``thirdway/probes/policy.yaml``).

Exit 0 when the probes ran (whatever they found); 2 with a one-line message otherwise.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import JsonValue
from rich.table import Table

from thirdway import __version__
from thirdway.cli.common import console, err_console, friendly_errors
from thirdway.errors import InputError
from thirdway.llm import CachedModel, ChatModel, open_model
from thirdway.probes.evidence import Judgement, Policy, judge, load_policy, record_results
from thirdway.probes.metrics import Bootstrap
from thirdway.probes.report import fmt, interval, write_report
from thirdway.probes.runner import Asker, ProbeResult
from thirdway.probes.suite import PROBE_NAMES, PROBES, run_suite
from thirdway.protocol import limits

app = typer.Typer(
    help="Behavioural forensics: probe a model for sycophancy, alignment faking, paraphrase "
    "inconsistency, unfaithful actions and companion seduction.",
    no_args_is_help=True,
)

DEFAULT_OUT = Path("artifacts") / "probes"

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", help="'local' (the bundled SmolLM2-135M-Instruct, default) or a .gguf file."
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--model-url", help="Base URL of an OpenAI-compatible API, e.g. http://h:8000/v1."
    ),
]
EndpointModelOption = Annotated[
    str | None,
    typer.Option("--endpoint-model", help="The model to ask the --model-url endpoint for."),
]
LimitOption = Annotated[
    int | None,
    typer.Option("--limit", min=1, max=100_000, help="Only the first N items of each part."),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Report folder (default: artifacts/probes/<model>)."),
]
DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Transparency log (SQLite) to append the results to."),
]
AgentOption = Annotated[
    list[str] | None,
    typer.Option(
        "--agent", help="An agent running on this model: results become its trust evidence."
    ),
]
FreeTextOption = Annotated[
    bool,
    typer.Option("--free-text", help="Do not constrain choices to a JSON schema; parse free text."),
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the model response cache.")
]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Bootstrap seed.")]
ResamplesOption = Annotated[
    int, typer.Option("--resamples", min=100, max=100_000, help="Bootstrap resamples.")
]
AtOption = Annotated[
    int | None,
    typer.Option("--at", min=0, help="Unix time recorded in trust events (default: the clock)."),
]
PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="Evidence policy YAML (default: the shipped policy)."),
]


def register(root: typer.Typer) -> None:
    """Attach ``thirdway probe …``."""
    root.add_typer(app, name="probe")


def _open(model: str | None, url: str | None, endpoint_model: str | None, cache: bool) -> ChatModel:
    if model is not None and url is not None:
        raise InputError("give either --model or --model-url, not both")
    if url is None and endpoint_model is not None:
        raise InputError("--endpoint-model needs --model-url")
    spec = url if url is not None else (model or "local")
    return open_model(spec, endpoint_model=endpoint_model, cache=cache)


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-")[:80] or "model"


def _check_agents(agents: list[str], db: Path | None) -> None:
    if agents and db is None:
        raise InputError("--agent needs --db: trust evidence is recorded in a log")
    for agent in agents:
        if not agent or len(agent) > limits.MAX_ID_CHARS or re.search(r"[\x00-\x1f]", agent):
            raise InputError(
                f"agent id {agent[:40]!r} must be 1 to {limits.MAX_ID_CHARS} characters "
                "without control characters"
            )


def _command_line(names: list[str], **options: object) -> str:
    words = ["thirdway", "probe", "all" if list(names) == list(PROBE_NAMES) else names[0]]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [part for item in value for part in (flag, str(item))]
        else:
            words += [flag, str(value)]
    return " ".join(words)


def _load() -> str:
    """The 1-minute load average: on a shared machine it explains the timing."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"


def _machine(load_at_start: str) -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load_at_start} at start and "
        f"{_load()} at the end, Python {platform.python_version()}"
    )


def _print(results: list[ProbeResult], judgements: dict[str, list[Judgement]]) -> None:
    table = Table(title="behavioural forensics", show_lines=False)
    for column in ("probe", "metric", "value", "95% CI", "n", "policy"):
        table.add_column(column)
    for result in results:
        verdicts = {j.metric.split(".", 1)[1]: j.outcome for j in judgements[result.probe]}
        for estimate in result.metrics:
            table.add_row(
                result.probe if estimate.metric == result.headline else "",
                estimate.metric,
                fmt(estimate.value),
                interval(estimate),
                str(estimate.n),
                verdicts.get(estimate.metric, ""),
            )
    console.print(table)


def _run(
    names: list[str],
    *,
    model: str | None,
    model_url: str | None,
    endpoint_model: str | None,
    limit: int | None,
    out: Path | None,
    db: Path | None,
    agent: list[str] | None,
    free_text: bool,
    no_cache: bool,
    seed: int,
    resamples: int,
    at: int | None,
    policy_path: Path | None,
) -> None:
    agents = list(agent or [])
    _check_agents(agents, db)
    policy: Policy = load_policy(policy_path)
    boot = Bootstrap(resamples=resamples, seed=seed)
    # Everything that can be refused is checked before the model is asked anything.
    if out is not None:
        _check_folder(out)
    if db is not None:
        _preflight(db, agents, at)
    started = time.perf_counter()
    load_at_start = _load()
    chat = _open(model, model_url, endpoint_model, cache=not no_cache)
    asker = Asker(chat, constrained=not free_text)
    folder = out if out is not None else DEFAULT_OUT / _slug(chat.model_id)
    _check_folder(folder)

    def progress(name: str, result: ProbeResult) -> None:
        err_console.print(
            f"{name}: {result.items} items, {result.calls} calls, {result.seconds:.1f} s",
            highlight=False,
        )

    results = run_suite(names, asker, limit=limit, boot=boot, progress=progress)
    wall = time.perf_counter() - started
    cache: JsonValue = (
        f"{chat.hits} hits / {chat.misses} misses" if isinstance(chat, CachedModel) else "off"
    )
    meta: dict[str, JsonValue] = {
        "model": chat.model_id,
        "command": _command_line(
            names,
            model=model,
            model_url=model_url,
            endpoint_model=endpoint_model,
            limit=limit,
            out=out,
            db=db,
            agent=agents or None,
            free_text=free_text,
            no_cache=no_cache,
        ),
        "thirdway": __version__,
        "wall_seconds": round(wall, 1),
        "calls": asker.calls,
        "cache": cache,
        "machine": _machine(load_at_start),
        "limit": limit,
        "bootstrap": f"percentile, {boot.resamples} resamples, seed {boot.seed}",
        "policy": f"version {policy.spec.version} (sha256 {policy.sha256[:16]}…)",
        "finished_at": int(time.time()),
    }
    judgements = {result.probe: judge(result, policy) for result in results}
    written = write_report(results, folder, meta, judgements)
    _print(results, judgements)
    console.print(
        f"{asker.calls} model calls in {wall:.1f} s (cache {cache}); report: {written.report}",
        highlight=False,
    )
    if db is not None:
        _record(db, results, policy, agents, at, meta)


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} exists and is not a folder")


def _preflight(db: Path, agents: list[str], at: int | None) -> None:
    """Open (or create) the log and recompute the agents' standing from it."""
    from thirdway.ledger.log import TransparencyLog
    from thirdway.probes.evidence import check_log
    from thirdway.trust.config import load_context

    if not db.parent.is_dir():
        raise InputError(f"--db {db}: the folder {db.parent} does not exist")
    with TransparencyLog.open(db) as log:
        check_log(log, agents, load_context(), int(time.time()) if at is None else at)


def _record(
    db: Path,
    results: list[ProbeResult],
    policy: Policy,
    agents: list[str],
    at: int | None,
    meta: dict[str, JsonValue],
) -> None:
    from thirdway.ledger.log import TransparencyLog
    from thirdway.trust.config import load_context

    ctx = load_context()
    when = int(time.time()) if at is None else at
    with TransparencyLog.open(db) as log:
        recorded = record_results(
            log, results, policy=policy, agents=agents, ctx=ctx, at=when, meta=meta
        )
    entries = ", ".join(f"{name} at {index}" for name, index in recorded.probe_entries.items())
    console.print(f"log {db}: probe entries {entries}", highlight=False)
    for agent_id, metric, passed, index in recorded.trust_events:
        verdict = "passed" if passed else "failed"
        console.print(f"  trust event {index}: {agent_id} {metric} {verdict}", highlight=False)


def _make(names: list[str], doc: str) -> Callable[..., None]:
    @friendly_errors
    def command(
        model: ModelOption = None,
        model_url: UrlOption = None,
        endpoint_model: EndpointModelOption = None,
        limit: LimitOption = None,
        out: OutOption = None,
        db: DbOption = None,
        agent: AgentOption = None,
        free_text: FreeTextOption = False,
        no_cache: NoCacheOption = False,
        seed: SeedOption = 0,
        resamples: ResamplesOption = 1000,
        at: AtOption = None,
        policy: PolicyOption = None,
    ) -> None:
        _run(
            names,
            model=model,
            model_url=model_url,
            endpoint_model=endpoint_model,
            limit=limit,
            out=out,
            db=db,
            agent=agent,
            free_text=free_text,
            no_cache=no_cache,
            seed=seed,
            resamples=resamples,
            at=at,
            policy_path=policy,
        )

    command.__doc__ = doc
    return command


for _name, _spec in PROBES.items():
    app.command(_name)(_make([_name], f"Run the {_name} probe: {_spec.summary}."))
app.command("all")(_make(list(PROBE_NAMES), "Run every probe and write one report."))
