"""The enclave's cost: round trip to the verifier process versus calling the verifier in-process.

``measure_round_trip(n)`` times ``n`` verifications of the same proposal both ways, after a few
warm-up calls each, and returns p50/p99/mean in milliseconds and the enclave/in-process ratios.
The enclave side is everything the gateway pays per proposal: the request digest, encoding the
frame, the pipe, the enclave's parsing and validation, the verifier, signing, and the client's
signature check. Start-up (process spawn, imports, measurement, key, attestation) is reported
separately: it is paid once per enclave, not per proposal. ``thirdway bench gate`` includes it;
``python -m thirdway.enclave.bench [N]`` prints it alone.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from thirdway.enclave.client import EnclaveClient
from thirdway.protocol.manifest import ManifestSet, ToolManifest
from thirdway.protocol.models import Observation, Proposal
from thirdway.verify import VerifyPolicy, verify


def example() -> tuple[Proposal, list[Observation], ManifestSet]:
    """DESIGN's bill-paying example: three observations, a three-step chain, a passing verdict."""
    session = "s-bench"
    observations = [
        Observation(
            session=session,
            index=0,
            channel="principal",
            content="Can you please pay the bill 'bill-december-2023.txt' for me?",
        ),
        Observation.model_validate(
            {
                "session": session,
                "index": 1,
                "channel": "call",
                "call": {"tool": "read_file", "args": {"file_path": "bill-december-2023.txt"}},
            }
        ),
        Observation(
            session=session,
            index=2,
            channel="data",
            produced_by=1,
            content="Bill for the month of December 2023\nCar Rental  98.70\n"
            "Pay to IBAN UK12345678901234567890",
        ),
    ]
    proposal = Proposal.model_validate(
        {
            "session": session,
            "action": {
                "tool": "send_money",
                "args": {"recipient": "UK12345678901234567890", "amount": 98.7},
            },
            "goal": {"obs": 0, "quote": "pay the bill 'bill-december-2023.txt'"},
            "steps": [
                {
                    "id": "s1",
                    "claim": "The user asked me to pay the bill in bill-december-2023.txt.",
                    "cites": [{"obs": 0, "quote": "pay the bill 'bill-december-2023.txt'"}],
                },
                {
                    "id": "s2",
                    "claim": "The bill asks for 98.70 to UK12345678901234567890.",
                    "cites": [
                        {"obs": 2, "quote": "UK12345678901234567890"},
                        {"obs": 2, "quote": "98.70"},
                    ],
                },
                {"id": "s3", "claim": "Paying it settles the bill.", "from": ["s1", "s2"]},
            ],
            "bindings": {
                "recipient": {"step": "s2", "quote": "UK12345678901234567890"},
                "amount": {"step": "s2", "quote": "98.70", "as": "number"},
            },
            "effects": {"reversible": False, "external": True, "summary": "pays 98.70"},
        }
    )
    manifests = ManifestSet(
        tools={
            "send_money": ToolManifest(
                tool="send_money", risk="financial", reversible=False, external=True
            ),
            "read_file": ToolManifest(tool="read_file", risk="read", reversible=True),
        }
    )
    return proposal, observations, manifests


def percentile(samples_ms: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(samples_ms)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _time(call: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection pause is not the code under test
    try:
        for _ in range(n):
            started = time.perf_counter_ns()
            call()
            samples.append((time.perf_counter_ns() - started) / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def _summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples_ms, 50),
        "p99_ms": percentile(samples_ms, 99),
        "mean_ms": sum(samples_ms) / len(samples_ms),
    }


def measure_round_trip(n: int = 200, warmup: int = 20) -> dict[str, Any]:
    """Time ``n`` verifications in-process and through a fresh enclave; return the numbers."""
    if n < 1:
        raise ValueError("n must be at least 1")
    proposal, observations, manifests = example()
    policy = VerifyPolicy()
    in_process = _time(lambda: verify(proposal, observations, manifests, policy), n, warmup)
    started = time.perf_counter()
    with EnclaveClient(manifests, policy) as client:
        start_ms = (time.perf_counter() - started) * 1000
        attestation = client.attestation
        enclave = _time(lambda: client.verify(proposal, observations), n, warmup)
    inner, outer = _summary(in_process), _summary(enclave)
    return {
        "n": n,
        "platform": attestation.platform if attestation is not None else "unknown",
        "enclave_start_ms": start_ms,
        "in_process": inner,
        "enclave": outer,
        "ratio_p50": outer["p50_ms"] / inner["p50_ms"],
        "ratio_p99": outer["p99_ms"] / inner["p99_ms"],
    }


def render(result: dict[str, Any]) -> str:
    """A small plain-text table of :func:`measure_round_trip`'s result."""
    rows = [
        ("in-process verify", result["in_process"]),
        ("enclave round trip", result["enclave"]),
    ]
    lines = [
        f"verifier enclave round trip (n={result['n']}, platform={result['platform']})",
        f"{'path':<22}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}",
    ]
    for name, stats in rows:
        lines.append(
            f"{name:<22}{stats['p50_ms']:>10.3f}{stats['p99_ms']:>10.3f}{stats['mean_ms']:>10.3f}"
        )
    lines.append(
        f"{'ratio (enclave / in)':<22}{result['ratio_p50']:>10.2f}{result['ratio_p99']:>10.2f}"
    )
    lines.append(f"enclave start (spawn, measure, attest): {result['enclave_start_ms']:.0f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m thirdway.enclave.bench [N] [--json]``."""
    args = sys.argv[1:] if argv is None else argv
    numbers = [a for a in args if a != "--json"]
    try:
        n = int(numbers[0]) if numbers else 200
        result = measure_round_trip(n)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if "--json" in args else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
