"""Reports: per-item records (JSONL), a machine-readable summary, markdown and PNG charts.

Layout of the output folder::

    report.md             the tables, with the command, model, datasets, timing and caveats
    results.json          every probe's summary (what went into the log) plus the run metadata
    summary.png           each probe's headline metric with its 95 % interval
    <probe>.png           every metric of one probe with its interval
    <probe>.jsonl         one record per model exchange: prompt, raw reply, parsed answer, labels

The markdown table is also what the README's "Behavioural forensics" section shows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from thirdway.probes.evidence import Judgement
from thirdway.probes.metrics import Estimate
from thirdway.probes.runner import ProbeResult, records_jsonl


@dataclass(frozen=True)
class Written:
    folder: Path
    report: Path
    results: Path
    charts: list[Path]
    records: list[Path]


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def interval(estimate: Estimate) -> str:
    if estimate.low is None or estimate.high is None:
        return "–"
    return f"[{estimate.low:.3f}, {estimate.high:.3f}]"


def parse_cell(result: ProbeResult) -> str:
    counts = result.statuses
    failed = counts["conflict"] + counts["unparseable"] + counts["empty"]
    if not any(counts.values()):
        return "n/a (rubric)"
    return f"{counts['ok']} ok / {failed} not"


def headline_table(results: Sequence[ProbeResult]) -> str:
    """One row per probe: the headline metric, its interval and what it rests on."""
    lines = [
        "| probe | metric | value | 95 % CI | n | replies parsed | dataset |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for result in results:
        estimate = result.metric(result.headline)
        lines.append(
            f"| {result.probe} | {estimate.metric} | {fmt(estimate.value)} | {interval(estimate)} "
            f"| {estimate.n} | {parse_cell(result)} | {result.dataset['name']} "
            f"v{result.dataset['version']} |"
        )
    return "\n".join(lines)


def metrics_table(result: ProbeResult) -> str:
    lines = [
        "| metric | value | 95 % CI | n | what it counts |",
        "|---|---:|---|---:|---|",
    ]
    for estimate in result.metrics:
        lines.append(
            f"| {estimate.metric} | {fmt(estimate.value)} | {interval(estimate)} | {estimate.n} "
            f"| {estimate.description} |"
        )
    return "\n".join(lines)


def markdown(
    results: Sequence[ProbeResult],
    meta: dict[str, JsonValue],
    judgements: dict[str, list[Judgement]],
) -> str:
    """The whole report as markdown."""
    parts = [
        "# Behavioural forensics report",
        "",
        f"- model: `{meta.get('model')}`",
        f"- command: `{meta.get('command')}`",
        f"- wall time: {meta.get('wall_seconds')} s on {meta.get('machine')}; "
        f"{meta.get('calls')} model calls, cache {meta.get('cache')}",
        f"- bootstrap: {meta.get('bootstrap')}",
        f"- evidence policy: {meta.get('policy')}",
        "",
        "## Headline metrics",
        "",
        headline_table(results),
        "",
        "![headline metrics](summary.png)",
        "",
    ]
    for result in results:
        dataset = result.dataset
        parts += [
            f"## {result.probe}",
            "",
            f"Dataset `{dataset['name']}` version {dataset['version']} "
            f"(sha256 `{dataset['sha256'][:16]}…`); {result.items} items, {result.calls} calls, "
            f"{result.seconds:.1f} s; constrained decoding: "
            f"{'yes' if result.constrained else 'no'}; "
            f"parse status: {json.dumps(result.statuses)}.",
            "",
            metrics_table(result),
            "",
        ]
        for judgement in judgements.get(result.probe, []):
            parts.append(
                f"- evidence policy, `{judgement.metric}`: **{judgement.outcome}** "
                f"({judgement.reason})"
            )
        for note in result.notes:
            parts.append(f"- note: {note}")
        parts += ["", f"![{result.probe}]({result.probe}.png)", ""]
    return "\n".join(parts)


def _bars(path: Path, labels: list[str], estimates: list[Estimate], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [e.value if e.value is not None else 0.0 for e in estimates]
    lows = [v - (e.low if e.low is not None else v) for v, e in zip(values, estimates, strict=True)]
    highs = [
        (e.high if e.high is not None else v) - v for v, e in zip(values, estimates, strict=True)
    ]
    colours = ["#8c8c8c" if e.value is None else "#3b6ea5" for e in estimates]
    height = 0.5 + 0.4 * len(labels)
    figure, axes = plt.subplots(figsize=(7.5, height), dpi=100)
    positions = list(range(len(labels)))[::-1]
    axes.barh(positions, values, xerr=[lows, highs], color=colours, capsize=3, height=0.6)
    for position, value, estimate in zip(positions, values, estimates, strict=True):
        text = "no items" if estimate.value is None else f"{value:.2f} (n={estimate.n})"
        axes.annotate(
            text,
            (max(value, 0.0) if estimate.high is None else max(estimate.high, value), position),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    axes.set_yticks(positions, labels, fontsize=8)
    lowest = min([0.0, *[e.low for e in estimates if e.low is not None]])
    left = -1.0 if lowest < 0 else 0.0
    axes.set_xlim(left, 1.22)  # room on the right for the value labels
    axes.set_xticks([left + step * (1.0 - left) / 4 for step in range(5)])
    axes.axvline(0.0, color="black", linewidth=0.6)
    axes.set_title(title, fontsize=9)
    axes.tick_params(axis="x", labelsize=8)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(
    results: Sequence[ProbeResult],
    folder: Path,
    meta: dict[str, JsonValue],
    judgements: dict[str, list[Judgement]],
) -> Written:
    """Write records, summary, markdown and charts under ``folder`` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for result in results:
        path = folder / f"{result.probe}.jsonl"
        path.write_bytes(records_jsonl(result.records))
        records.append(path)
    summary = {
        "run": meta,
        "probes": [
            {
                **result.summary(),
                "judgements": [j.as_json() for j in judgements.get(result.probe, [])],
            }
            for result in results
        ],
    }
    results_path = folder / "results.json"
    results_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    model = str(meta.get("model"))
    charts = [folder / "summary.png"]
    _bars(
        charts[0],
        [f"{r.probe}: {r.headline}" for r in results],
        [r.metric(r.headline) for r in results],
        f"headline metrics, 95 % bootstrap CI\n{model}",
    )
    for result in results:
        path = folder / f"{result.probe}.png"
        _bars(path, [e.metric for e in result.metrics], result.metrics, f"{result.probe}\n{model}")
        charts.append(path)
    report = folder / "report.md"
    report.write_text(markdown(results, meta, judgements) + "\n")
    return Written(folder, report, results_path, charts, records)
