"""``thirdway serve --workers 2`` as an operator runs it: two worker processes over one
PostgreSQL database, or one SQLite folder, agents acting through both, SIGTERM while they act.

What must hold: every answer an agent received (a grant, an execution) is in the shared log
at the index the answer named, with the entry type and session it claims; the log verifies; a
token is spent once across workers; the supervisor and its workers exit cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from postgres_support import pg_url
from thirdway.gateway import Gatekeeper, banking
from thirdway.gateway.gatekeeper import LOG_KEY_NAME, LOG_NAME
from thirdway.ledger.log import TransparencyLog
from thirdway.ledger.open import open_log
from thirdway.service import ServiceConfig
from thirdway.service.state import open_keys

__all__ = ["pg_url"]  # the fixture


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(data_dir: Path, url: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "THIRDWAY_DB": url, "THIRDWAY_CONSOLE": "false"}
    env.pop("THIRDWAY_THREADS", None)
    command = [
        sys.executable, "-c", "from thirdway.cli.main import main; main()", "serve",
        "--data-dir", str(data_dir), "--port", str(port), "--workers", "2",
    ]  # fmt: skip
    out = log_path.open("wb")
    return subprocess.Popen(command, env=env, stdout=out, stderr=out)


def _wait_ready(base: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, log_path.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the service did not answer within 60 s")


class _Agent(threading.Thread):
    """Acts until told to stop or until the service stops answering; records every answer.
    A fresh connection per request, so the requests of one session may reach either worker."""

    def __init__(self, base: str, key: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}
        self.answers: list[tuple[str, str, dict[str, object]]] = []
        self.workers: set[str] = set()
        self.stop = threading.Event()
        self.error: str | None = None

    def post(self, path: str, body: object) -> httpx.Response:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as http:
            return http.post(path, json=body)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                opened = self.post("/v1/sessions", {"instruction": banking.INSTRUCTION})
                assert opened.status_code == 201, opened.text
                sid = opened.json()["session"]
                proposal = banking.read_proposal(sid)
                granted = self.post(f"/v1/sessions/{sid}/proposals", proposal)
                assert granted.status_code == 200, granted.text
                grant = granted.json()
                assert grant["outcome"] == "granted", grant
                self.answers.append(("grant", sid, grant))
                body = {"token": grant["token"], "call": proposal["action"]}
                done = self.post(f"/v1/sessions/{sid}/executions", body)
                assert done.status_code == 200 and done.json()["ok"], done.text
                self.answers.append(("execution", sid, done.json()))
                again = self.post(f"/v1/sessions/{sid}/executions", body)
                assert again.status_code in (400, 403, 409), again.text  # spent: refused
        except httpx.TransportError:
            pass  # the service stopped: the answers so far are what must be in the log
        except AssertionError as exc:
            if not self.stop.is_set():
                self.error = str(exc)[:2000]


def _two_workers_acting_then_sigterm(tmp_path: Path, db: str) -> tuple[Path, list[_Agent]]:
    """``thirdway serve --workers 2`` on ``db``, two agents acting through both workers, then
    SIGTERM while they act; returns the data folder and the agents (their answers)."""
    data_dir = tmp_path / "data"
    config = ServiceConfig(data_dir=data_dir, db=db, workers=2)
    keys = open_keys(config)
    try:
        secrets = [keys.create(f"agent-{n}", "agent") for n in range(2)]
    finally:
        keys.close()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    server = _start(data_dir, db, port, log_path)
    agents: list[_Agent] = []
    try:
        _wait_ready(base, server, log_path)
        agents = [_Agent(base, key) for key in secrets]
        for agent in agents:
            agent.start()
        deadline = time.monotonic() + 60
        while min(len(a.answers) for a in agents) < 6 and time.monotonic() < deadline:
            assert all(a.is_alive() or a.error is None for a in agents), [a.error for a in agents]
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)  # while the agents are still acting
        code = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for agent in agents:
            agent.stop.set()
    for agent in agents:
        agent.join(timeout=60)
        assert agent.error is None, agent.error
        assert len(agent.answers) >= 6
    assert code in (0, -signal.SIGTERM), log_path.read_text(errors="replace")[-3000:]
    pids = {
        json.loads(line).get("msg", "")
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and "Finished server process" in line
    }
    assert len(pids) == 2, "both workers shut down gracefully"
    return data_dir, agents


def _every_answer_is_logged(log: TransparencyLog, agents: list[_Agent]) -> None:
    assert log.verify().ok
    size = log.size()
    for agent in agents:
        for kind, sid, answer in agent.answers:
            if kind == "grant":
                where = {"proposal": answer["proposal_index"]}
                where["capability"] = answer["capability_index"]
            else:
                where = {"execution": answer["log_index"]}
            for entry_type, index in where.items():
                assert isinstance(index, int) and index < size
                entry = json.loads(log.entry(index))
                assert (entry["type"], entry["session"]) == (entry_type, sid), entry


def test_two_workers_on_postgres_lose_nothing_on_sigterm(tmp_path: Path, pg_url: str) -> None:
    data_dir, agents = _two_workers_acting_then_sigterm(tmp_path, pg_url)
    with open_log(pg_url, key_path=data_dir / LOG_KEY_NAME, create=False) as log:
        _every_answer_is_logged(log, agents)


def test_two_workers_on_one_sqlite_folder_lose_nothing_on_sigterm(tmp_path: Path) -> None:
    """The same on SQLite: the workers share the folder's log (SQLite's write lock gives the
    indices), and once both have stopped the supervisor records the clean stop, so the next
    opening voids no token and closes no session."""
    data_dir, agents = _two_workers_acting_then_sigterm(tmp_path, "sqlite")
    with TransparencyLog.open(data_dir / LOG_NAME, create=False) as log:
        _every_answer_is_logged(log, agents)
        size = log.size()
    with sqlite3.connect(data_dir / LOG_NAME) as conn:
        assert conn.execute("SELECT clean FROM gate_restart").fetchone() == (1,)
    with Gatekeeper.open(data_dir) as gate:
        assert gate.log.size() == size  # no restart note: the stop was clean
