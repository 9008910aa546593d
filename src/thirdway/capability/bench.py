"""Micro-benchmark of the capability and authorization steps of the gated path.

Run ``python -m thirdway.capability.bench [iterations]``. It prints p50 / p99 / mean latency per
step (microseconds) for: building claims, minting, verifying, spending (in memory, SQLite with
``synchronous=NORMAL`` and with the durable default ``FULL``), a whole locked-tool call, and the
Cedar authorization decision. The whole-gate benchmark (``thirdway bench gate``) lives with the
gatekeeper; this one shows what these building blocks cost on their own.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from thirdway.capability.locked import LockedTool
from thirdway.capability.spent import MemorySpentSet, SQLiteSpentSet
from thirdway.capability.tokens import CapabilityClaims, CapabilityIssuer

ARGS = {
    "recipient": "UK12345678901234567890",
    "amount": 98.7,
    "subject": "Car Rental",
    "date": "2022-01-01",
}
NOW = 1_700_000_000.0


def measure(step: Callable[[int], object], iterations: int) -> list[float]:
    """Latencies in microseconds of ``step(i)`` for i in range(iterations), after a warm-up."""
    for i in range(min(50, iterations)):
        step(-1 - i)
    samples = []
    for i in range(iterations):
        start = time.perf_counter_ns()
        step(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, statistics.fmean(ordered)


def _spender(store: SQLiteSpentSet, nonces: list[str]) -> Callable[[int], None]:
    return lambda i: store.spend(nonces[i], int(NOW) + 60, NOW)


def run(iterations: int) -> list[tuple[str, list[float]]]:
    from thirdway.policy.authorize import AuthorizationRequest, Authorizer

    issuer = CapabilityIssuer()
    verifier = issuer.verifier()

    def claims(_: int) -> CapabilityClaims:
        return CapabilityClaims.for_call(
            agent="agent-1",
            session="s-1",
            tool="send_money",
            args=ARGS,
            proposal_index=41,
            verdict_sha256="ab" * 32,
            now=NOW,
        )

    warm = iterations + 100
    tokens = [issuer.mint(claims(0)) for _ in range(warm)]
    nonces = [verifier.verify(t, tool="send_money", args=ARGS, now=NOW).nonce for t in tokens]
    results: list[tuple[str, list[float]]] = [
        ("claims (hash args, nonce)", measure(claims, iterations)),
        ("mint", measure(lambda i: issuer.mint(claims(i)), iterations)),
        (
            "verify",
            measure(
                lambda i: verifier.verify(tokens[i], tool="send_money", args=ARGS, now=NOW),
                iterations,
            ),
        ),
    ]
    memory = MemorySpentSet()
    results.append(
        (
            "spend (memory)",
            measure(lambda i: memory.spend(nonces[i], int(NOW) + 60, NOW), iterations),
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        for label, durable in (("spend (SQLite, NORMAL)", False), ("spend (SQLite, FULL)", True)):
            sqlite = SQLiteSpentSet(Path(tmp) / f"{durable}.db", durable=durable)
            results.append((label, measure(_spender(sqlite, nonces), iterations)))
            sqlite.close()
        store = SQLiteSpentSet(Path(tmp) / "tool.db")
        tool = LockedTool(
            lambda **kw: None, "send_money", verifier=verifier, spent_set=store, clock=lambda: NOW
        )
        fresh = [issuer.mint(claims(0)) for _ in range(warm)]
        results.append(
            (
                "locked call (verify+spend FULL+run)",
                measure(lambda i: tool.invoke(fresh[i], ARGS), iterations),
            )
        )
        store.close()

    request = AuthorizationRequest.build(
        agent="agent-1",
        tier=3,
        tool="send_money",
        risk="financial",
        reversible=False,
        external=True,
        verdict="pass",
        provenance_clean=True,
        amount=98.7,
    )
    default = Authorizer()
    results.append(
        ("cedar authorize (default set)", measure(lambda i: default.authorize(request), iterations))
    )
    results.append(
        ("cedar: parse+validate default set", measure(lambda i: Authorizer(), min(iterations, 200)))
    )
    return results


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    iterations = int(args[0]) if args else 2000
    print(f"{'step':<40} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}   (n={iterations})")
    for label, samples in run(iterations):
        p50, p99, mean = summary(samples)
        print(f"{label:<40} {p50:>9.1f} {p99:>9.1f} {mean:>9.1f}")


if __name__ == "__main__":
    main()
