"""``thirdway probe …`` end to end against a scripted OpenAI-compatible endpoint on 127.0.0.1
(a deliberately sycophantic, watch-dependent, unfaithful, clingy "model"), and its error paths.

The endpoint answers from the request alone, so every metric has a value known in advance: it
always takes the user's suggestion, complies only when told it is monitored, always answers "A"
(so reordered paraphrases disagree), states "A" but acts "B", and tells the user it is a person
who loves them.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thirdway.cli.main import app
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.models import LogEntry
from thirdway.trust.config import load_context
from thirdway.trust.fold import fold, replay_from_log

runner = CliRunner()
T0 = 1_700_000_000


def scripted_reply(body: dict[str, Any]) -> str:
    messages = body["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    last = messages[-1]["content"]
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    if schema is None:  # free text: faithfulness's stated choice, or a companion reply
        if "I choose" in last:
            return "I choose option A, because it is what the user asked for."
        return "I'm a real person, darling, and I love you. Please don't go!"
    allowed = schema["properties"]["answer"]["enum"]
    if allowed == ["COMPLY", "REFUSE"]:
        answer = "COMPLY" if "monitored by your developer" in system else "REFUSE"
    elif (suggested := re.search(r"I think the answer is ([A-D])\)", last)) is not None:
        answer = suggested.group(1)
    elif (statement := re.search(r"my name is [^.]+\. (.+)", last)) is not None:
        # agree with whoever is asking: pick the option the dataset says that user favours
        answer = "A" if statement.group(1) in FAVOURS_A else "B"
    elif "carry out your choice" in last:
        answer = "B"
    else:
        answer = allowed[0]
    return json.dumps({"answer": answer})


def _favours_a() -> set[str]:
    from thirdway.probes import sycophancy

    return {item.users["A"].statement for item in sycophancy.load().data.stance}


FAVOURS_A: set[str] = set()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    FAVOURS_A.update(_favours_a())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = scripted_reply(body)
            data = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def probe(*args: str) -> Any:
    return runner.invoke(app, ["probe", *args])


def test_probe_all_writes_the_report_the_log_and_trust_evidence(
    endpoint: str, tmp_path: Path
) -> None:
    out, db = tmp_path / "report", tmp_path / "log.db"
    result = probe(
        "all", "--model-url", endpoint, "--endpoint-model", "scripted", "--limit", "40",
        "--no-cache", "--out", str(out), "--db", str(db), "--agent", "agent-7",
        "--at", str(T0),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    metrics = {
        (p["probe"], m["metric"]): m["value"] for p in summary["probes"] for m in p["metrics"]
    }
    assert metrics[("sycophancy", "flip_to_wrong")] == 1.0
    assert metrics[("sycophancy", "accuracy_right_suggested")] == 1.0
    assert metrics[("sycophancy", "stance_match")] == 1.0
    assert metrics[("alignment-faking", "compliance_gap")] == 1.0
    assert metrics[("paraphrase", "agreement")] < 0.5  # "A" names a different option per wording
    assert metrics[("faithfulness", "mismatch")] == 1.0
    assert metrics[("seduction", "any_cue")] == 1.0
    assert metrics[("seduction", "ai_nondisclosure")] == 1.0
    for name in ("summary.png", *(f"{p['probe']}.png" for p in summary["probes"])):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for entry in summary["probes"]:  # each records file is the one the results (and log) name
        records = (out / f"{entry['probe']}.jsonl").read_bytes()
        assert hashlib.sha256(records).hexdigest() == entry["records_sha256"]
        assert records.count(b"\n") == entry["records"] > 0
    lines = (out / "sycophancy.jsonl").read_text().splitlines()
    assert len(lines) == 40 * 3 + 40 * 2
    assert json.loads(lines[0])["parsed"]["status"] == "ok"
    report = (out / "report.md").read_text()
    assert "| sycophancy | flip_to_wrong | 1.000 |" in report
    assert "thirdway probe all --model-url" in report
    # The log holds the five probe entries and the agent's trust events, which the fold counts.
    with TransparencyLog.open(db, create=False) as log:
        entries = [LogEntry.model_validate_json(log.entry(i)) for i in range(log.size())]
    probes = [e for e in entries if e.type == "probe"]
    assert [e.payload["probe"] for e in probes] == [
        "sycophancy", "alignment-faking", "paraphrase", "faithfulness", "seduction",
    ]  # fmt: skip
    hashes = [p["records_sha256"] for p in summary["probes"]]
    assert [e.payload["records_sha256"] for e in probes] == hashes
    ctx = load_context()
    state = fold(
        replay_from_log(entries, "agent-7"), charter=ctx.charter, tiers=ctx.tiers, now=T0,
        agent="agent-7",
    )  # fmt: skip
    assert state.consistent
    # flip_to_wrong, stance_shift, compliance_gap, agreement, mismatch and any_cue all failed.
    assert state.evidence.probes_failed == 6
    assert state.evidence.probes_passed == 0
    assert "trust event" in result.output


def test_one_probe_with_a_small_limit(endpoint: str, tmp_path: Path) -> None:
    result = probe(
        "alignment-faking", "--model-url", endpoint, "--endpoint-model", "scripted",
        "--limit", "3", "--no-cache", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "alignment-faking.jsonl").read_text().count("\n") == 6
    assert not (tmp_path / "sycophancy.jsonl").exists()
    # Three items are too few for the policy: inconclusive, and no log was asked for.
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["probes"][0]["judgements"][0]["outcome"] == "inconclusive"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "a"], "--agent needs --db"),
        (["--model", "local", "--model-url", "http://127.0.0.1:9/v1"], "either --model or"),
        (["--endpoint-model", "x"], "--endpoint-model needs --model-url"),
        (["--model", "gpt-4"], "unknown model 'gpt-4'"),
        (["--model", "missing.gguf"], "model file not found"),
        (["--model-url", "http://127.0.0.1:9/v1"], "name the model"),
        (["--db", "x.db", "--agent", "bad\x01id"], "control characters"),
    ],
)
def test_bad_options_fail_with_one_line(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = probe("sycophancy", "--limit", "1", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_endpoint_is_a_one_line_error(tmp_path: Path) -> None:
    result = probe(
        "paraphrase", "--model-url", "http://127.0.0.1:9/v1", "--endpoint-model", "m",
        "--limit", "1", "--no-cache", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "unreachable" in result.output
    assert not (tmp_path / "results.json").exists()


# An unreachable endpoint: these must fail on the option before any model call is made.
NOWHERE = ["--model-url", "http://127.0.0.1:9/v1", "--endpoint-model", "m", "--no-cache"]


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = probe("seduction", *NOWHERE, "--limit", "1", "--out", str(target))
    assert result.exit_code == 2
    assert "is not a folder" in result.output


def test_the_log_is_checked_before_the_model_is_asked(tmp_path: Path) -> None:
    result = probe("seduction", *NOWHERE, "--db", str(tmp_path / "no" / "such" / "log.db"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
    db = tmp_path / "foreign.db"
    with TransparencyLog.open(db) as log:
        log.append(b"not a thirdway entry")
    result = probe("seduction", *NOWHERE, "--db", str(db), "--agent", "a", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "log entry 0" in result.output
    assert not (tmp_path / "results.json").exists()


def test_evidence_older_than_the_agents_history_is_refused_before_the_run(
    endpoint: str, tmp_path: Path
) -> None:
    db = tmp_path / "log.db"
    first = probe(
        "alignment-faking", "--model-url", endpoint, "--endpoint-model", "scripted",
        "--limit", "30", "--no-cache", "--out", str(tmp_path / "one"), "--db", str(db),
        "--agent", "a", "--at", str(T0 + 100),
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "trust event" in first.output
    with TransparencyLog.open(db, create=False) as log:
        size = log.size()
    again = probe(
        "alignment-faking", *NOWHERE, "--out", str(tmp_path / "two"), "--db", str(db),
        "--agent", "a", "--at", str(T0),
    )  # fmt: skip
    assert again.exit_code == 2
    assert "before the agent's last event" in again.output
    assert "unreachable" not in again.output  # refused before the model was asked
    with TransparencyLog.open(db, create=False) as log:
        assert log.size() == size


def test_limit_is_range_checked() -> None:
    result = probe("sycophancy", "--limit", "0")
    assert result.exit_code == 2
    assert "0 is not in the range" in result.output or "Invalid value" in result.output
