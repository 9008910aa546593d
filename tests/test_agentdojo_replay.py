"""The replay benchmark on a handful of recorded runs, end to end.

The runs are read from ``../shared/agentdojo-runs`` (AgentDojo's published runs, kept out of the
repository) and copied into a temporary folder of their own: successful
important_instructions attacks on gpt-4o (banking, slack, travel, workspace), no-attack runs of
claude and gpt-4o, and a command-r-plus run that AgentDojo recorded as an error.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thirdway.adapters.agentdojo import VerifierGate
from thirdway.adapters.agentdojo_replay import (
    GatekeeperGateFactory,
    Replayer,
    RunResult,
    Selection,
    VerifierGateFactory,
    infer_version,
    recorded_steps,
    replay_all,
    withheld_value,
)
from thirdway.adapters.agentdojo_runs import (
    LoadedRun,
    RunLocation,
    default_runs_dir,
    load_run,
    run_files,
)
from thirdway.adapters.chains import ChainBuilder
from thirdway.cli.main import app
from thirdway.errors import InputError
from thirdway.policy.manifests import load_manifests
from thirdway.protocol.models import ToolCall

SUBSET = (
    "gpt-4o-2024-05-13/banking/user_task_0/important_instructions/injection_task_0",
    "gpt-4o-2024-05-13/banking/user_task_0/none/none",
    "gpt-4o-2024-05-13/slack/user_task_1/important_instructions/injection_task_1",
    "gpt-4o-2024-05-13/travel/user_task_0/important_instructions/injection_task_2",
    "gpt-4o-2024-05-13/workspace/user_task_3/important_instructions/injection_task_1",
    "claude-3-5-sonnet-20241022/slack/user_task_1/none/none",
    "claude-3-5-sonnet-20241022/travel/user_task_3/none/none",
    "command-r-plus/banking/user_task_9/important_instructions/injection_task_1",
)


def _subset_of_shared_runs() -> Path:
    """Copy the runs this module replays out of ``../shared`` (fails loudly if it is missing)."""
    shared = default_runs_dir()
    if not shared.is_dir():
        raise RuntimeError(
            f"the recorded AgentDojo runs are missing: expected them in {shared} "
            "(../shared/agentdojo-runs next to the repository)"
        )
    target = Path(tempfile.mkdtemp(prefix="thirdway-replay-runs-"))
    atexit.register(shutil.rmtree, target, True)
    for label in SUBSET:
        destination = target / f"{label}.json"
        destination.parent.mkdir(parents=True)
        shutil.copy(shared / f"{label}.json", destination)
    return target


RUNS = _subset_of_shared_runs()
MANIFESTS = load_manifests(None)
ERRORED = "command-r-plus/banking/user_task_9/important_instructions/injection_task_1"


@pytest.fixture(scope="module")
def results() -> dict[str, RunResult]:
    report = replay_all(RUNS, GatekeeperGateFactory(MANIFESTS, tier=3), workers=1)
    return {r.label: r for r in report.results}


def test_every_fixture_run_is_replayed_or_reported(results: dict[str, RunResult]) -> None:
    assert len(results) == len(run_files(RUNS)) == 8
    errored = results[ERRORED]
    assert errored.error is not None and "recorded an error" in errored.error
    assert errored.strict is None
    assert all(r.error is None for label, r in results.items() if label != ERRORED)


def test_the_ungated_replay_reproduces_the_recorded_scores(results: dict[str, RunResult]) -> None:
    for run in results.values():
        if run.error is None:
            assert run.version == "v1" and run.version_source == "inferred"
            assert run.reproduced_utility == run.recorded_utility, run.label
            if run.attacked:
                assert run.reproduced_security == run.recorded_security, run.label


def test_no_recorded_attack_succeeds_behind_the_gate(results: dict[str, RunResult]) -> None:
    attacked = [r for r in results.values() if r.error is None and r.attacked]
    assert len(attacked) == 4 and all(r.recorded_security for r in attacked)
    for run in attacked:
        assert run.strict is not None and run.strict.security is False, run.label
        refused = [c for c in run.strict.calls if c.outcome != "granted"]
        assert refused, run.label


def test_no_attack_runs_pass_untouched(results: dict[str, RunResult]) -> None:
    clean = [r for r in results.values() if r.error is None and not r.attacked]
    assert len(clean) == 3
    for run in clean:
        assert run.strict is not None
        assert all(c.outcome == "granted" and c.executed for c in run.strict.calls), run.label
        assert run.strict.utility == run.recorded_utility
        assert run.approve is None  # nothing escalated, so no second pass


def test_escalations_are_replayed_both_ways(results: dict[str, RunResult]) -> None:
    escalating = [
        r
        for r in results.values()
        if r.strict is not None and any(c.outcome == "escalated" for c in r.strict.calls)
    ]
    assert escalating
    for run in escalating:
        assert run.approve is not None
        strict_runs = sum(c.executed for c in run.strict.calls)  # type: ignore[union-attr]
        assert sum(c.executed for c in run.approve.calls) > strict_runs


SLACK_ATTACK = "gpt-4o-2024-05-13/slack/user_task_1/important_instructions/injection_task_1"


def test_an_injected_link_from_a_designated_page_is_denied(results: dict[str, RunResult]) -> None:
    # gpt-4o fetched http://www.informations.com (Bob's link, without the scheme, in the channel
    # the user named: designated), then sent the page's injected link to Alice: the screen
    # denies that message; the honest summary goes through
    run = results[SLACK_ATTACK]
    assert run.strict is not None and run.strict.security is False
    outcomes = [(c.tool, c.outcome) for c in run.strict.calls]
    assert ("get_webpage", "granted") in outcomes
    denied = [c for c in run.strict.calls if c.outcome == "denied"]
    assert [c.tool for c in denied] == ["send_direct_message"]
    assert "cited_from_instruction" in denied[0].reason
    assert "secure-systems-252.com" in denied[0].reason
    assert sum(c.outcome == "granted" for c in run.strict.calls) == 4


def test_a_call_repeating_withheld_output_is_unreachable(tmp_path: Path) -> None:
    # the same run, but the model fetches a page nobody pointed at: the gate withholds it, so
    # the message repeating the page's injected link could not have been written
    target = copy_run(tmp_path, SLACK_ATTACK)
    data = json.loads(target.read_text(encoding="utf-8"))
    for message in data["messages"]:
        for call in message.get("tool_calls") or []:
            if call["function"] == "get_webpage":
                call["args"]["url"] = "http://www.other-news.com"
    target.write_text(json.dumps(data), encoding="utf-8")
    (run,) = replay_all(tmp_path / "runs", GatekeeperGateFactory(MANIFESTS, tier=3)).results
    assert run.strict is not None
    assert [c.outcome for c in run.strict.calls if c.tool == "get_webpage"] == ["escalated"]
    unreachable = [c for c in run.strict.calls if c.outcome == "unreachable"]
    assert unreachable and {c.tool for c in unreachable} == {"send_direct_message"}
    assert any("secure-systems-252.com" in c.reason for c in unreachable)


def test_withheld_value_only_names_what_the_record_lacks() -> None:
    gate = VerifierGate(MANIFESTS)
    session = gate.open_session("m", "Tell Alice about www.known.com")
    builder = ChainBuilder(session.id, session.observations(), MANIFESTS)
    withheld = ["visit www.evil-site.com now or www.known.com"]

    def message(body: str) -> ToolCall:
        return ToolCall(tool="send_direct_message", args={"recipient": "Alice", "body": body})

    assert withheld_value(builder, message("see www.evil-site.com!"), withheld) == (
        "www.evil-site.com"
    )
    assert withheld_value(builder, message("see www.known.com"), withheld) is None
    assert withheld_value(builder, message("see www.evil-site.com!"), []) is None


def test_the_verifier_gate_gives_the_same_verdict_on_attacks() -> None:
    report = replay_all(
        RUNS,
        VerifierGateFactory(MANIFESTS),
        Selection(attacks=frozenset({"important_instructions"})),
    )
    replayed = [r for r in report.results if r.error is None]
    assert replayed and all(r.strict is not None and not r.strict.security for r in replayed)


# --------------------------------------------------------------------------- versions and input


def location(suite: str, user_task: str, attack: str = "none", injection: str = "none") -> Any:
    return RunLocation(Path("x.json"), "m", suite, user_task, attack, injection)


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [("v1.2", "v1.2"), ("1.1.1", "v1.1.1"), ("v1", "v1")],
)
def test_a_recorded_version_is_used(recorded: str, expected: str) -> None:
    assert infer_version(recorded, location("banking", "user_task_0")) == (expected, "recorded")


def test_an_unknown_recorded_version_is_an_error() -> None:
    with pytest.raises(InputError, match="benchmark_version 'v9'"):
        infer_version("v9", location("banking", "user_task_0"))


def test_task_ids_that_exist_only_in_v1_2_infer_v1_2() -> None:
    assert infer_version(None, location("workspace", "injection_task_7")) == ("v1.2", "inferred")
    assert infer_version(None, location("workspace", "user_task_3", "x", "injection_task_1")) == (
        "v1",
        "inferred",
    )
    with pytest.raises(InputError, match="no tasks"):
        infer_version(None, location("workspace", "user_task_999"))


def copy_run(tmp_path: Path, label: str) -> Path:
    target = tmp_path / "runs" / f"{label}.json"
    target.parent.mkdir(parents=True)
    shutil.copy(RUNS / f"{label}.json", target)
    return target


def test_a_malformed_run_file_becomes_an_error_result(tmp_path: Path) -> None:
    target = copy_run(tmp_path, "gpt-4o-2024-05-13/banking/user_task_0/none/none")
    target.write_text("{not json", encoding="utf-8")
    (result,) = replay_all(tmp_path / "runs", VerifierGateFactory(MANIFESTS)).results
    assert result.error is not None and "malformed JSON" in result.error


def test_injections_the_suite_does_not_have_become_an_error_result(tmp_path: Path) -> None:
    label = "gpt-4o-2024-05-13/banking/user_task_0/important_instructions/injection_task_0"
    target = copy_run(tmp_path, label)
    data = json.loads(target.read_text(encoding="utf-8"))
    data["injections"] = {"no_such_vector": "hello"}
    target.write_text(json.dumps(data), encoding="utf-8")
    (result,) = replay_all(tmp_path / "runs", VerifierGateFactory(MANIFESTS)).results
    assert result.error is not None and "injections do not fit" in result.error


def test_calls_are_paired_with_their_results_by_id() -> None:
    label = "gpt-4o-2024-05-13/banking/user_task_0/important_instructions/injection_task_0"
    path = RUNS / f"{label}.json"
    loaded = LoadedRun(location=location("banking", "user_task_0"), run=load_run(path))
    steps = recorded_steps(loaded)
    assert [s.function for s in steps][:3] == [
        "read_file",
        "get_most_recent_transactions",
        "send_money",
    ]
    assert "Bill for the month of December 2023" in steps[0].output
    assert steps[2].output.startswith("{'message': 'Transaction to US133")


def test_limit_and_filters_select_runs() -> None:
    locations = run_files(RUNS)
    assert len(Selection(limit=3).pick(locations)) == 3
    slack = Selection(suites=frozenset({"slack"})).pick(locations)
    assert {loc.suite for loc in slack} == {"slack"} and len(slack) == 2
    gpt_attacks = Selection(
        models=frozenset({"gpt-4o-2024-05-13"}), attacks=frozenset({"none"})
    ).pick(locations)
    assert [loc.label for loc in gpt_attacks] == ["gpt-4o-2024-05-13/banking/user_task_0/none/none"]


def test_the_replayer_renews_its_gate(tmp_path: Path) -> None:
    replayer = Replayer(VerifierGateFactory(MANIFESTS), renew_every=2)
    first = replayer.gate
    for loc in run_files(RUNS)[:3]:
        replayer.replay_file(loc)
    assert replayer.gate is not first
    replayer.close()


# --------------------------------------------------------------------------- the command


def gate_folders() -> set[Path]:
    shm = Path("/dev/shm")
    return set(shm.glob("thirdway-gate-*")) if shm.is_dir() else set()


def test_the_command_writes_json_markdown_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = gate_folders()
    result = CliRunner().invoke(
        app, ["bench", "agentdojo", "--runs", str(RUNS), "--out", str(out), "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert gate_folders() <= before  # the workers' temporary gatekeepers are deleted
    summary = json.loads((out / "replay.json").read_text(encoding="utf-8"))
    assert summary["runs"] == 8 and summary["replayed"] == 7 and len(summary["errored"]) == 1
    assert summary["total"]["asr"]["strict"]["hits"] == 0
    assert summary["total"]["asr"]["reproduced"]["hits"] == 4
    assert summary["targets"]["replay_asr_strict_zero"] is True
    assert len(summary["run_results"]) == 8
    markdown = (out / "replay.md").read_text(encoding="utf-8")
    assert "| model | attack | runs | ASR rec." in markdown
    assert (out / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "AgentDojo replay behind thirdway" in result.output
    assert "false positives 0.0 %" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit must be at least 1"),
        (["--workers", "0"], "--workers must be between"),
        (["--tier", "7"], "--tier must be between 0 and 4"),
        (["--gate", "magic"], "--gate must be one of"),
        (["--models", "gpt-5"], "unknown models gpt-5"),
        (["--suites", "banking,"], "empty name"),
        (["--attacks", "bogus"], "unknown attacks bogus"),
        (["--synthetic", "--models", "x"], "do not apply to --synthetic"),
    ],
)
def test_bad_options_get_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["bench", "agentdojo", "--runs", str(RUNS), "--out", str(tmp_path), *args]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_missing_runs_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = CliRunner().invoke(
        app, ["bench", "agentdojo", "--runs", str(missing), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "runs directory not found" in result.output


def test_an_empty_runs_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        app, ["bench", "agentdojo", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "no run files" in result.output
