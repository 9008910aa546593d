"""Shared pieces of the PostgreSQL tests: a fresh database per test on the local server, and the
functions worker processes run (module level, so that ``spawn`` can import them).

The tests need the local PostgreSQL (``.ci/run`` starts it). When it cannot be reached they fail
with a message saying how to start it: a skipped multi-worker test would hide a broken sequencer.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

ADMIN_DSN = os.environ.get("THIRDWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
START_HINT = (
    "PostgreSQL is not reachable at {dsn} ({error}); start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "(or set THIRDWAY_TEST_PG to a maintenance-database URL)"
)


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(START_HINT.format(dsn=ADMIN_DSN, error=str(exc).strip()), pytrace=False)


def _url_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database on the local server, dropped when the block ends."""
    name = "thirdway_test_" + secrets.token_hex(6)
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    with fresh_database() as url:
        yield url


# --- worker processes -------------------------------------------------------------------------


def append_worker(url: str, key_path: str, worker: int, batches: int, batch_size: int) -> None:
    """Append ``batches`` batches of distinct entries, each naming this worker and its batch."""
    from thirdway.ledger.open import open_log

    with open_log(url, key_path=key_path, create=False) as log:
        for batch in range(batches):
            items = [f"w{worker}-b{batch}-e{n}".encode() for n in range(batch_size)]
            indices = log.append_batch(items)
            assert len(indices) == batch_size


def spend_worker(url: str, nonces: list[str], start_at: float, out_path: str) -> None:
    """Spend every nonce (after a common start time) and record which ones this process won."""
    from thirdway.capability.spent_pg import PostgresSpentSet
    from thirdway.errors import CapabilityError

    spent = PostgresSpentSet(url)
    won = []
    time.sleep(max(0.0, start_at - time.time()))
    try:
        for nonce in nonces:
            try:
                spent.spend(nonce, int(time.time()) + 600, time.time())
                won.append(nonce)
            except CapabilityError as exc:
                assert exc.reason == "spent", exc
    finally:
        spent.close()
    Path(out_path).write_text("\n".join(won))


def leader_worker(url: str, key_path: str, record_path: str, interval_s: float) -> None:
    """Run a checkpoint leader candidate until killed; append ``pid size`` to ``record_path`` for
    every checkpoint this process signs."""
    from thirdway.errors import LogError
    from thirdway.ledger.leader import CheckpointLeader
    from thirdway.ledger.open import open_log

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with open_log(url, key_path=key_path, create=False) as log:
        leader = CheckpointLeader(url, log, interval_s=interval_s)
        while True:
            try:
                note = leader.step()
            except LogError:
                note = None
            if note is not None:
                size = note.splitlines()[1]
                with open(record_path, "a", encoding="ascii") as handle:
                    handle.write(f"{os.getpid()} {size}\n")
            time.sleep(interval_s)


# --- gateway worker processes ----------------------------------------------------------------


def _wait_file(path: Path, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return path.read_text()


def _publish(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (readers never see half of it)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def gateway_worker(
    url: str, data_dir: str, exchange: str, worker: int, workers: int, agents: int, rounds: int
) -> None:
    """One gateway worker process over the shared database, tiers from the trust ledger.

    For every agent and round: open a session, read the bill, then pay it (honest chain), obey
    the injection, or claim the principal asked for the attacker's transfer (a deception). Then
    the cross-worker part: open a hand-off session and publish a read token for it; continue
    the previous worker's hand-off session (propose there) and try to spend every worker's
    token. Results go to ``exchange/result-<worker>.json``."""
    import json

    from thirdway.errors import CapabilityError
    from thirdway.gateway import Gatekeeper, banking
    from thirdway.gateway.trust_link import attach_trust

    folder = Path(exchange)
    bank = banking.Bank()
    bank.files[banking.BILL_FILE] = banking.bill_text(banking.INJECTION)
    results: dict[str, object] = {"sessions": {}, "spent": [], "refused": [], "handoff": None}
    sessions: dict[str, object] = {}
    call = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}
    with Gatekeeper.open(data_dir, db=url, tools=bank.registry()) as gate:
        attach_trust(gate)
        for round_ in range(rounds):
            for agent in range(agents):
                sid = gate.open_session(f"agent-{agent}", banking.INSTRUCTION)
                read = gate.propose(sid, banking.read_proposal(sid))
                if read.outcome != "granted":  # sanctions elsewhere may have lowered the tier
                    sessions[sid] = {"agent": f"agent-{agent}", "outcome": read.outcome}
                    continue
                bill = gate.execute(sid, read.token, call).result_index
                kind = ("injected", "fabricated", "honest")[(worker + agent + round_) % 3]
                if kind == "injected":
                    proposal = banking.injected_transfer_proposal(sid, bill)
                elif kind == "fabricated":  # deception: a sanction for the agent
                    proposal = banking.fabricated_transfer_proposal(sid)
                else:
                    proposal = banking.payment_proposal(sid, bill)
                outcome = gate.propose(sid, proposal)
                sessions[sid] = {
                    "agent": f"agent-{agent}",
                    "outcome": outcome.outcome,
                    "verdict": outcome.verdict.verdict if outcome.verdict else None,
                    "kind": kind,
                }
        results["sessions"] = sessions
        # Hand-off: this worker's session, continued by the next worker.
        mine = gate.open_session("handoff-agent", banking.INSTRUCTION, session_id=f"h-{worker}")
        read = gate.propose(mine, banking.read_proposal(mine))
        assert read.outcome == "granted", read
        bill = gate.execute(mine, read.token, call).result_index
        token = gate.propose(mine, banking.read_proposal(mine))
        assert token.outcome == "granted", token
        _publish(folder / f"bill-{worker}", str(bill))
        _publish(folder / f"token-{worker}", json.dumps([mine, token.token]))
        previous = (worker - 1) % workers
        theirs = f"h-{previous}"
        their_bill = int(_wait_file(folder / f"bill-{previous}"))
        payment = gate.propose(theirs, banking.payment_proposal(theirs, their_bill))
        results["handoff"] = {
            "session": theirs,
            "verdict": payment.verdict.verdict if payment.verdict else None,
            "outcome": payment.outcome,
        }
        for other in range(workers):
            session, secret = json.loads(_wait_file(folder / f"token-{other}"))
            try:
                gate.execute(session, secret, call)
                results["spent"].append(other)  # type: ignore[attr-defined]
            except CapabilityError as exc:
                results["refused"].append([other, exc.reason])  # type: ignore[attr-defined]
    _publish(folder / f"result-{worker}.json", json.dumps(results))


def leading_gateway_worker(url: str, data_dir: str, exchange: str, interval_s: float) -> None:
    """A gateway worker that runs a checkpoint leader candidacy and keeps appending; writes
    ``leader-<pid>`` while it leads. Runs until killed."""
    from thirdway.gateway import Gatekeeper, banking

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    folder = Path(exchange)
    with Gatekeeper.open(data_dir, db=url, checkpoint_every_s=interval_s) as gate:
        sid = gate.open_session(f"agent-{os.getpid()}", banking.INSTRUCTION)
        leader = gate.checkpoint_leader
        assert leader is not None
        while True:
            gate.record_tool_result(sid, {"tool": "get_balance", "args": {}}, "1810.0")
            if leader.is_leader:
                _publish(folder / f"leader-{os.getpid()}", "1")
            time.sleep(interval_s / 2)
