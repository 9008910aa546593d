"""Several gateway workers on one PostgreSQL database: one log, followed by every worker.

In-process tests give each worker its own :class:`Gatekeeper` (own connections, own writer, own
projection of the log) over the same database; the process tests run real worker processes
(``spawn``) concurrently and check the log, the sessions and the trust standings afterwards.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper_support import Clock, CountingBank, payment_call, read_bill
from postgres_support import gateway_worker, leading_gateway_worker, pg_url
from thirdway.errors import CapabilityError, GateError
from thirdway.gateway import Denied, FixedTier, Gatekeeper, Granted, banking
from thirdway.gateway.inputs import proposal_input
from thirdway.gateway.sessions import StaleRecordError
from thirdway.gateway.trust_link import TrustLedger, attach_trust
from thirdway.gateway.verifiers import Verifier
from thirdway.protocol.models import LogEntry

__all__ = ["pg_url"]

READ_CALL = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}


@pytest.fixture
def workers(pg_url: str, tmp_path: Path) -> Iterator[tuple[list[Gatekeeper], CountingBank]]:
    """Three gatekeepers (workers) over one database and one shared key folder."""
    bank = CountingBank()
    bank.files[banking.BILL_FILE] = banking.bill_text(banking.INJECTION)
    clock = Clock()
    gates = [
        Gatekeeper.open(
            tmp_path / "keys", db=pg_url, tools=bank.registry(), tiers=FixedTier(3), clock=clock
        )
        for _ in range(3)
    ]
    try:
        yield gates, bank
    finally:
        for gate in gates:
            gate.close()


def _entries(gate: Gatekeeper) -> list[tuple[int, LogEntry]]:
    return [
        (index, LogEntry.model_validate_json(data))
        for index, data in gate.log.entries_between(0, gate.log.size())
    ]


def test_a_session_opened_on_one_worker_is_continued_on_the_others(
    workers: tuple[list[Gatekeeper], CountingBank],
) -> None:
    (one, two, three), bank = workers
    sid = one.open_session("agent-7", banking.INSTRUCTION)
    bill = read_bill(two, sid)  # proposed and executed on worker 2
    assert [o.channel for o in three.observations(sid)] == ["principal", "call", "data"]
    payment = proposal_input(banking.payment_proposal(sid, bill))
    history = (proposal_input(banking.read_proposal(sid)),)  # worker 2's passing read
    # What worker 1 judges on its own record; its context hash covers observations and history.
    expected = one.verifier(payment, one.observations(sid), history, 3).verdict
    on_three = three.propose(sid, payment)
    assert isinstance(on_three, Granted)
    assert on_three.verdict == expected  # the whole record: observations and history
    on_one = one.propose(sid, payment)  # and worker 1 now sees worker 3's proposal too
    assert isinstance(on_one, Granted)
    assert (
        on_one.verdict
        == one.verifier(payment, one.observations(sid), (*history, payment), 3).verdict
    )
    injected_on_two = two.propose(sid, banking.injected_transfer_proposal(sid, bill))
    injected_on_one = one.propose(sid, banking.injected_transfer_proposal(sid, bill))
    assert isinstance(injected_on_two, Denied) and isinstance(injected_on_one, Denied)
    assert injected_on_two.verdict is not None and injected_on_one.verdict is not None
    assert injected_on_two.verdict.findings == injected_on_one.verdict.findings
    assert injected_on_two.verdict is not None and injected_on_two.verdict.verdict == "deny"
    assert one.execute(sid, on_three.token, payment_call()).ok
    assert bank.calls["send_money"] == 1
    assert one.observations(sid) == two.observations(sid) == three.observations(sid)
    assert one.log.verify().ok


def test_a_token_is_spent_once_across_workers(
    workers: tuple[list[Gatekeeper], CountingBank],
) -> None:
    (one, two, three), bank = workers
    sid = one.open_session("agent-7", banking.INSTRUCTION)
    granted = one.propose(sid, banking.read_proposal(sid))
    assert isinstance(granted, Granted)
    assert two.execute(sid, granted.token, READ_CALL).ok  # minted on 1, spent on 2
    for gate in (three, one, two):
        with pytest.raises(CapabilityError) as refused:
            gate.execute(sid, granted.token, READ_CALL)
        assert refused.value.reason == "spent"
    assert bank.calls["read_file"] == 1
    other = one.open_session("agent-8", banking.INSTRUCTION)
    again = one.propose(other, banking.read_proposal(other))
    assert isinstance(again, Granted)
    assert one.execute(other, again.token, READ_CALL).ok  # minted and spent on 1
    for gate in (two, three):
        with pytest.raises(CapabilityError, match="spent"):
            gate.execute(other, again.token, READ_CALL)
    refusals = [e for _, e in _entries(one) if e.type == "execution" and e.session == other]
    assert [e.payload.get("reason") for e in refusals[1:]] == ["spent", "spent"]


class _Interloper:
    """A verifier that, on its first call, has another worker record an observation in the
    session being decided (what a concurrent request on another worker does)."""

    def __init__(self, inner: Verifier, other: Gatekeeper) -> None:
        self.inner = inner
        self.manifests = inner.manifests
        self.name = inner.name
        self.other = other
        self.seen: list[int] = []

    def __call__(self, proposal: Any, observations: Any, history: Any, before: int) -> Any:
        self.seen.append(len(observations))
        if len(self.seen) == 1:
            self.other.record_observation(proposal.session, channel="principal", content="hi")
        return self.inner(proposal, observations, history, before)


def test_a_decision_on_a_record_another_worker_changed_is_redone(
    workers: tuple[list[Gatekeeper], CountingBank],
) -> None:
    (one, two, _), _ = workers
    sid = one.open_session("agent-7", banking.INSTRUCTION)
    bill = read_bill(one, sid)
    interloper = _Interloper(one.verifier, two)
    one.verifier = interloper
    outcome = one.propose(sid, banking.payment_proposal(sid, bill))
    assert isinstance(outcome, Granted)
    assert interloper.seen == [3, 4]  # verified again, with worker 2's observation
    proposals = [e for _, e in _entries(one) if e.type == "proposal" and e.session == sid]
    assert [p.payload["recorded_before"] for p in proposals] == [1, 4]  # the read, the payment
    assert one.log.verify().ok


def test_a_record_that_keeps_changing_gives_a_retryable_error(
    workers: tuple[list[Gatekeeper], CountingBank],
) -> None:
    (one, two, _), _ = workers
    sid = one.open_session("agent-7", banking.INSTRUCTION)

    class Always(_Interloper):
        def __call__(self, proposal: Any, observations: Any, history: Any, before: int) -> Any:
            self.other.record_observation(proposal.session, channel="principal", content="hi")
            return self.inner(proposal, observations, history, before)

    one.verifier = Always(one.verifier, two)
    size = one.log.size()
    with pytest.raises(StaleRecordError, match="kept changing"):
        one.propose(sid, banking.read_proposal(sid))
    assert isinstance(StaleRecordError("x"), GateError)
    written = [e.type for i, e in _entries(one) if i >= size]
    assert "proposal" not in written and set(written) == {"observation"}


def test_escalations_sessions_and_agents_follow_the_log(pg_url: str, tmp_path: Path) -> None:
    bank = CountingBank()
    gates = [
        Gatekeeper.open(tmp_path, db=pg_url, tools=bank.registry(), tiers=FixedTier(2))
        for _ in range(2)
    ]
    one, two = gates
    try:
        sid = one.open_session("agent-2", banking.INSTRUCTION)
        escalated = one.propose(sid, banking.payment_proposal(sid, read_bill(one, sid)))
        assert escalated.outcome == "escalated"
        handle = escalated.handle  # type: ignore[union-attr]
        assert two.open_escalations() == [handle]
        with pytest.raises(GateError, match="is an agent"):
            two.approve_escalation(handle, "agent-2", "me")
        granted = two.approve_escalation(handle, "auditor-a", "bill checked")
        assert isinstance(granted, Granted)
        assert one.open_escalations() == []
        assert one.execute(sid, granted.token, payment_call()).ok
        two.close_session(sid)
        with pytest.raises(GateError, match=r"unknown session|closed"):
            one.record_observation(sid, channel="principal", content="more")
        with pytest.raises(GateError, match="already exists"):
            one.open_session("agent-2", "again", session_id=sid)
    finally:
        for gate in gates:
            gate.close()
    with Gatekeeper.open(tmp_path, db=pg_url) as fresh:  # the same state from the log alone
        assert fresh.open_escalations() == []
        assert fresh.log.verify().ok


def test_one_process_log_needs_no_following(tmp_path: Path) -> None:
    with Gatekeeper.open(tmp_path) as gate:
        assert gate.catch_up() is None
    with pytest.raises(Exception, match="postgresql://"):
        Gatekeeper.open(tmp_path, db="sqlite:///x.db")
    with pytest.raises(Exception, match="needs db="):
        Gatekeeper.open(tmp_path, checkpoint_every_s=1.0)


# --------------------------------------------------------------------------- processes


def test_worker_processes_share_one_consistent_log(pg_url: str, tmp_path: Path) -> None:
    workers, agents, rounds = 3, 4, 2
    keys, exchange = tmp_path / "keys", tmp_path / "exchange"
    exchange.mkdir()
    with Gatekeeper.open(keys, db=pg_url):
        pass  # create the shared keys and the schema once, as a deployment does
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=gateway_worker,
            args=(pg_url, str(keys), str(exchange), w, workers, agents, rounds),
        )
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    assert [p.exitcode for p in processes] == [0] * workers
    results = [json.loads((exchange / f"result-{w}.json").read_text()) for w in range(workers)]

    with Gatekeeper.open(keys, db=pg_url) as gate:  # rebuilt from the log alone
        report = gate.log.verify()
        assert report.ok, report.problems
        indexed = gate.log.entries_between(0, gate.log.size())
        assert [i for i, _ in indexed] == list(range(gate.log.size()))  # no gaps, no duplicates
        deceptive = 0
        for result in results:
            for sid, seen in result["sessions"].items():
                assert gate.session_agent(sid) == seen["agent"]
                expected = 1 if seen["outcome"] != "granted" and "verdict" not in seen else 3
                assert len(gate.observations(sid)) == expected
                if seen.get("kind") in ("injected", "fabricated"):
                    assert seen["verdict"] == "deny" and seen["outcome"] == "denied"
                    deceptive += seen["kind"] == "fabricated"
            handoff = result["handoff"]
            assert handoff["verdict"] == "pass", handoff  # decided on the other worker's record
        trust = TrustLedger(gate.log)
        for agent in [f"agent-{a}" for a in range(agents)] + ["handoff-agent"]:
            state = trust.state(agent)
            assert state.consistent, (agent, state.rejections, state.discrepancies)
        offences = sum(len(trust.state(f"agent-{a}").offences) for a in range(agents))
        assert 0 < offences <= deceptive  # sanctions from every worker, none decided twice
    for token in range(workers):  # each hand-off token ran exactly once, on some worker
        spent = sum(token in result["spent"] for result in results)
        refused = [r for result in results for t, r in result["refused"] if t == token]
        assert spent == 1 and refused == ["spent"] * (workers - 1)


def _wait(condition: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_killing_the_leading_worker_hands_checkpoints_to_another(
    pg_url: str, tmp_path: Path
) -> None:
    keys, exchange = tmp_path / "keys", tmp_path / "exchange"
    exchange.mkdir()
    with Gatekeeper.open(keys, db=pg_url) as gate:
        origin_size = gate.log.size()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=leading_gateway_worker, args=(pg_url, str(keys), str(exchange), 0.1))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    try:
        _wait(lambda: list(exchange.glob("leader-*")), 30, "a leader")
        for stale in exchange.glob("leader-*"):  # a leader keeps rewriting its file; who now?
            stale.unlink()
        current = _wait(lambda: list(exchange.glob("leader-*")), 10, "the leader again")
        leader = int(current[0].name.split("-")[1])
        with Gatekeeper.open(keys, db=pg_url) as gate:
            before = _wait(lambda: gate.log.checkpoints(), 10, "a checkpoint")
            os.kill(leader, signal.SIGKILL)
            killed_at = gate.log.size()
            successor = _wait(
                lambda: [p for p in exchange.glob("leader-*") if p.name != f"leader-{leader}"],
                30,
                "a new leader",
            )
            assert int(successor[0].name.split("-")[1]) != leader

            def signed_after_kill() -> bool:
                notes = gate.log.checkpoints()
                return len(notes) > len(before) and int(notes[-1].splitlines()[1]) > killed_at

            _wait(signed_after_kill, 20, "a checkpoint from the new leader")
            for process in processes:  # stop signing, so that verify sees every checkpoint
                process.kill()
                process.join(timeout=10)
            report = gate.log.verify()
            assert report.ok, report.problems
            assert report.checkpoints_checked == len(gate.log.checkpoints())
            assert gate.log.size() > origin_size
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=10)


def test_open_gateway_takes_the_database(pg_url: str, tmp_path: Path) -> None:
    from thirdway.gateway.factory import open_gateway

    with open_gateway(tmp_path, db=pg_url, dialogue=False) as gateway:
        sid = gateway.gate.open_session("agent-1", banking.INSTRUCTION)
        assert gateway.gate.log.sequenced
        assert gateway.trust.tier("agent-1") >= 0
    with Gatekeeper.open(tmp_path, db=pg_url) as gate:
        attach_trust(gate)
        assert gate.session_agent(sid) == "agent-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capability.key", "log.key"]


def test_dialogues_are_opened_decided_and_forwarded_once_across_workers(
    pg_url: str, tmp_path: Path
) -> None:
    from thirdway.gateway.factory import open_gateway

    bank = CountingBank()
    gateways = [
        open_gateway(tmp_path, db=pg_url, tools=bank.registry(), dialogue=True) for _ in range(2)
    ]
    try:
        one, two = gateways
        handles = []
        for n in range(3):
            sid = one.gate.open_session(f"agent-{n}", banking.INSTRUCTION)
            escalated = one.gate.propose(
                sid, banking.payment_proposal(sid, read_bill(one.gate, sid))
            )
            assert escalated.outcome == "escalated", escalated
            handles.append((sid, escalated.handle))  # type: ignore[union-attr]

        def race(action: Any) -> None:
            barrier = threading.Barrier(len(gateways))

            def run(gateway: Any) -> None:
                barrier.wait()
                action(gateway)

            threads = [threading.Thread(target=run, args=(g,)) for g in gateways]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        race(lambda gateway: gateway.dialogue.sync())  # both want to open the dialogues
        sid, handle = handles[0]
        assert two.dialogue is not None and one.dialogue is not None
        two.dialogue.approve(handle, "auditor-a", "bill checked")  # forwarded by worker 2
        race(lambda gateway: gateway.dialogue.sync())  # both want to forward and record trust
        for gateway in gateways:
            assert gateway.dialogue is not None
            gateway.dialogue.sync()
            assert gateway.dialogue.store.rejected == []
        events = [
            (e.type, e.payload.get("event") or e.payload.get("kind"), e.payload.get("handle"))
            for _, e in _entries(one.gate)
        ]
        for _, each in handles:
            assert events.count(("dialogue", "open", each)) == 1
        assert events.count(("dialogue", "approval", handle)) == 1  # the gatekeeper's, once
        assert events.count(("trust", "override", None)) == 1  # a person's decision, once
        released = two.dialogue.resolution(handle, "agent-0")
        assert released.status == "granted" and released.token is not None
        assert one.dialogue.resolution(handle, "agent-0").status == "approved"
        assert one.gate.execute(sid, released.token, payment_call()).ok  # run on worker 1
        assert bank.calls["send_money"] == 1
        assert one.gate.log.verify().ok
    finally:
        for gateway in gateways:
            gateway.close()


def test_the_writer_builds_each_group_under_the_sequencer_lock(pg_url: str, tmp_path: Path) -> None:
    from thirdway.gateway.writer import LogWriter
    from thirdway.ledger.open import open_log

    with (
        open_log(pg_url, key_path=tmp_path / "log.key") as mine,
        open_log(pg_url, key_path=tmp_path / "log.key") as theirs,
    ):
        writer = LogWriter(mine, lambda _stage, _ns: None)
        assert writer.sequenced
        results: dict[int, Any] = {}
        barrier = threading.Barrier(8)

        stop = threading.Event()

        def other_worker() -> None:  # appends all along, through its own connections
            while not stop.is_set():
                theirs.append_batch([b"theirs", b"theirs"])

        def request(n: int) -> None:
            def build(first: int) -> list[bytes]:
                return [b"%d at %d" % (n, first), b"%d second" % n]

            def check(first: int) -> None:
                if n == 3:
                    raise StaleRecordError("request 3 is stale")

            barrier.wait()
            try:
                results[n] = writer.append_at(build, check=check)
            except StaleRecordError as exc:
                results[n] = exc

        other = threading.Thread(target=other_worker)
        other.start()
        threads = [threading.Thread(target=request, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        other.join()
        assert isinstance(results.pop(3), StaleRecordError)  # that caller only
        for n, written in results.items():
            assert len(written) == 2
            assert mine.entry(written.start) == b"%d at %d" % (n, written.start)  # true index
            assert mine.entry(written.start + 1) == b"%d second" % n
        size, own = writer.settled()
        assert sorted(i for r in own for i in r) == sorted(i for r in results.values() for i in r)
        assert size == mine.size() and mine.verify().ok
        stored = mine.entries_between(0, size)
        assert [i for i, _ in stored] == list(range(size))
        assert sum(data == b"theirs" for _, data in stored) >= 2
        assert not any(b"void" in data for _, data in stored)


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["open", "observe", "read", "pay", "close"]),
        st.integers(0, 2),  # the worker that serves the request
        st.integers(0, 3),  # which session (of those opened so far)
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=_OPS)
def test_every_worker_sees_the_record_one_worker_would_have(
    workers: tuple[list[Gatekeeper], CountingBank], ops: list[tuple[str, int, int]]
) -> None:
    """Requests of a few sessions spread over three workers in any order: each worker's view
    of every session is what one gatekeeper serving them all would hold (a sequential model),
    and a gatekeeper rebuilt from the log alone agrees."""
    gates, _ = workers
    model: dict[str, int] = {}  # open session -> observations recorded
    for op, worker, pick in ops:
        gate = gates[worker]
        sids = sorted(model)
        if op == "open" or not sids:
            sid = gate.open_session(f"agent-{pick}", banking.INSTRUCTION)
            model[sid] = 1
            continue
        sid = sids[pick % len(sids)]
        if op == "observe":
            assert gate.record_observation(sid, channel="principal", content="more") == model[sid]
            model[sid] += 1
        elif op == "read":
            granted = gate.propose(sid, banking.read_proposal(sid))
            assert isinstance(granted, Granted)
            runner = gates[(worker + 1) % len(gates)]
            assert runner.execute(sid, granted.token, READ_CALL).call_index == model[sid]
            model[sid] += 2
        elif op == "pay":
            outcome = gate.propose(sid, banking.payment_proposal(sid, model[sid] - 1))
            assert outcome.proposal_index is not None
        else:
            gate.close_session(sid)
            del model[sid]
        for other in gates:
            assert {s: len(other.observations(s)) for s in model} == model
    first = gates[0]
    fresh = Gatekeeper(first.log, issuer=first.issuer, spent_set=first.spent_set)
    for sid in model:
        assert fresh.observations(sid) == first.observations(sid)
