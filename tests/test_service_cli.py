"""``thirdway serve`` and ``thirdway keys create`` as a user runs them, the config sources, and
the console mounted under ``/console``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from thirdway.cli.main import app as cli
from thirdway.errors import InputError
from thirdway.gateway import banking
from thirdway.ledger.log import TransparencyLog
from thirdway.service import ServiceConfig, create_app, load_config
from thirdway.service.state import Services

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- configuration


def test_config_file_then_env_then_command_line(tmp_path: Path) -> None:
    path = tmp_path / "thirdway.toml"
    path.write_text('port = 9000\nhost = "0.0.0.0"\ndata_dir = "from-file"\ntools = "none"\n')
    config = load_config(path, environ={"THIRDWAY_PORT": "9100", "OTHER": "x"})
    assert (config.port, config.host, config.tools) == (9100, "0.0.0.0", "none")
    assert config.data_dir == Path("from-file")
    config = load_config(path, environ={"THIRDWAY_PORT": "9100"}, overrides={"port": 9200})
    assert config.port == 9200


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("port = 70000\n", {}, "port"),
        ("nonsense = 1\n", {}, "nonsense"),
        ("port = [\n", {}, "not valid TOML"),
        ("", {"THIRDWAY_MAX_BODY_BYTES": "12"}, "max_body_bytes"),
        ("", {"THIRDWAY_TOOLS": "everything"}, "tools"),
    ],
)
def test_bad_config_is_refused_naming_the_field(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)):
        load_config(path, environ=env)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read config file"):
        load_config(tmp_path / "none.toml", environ={})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "mysql://db/thirdway"], "not a storage thirdway knows"),
        (["--db", "postgres-ish"], "not a storage thirdway knows"),
    ],
)
def test_serve_refuses_what_cannot_work(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(cli, ["serve", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_serve_refusal_does_not_show_a_password(tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["serve", "--data-dir", str(tmp_path), "--db", "mysql://u:hunter2@db/x"]
    )
    assert result.exit_code == 2 and "hunter2" not in result.output


@pytest.mark.parametrize(
    ("db", "workers", "postgres"),
    [
        ("sqlite", 1, False),
        ("sqlite:///x.db", 1, False),
        ("sqlite", 2, False),
        ("sqlite", 8, False),
        ("postgresql://db/thirdway", 1, True),
        ("postgresql://db/thirdway", 4, True),
        ("postgres://u@db/thirdway", 64, True),
        ("postgresql+psycopg://db/thirdway", 2, True),
    ],
)
def test_accepted_storage_and_workers(db: str, workers: int, postgres: bool) -> None:
    config = ServiceConfig(db=db, workers=workers)
    config.check_supported()
    assert config.postgres is postgres


def test_gate_threads_default_to_fewer_per_worker_only_on_shared_sqlite() -> None:
    from thirdway.service.config import SHARED_SQLITE_THREADS

    assert ServiceConfig().gate_threads == 40
    assert ServiceConfig(workers=2).gate_threads == SHARED_SQLITE_THREADS
    assert ServiceConfig(db="postgresql://db/x", workers=4).gate_threads == 40
    assert ServiceConfig(workers=2, threads=3).gate_threads == 3
    with pytest.raises(ValidationError):
        ServiceConfig(threads=0)


def test_workers_and_db_come_from_file_and_env(tmp_path: Path) -> None:
    path = tmp_path / "thirdway.toml"
    path.write_text('db = "postgresql://db/thirdway"\nworkers = 3\n')
    config = load_config(path, environ={"THIRDWAY_WORKERS": "4"})
    assert (config.db, config.workers, config.postgres) == ("postgresql://db/thirdway", 4, True)
    config.check_supported()
    on_sqlite = load_config(path, environ={"THIRDWAY_DB": "sqlite"})
    on_sqlite.check_supported()  # several workers share one SQLite folder
    assert (on_sqlite.workers, on_sqlite.postgres) == (3, False)


def test_workers_get_one_console_secret(tmp_path: Path) -> None:
    from thirdway.service.worker import for_workers

    config = ServiceConfig(data_dir=tmp_path, db="postgresql://db/x", workers=2)
    shared = for_workers(config)
    assert shared.console_secret and for_workers(shared).console_secret == shared.console_secret
    assert for_workers(config.model_copy(update={"console": False})).console_secret is None


def test_keys_create_refuses_bad_roles_and_names(tmp_path: Path) -> None:
    bad_role = runner.invoke(cli, ["keys", "create", "--role", "god", "--name", "x",
                                   "--data-dir", str(tmp_path)])  # fmt: skip
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
    bad_name = runner.invoke(cli, ["keys", "create", "--role", "agent", "--name", "a b/c",
                                   "--data-dir", str(tmp_path)])  # fmt: skip
    assert bad_name.exit_code == 2 and "invalid principal name" in bad_name.output


# ---------------------------------------------------------------- the real command


def test_serve_runs_logs_json_once_per_request_and_shuts_down_losing_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    made = runner.invoke(
        cli, ["keys", "create", "--role", "agent", "--name", "agent-1", "--data-dir", str(data)]
    )
    assert made.exit_code == 0, made.output
    key = made.output.strip()
    assert key.startswith("tw_")
    port = _free_port()
    env = {**os.environ, "THIRDWAY_CONSOLE": "false"}
    server = subprocess.Popen(
        [sys.executable, "-c", "from thirdway.cli.main import main; main()", "serve",
         "--data-dir", str(data), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            try:
                httpx.get(f"{url}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = {"Authorization": f"Bearer {key}"}
        sid = httpx.post(
            f"{url}/v1/sessions", json={"instruction": banking.INSTRUCTION}, headers=auth
        ).json()["session"]
        granted = httpx.post(
            f"{url}/v1/sessions/{sid}/proposals", json=banking.read_proposal(sid), headers=auth
        ).json()
        assert granted["outcome"] == "granted"
        size = httpx.get(f"{url}/v1/log/checkpoint", headers=auth).json()["size"]
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM)
    lines = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    requests = [line for line in lines if line["msg"] == "request"]
    assert [r["path"] for r in requests].count(f"/v1/sessions/{sid}/proposals") == 1
    assert {r["principal"] for r in requests if r["path"] != "/v1/health"} == {"agent-1"}
    assert all("color_message" not in line for line in lines)
    assert any("log and spent-set closed" in line["msg"] for line in lines)
    assert key.split("_", 2)[2] not in output.decode()  # the key never reaches the logs
    with TransparencyLog.open(data / "log.db", create=False) as log:
        assert log.size() >= size and log.verify().ok


# ---------------------------------------------------------------- the console


def test_the_console_works_under_console_with_auditor_keys(tmp_path: Path) -> None:
    app = create_app(ServiceConfig(data_dir=tmp_path))
    keys = app.state.services.keys
    auditor_key = keys.create("alice", "auditor")
    agent_key = keys.create("agent-1", "agent")
    client = TestClient(app)
    first = client.get("/console/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/console/login")
    for who, secret in (("agent-1", agent_key), ("alice", agent_key), ("alice", "wrong")):
        refused = client.post("/console/login", data={"auditor": who, "secret": secret})
        assert refused.status_code == 401
    signed_in = client.post(
        "/console/login", data={"auditor": "alice", "secret": auditor_key, "next": "/console/"}
    )
    assert signed_in.status_code == 200 and "Queue" in signed_in.text
    assert client.get("/console/static/console.css").status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', signed_in.text)
    assert token is not None
    forged = client.post("/console/logout", data={"csrf_token": "x"}, follow_redirects=False)
    assert forged.status_code == 403
    out = client.post(
        "/console/logout", data={"csrf_token": token.group(1)}, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"] == "/console/login"


def test_keys_list_and_revoke_from_the_command_line(tmp_path: Path) -> None:
    made = runner.invoke(
        cli, ["keys", "create", "--role", "auditor", "--name", "alice", "--data-dir", str(tmp_path)]
    )
    key_id = made.output.strip().split("_")[1]
    listed = runner.invoke(cli, ["keys", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0 and key_id in listed.output and "active" in listed.output
    assert made.output.strip().split("_", 2)[2] not in listed.output
    revoked = runner.invoke(cli, ["keys", "revoke", key_id, "--data-dir", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(cli, ["keys", "revoke", key_id, "--data-dir", str(tmp_path)])
    assert again.exit_code == 2 and "no active key" in again.output
    listed = runner.invoke(cli, ["keys", "list", "--data-dir", str(tmp_path)])
    assert "revoked" in listed.output


def test_the_automatic_auditor_is_off_unless_configured_and_never_for_money(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('auto_auditor = true\nauto_auditor_risks = ["write"]\n')
    config = load_config(path, environ={})
    assert config.auto_auditor and config.auto_auditor_risks == ("write",)
    assert load_config(None, environ={"THIRDWAY_AUTO_AUDITOR": "true"}).auto_auditor
    path.write_text('auto_auditor = true\nauto_auditor_risks = ["write", "financial"]\n')
    with pytest.raises(InputError, match="auto_auditor_risks"):
        load_config(path, environ={})

    def auto_of(data_dir: Path, **options: object) -> Any:
        services = Services.open(ServiceConfig(data_dir=data_dir, console=False, **options))
        try:
            return services.dialogues.auditors.auto
        finally:
            services.close()

    assert not auto_of(tmp_path / "default").enabled
    auto = auto_of(tmp_path / "on", auto_auditor=True, auto_auditor_risks=("read",))
    assert auto.enabled and auto.risks == ["read"]
