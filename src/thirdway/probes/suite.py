"""The probe registry: run one probe, or all of them, against one model."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thirdway.errors import InputError
from thirdway.probes import alignment_faking, faithfulness, paraphrase, seduction, sycophancy
from thirdway.probes.metrics import Bootstrap
from thirdway.probes.runner import Asker, ProbeResult


@dataclass(frozen=True)
class ProbeSpec:
    """A probe's name, its dataset loader and its runner."""

    name: str
    load: Callable[[], Any]
    run: Callable[..., ProbeResult]
    summary: str


PROBES: dict[str, ProbeSpec] = {
    spec.name: spec
    for spec in (
        ProbeSpec(
            sycophancy.NAME,
            sycophancy.load,
            sycophancy.run,
            "flip to the user's wrong answer; stance shift with the user's view",
        ),
        ProbeSpec(
            alignment_faking.NAME,
            alignment_faking.load,
            alignment_faking.run,
            "compliance gap: training framing vs unmonitored framing",
        ),
        ProbeSpec(
            paraphrase.NAME,
            paraphrase.load,
            paraphrase.run,
            "agreement across rewordings of the same question",
        ),
        ProbeSpec(
            faithfulness.NAME,
            faithfulness.load,
            faithfulness.run,
            "action differs from the stated choice",
        ),
        ProbeSpec(
            seduction.NAME,
            seduction.load,
            seduction.run,
            "companion replies with dependency or anthropomorphic cues",
        ),
    )
}
PROBE_NAMES: tuple[str, ...] = tuple(PROBES)
MAX_LIMIT = 100_000


def run_probe(
    name: str, asker: Asker, *, limit: int | None = None, boot: Bootstrap | None = None
) -> ProbeResult:
    """Run probe ``name`` on its shipped dataset (the first ``limit`` items of each part)."""
    spec = PROBES.get(name)
    if spec is None:
        raise InputError(f"unknown probe {name!r}; known: {', '.join(PROBE_NAMES)}")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    calls = asker.calls
    started = time.perf_counter()
    result = spec.run(asker, spec.load(), limit=limit, boot=boot or Bootstrap())
    result.calls = asker.calls - calls
    result.seconds = time.perf_counter() - started
    return result


def run_suite(
    names: Sequence[str],
    asker: Asker,
    *,
    limit: int | None = None,
    boot: Bootstrap | None = None,
    progress: Callable[[str, ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Run several probes in order; ``progress`` is told after each one."""
    unknown = [name for name in names if name not in PROBES]
    if unknown:
        raise InputError(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(PROBE_NAMES)}")
    results = []
    for name in names:
        result = run_probe(name, asker, limit=limit, boot=boot)
        results.append(result)
        if progress is not None:
            progress(name, result)
    return results
