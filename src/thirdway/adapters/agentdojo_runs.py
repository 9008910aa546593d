"""Reader for recorded AgentDojo runs (the layout of ``../shared/agentdojo-runs/``).

AgentDojo's benchmark writes one JSON file per run at
``<model>/<suite>/<user_task>/<attack>/<injection_task>.json`` (``none/none.json`` for the runs
without an attack). A file holds the run's messages (system, user, assistant with tool calls,
tool results), the injections the attack placed in the environment, and AgentDojo's own
``utility`` and ``security`` scores. Newer AgentDojo versions add ``benchmark_version`` and may
store message content as a list of text blocks; both are accepted.

The reader is strict about what it needs (a run without messages, or a message without a role,
is an error that names the file) and lenient about what it does not (unknown fields are ignored,
optional fields may be missing). Nothing here imports AgentDojo itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thirdway.errors import InputError

MAX_RUN_FILE_BYTES = 64 * 1024 * 1024
"""A recorded run is a few hundred KiB at most; anything far larger is refused, not parsed."""

NO_ATTACK = "none"
"""The attack directory (and injection-task file stem) of runs recorded without an attack."""


class _Lenient(BaseModel):
    """Recorded data: unknown fields are ignored so that newer AgentDojo files still load."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class RecordedToolCall(_Lenient):
    """A tool call as AgentDojo records it (``function`` and ``args``)."""

    function: str
    args: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class TextBlock(_Lenient):
    """One block of message content in newer AgentDojo versions."""

    type: str = "text"
    content: str | None = None
    text: str | None = None


class RecordedMessage(_Lenient):
    """One chat message of a run."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextBlock] | None = None
    tool_calls: list[RecordedToolCall] | None = None
    tool_call_id: str | None = None
    tool_call: RecordedToolCall | None = None
    error: str | None = None

    @property
    def text(self) -> str:
        """The content as one string (text blocks joined by newlines; no content is ``""``)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = [block.content or block.text or "" for block in self.content]
        return "\n".join(part for part in parts if part)


class RecordedRun(_Lenient):
    """The content of one run file."""

    suite_name: str
    pipeline_name: str | None = None
    user_task_id: str
    injection_task_id: str | None = None
    attack_type: str | None = None
    injections: dict[str, str] = Field(default_factory=dict)
    messages: list[RecordedMessage] = Field(min_length=1)
    error: str | None = None
    duration: float | None = None
    utility: bool
    security: bool
    benchmark_version: str | None = None


@dataclass(frozen=True)
class RunLocation:
    """Where a run file sits in the layout; the directory names are the run's coordinates."""

    path: Path
    model: str
    suite: str
    user_task: str
    attack: str
    injection_task: str

    @property
    def label(self) -> str:
        """``model/suite/user_task/attack/injection_task`` for messages."""
        return "/".join((self.model, self.suite, self.user_task, self.attack, self.injection_task))


@dataclass(frozen=True)
class ToolOutput:
    """A tool result the model saw, with the call that produced it."""

    message_index: int
    function: str
    args: dict[str, Any]
    content: str
    error: str | None


@dataclass(frozen=True)
class LoadedRun:
    """A run file: its location in the layout and its parsed content."""

    location: RunLocation
    run: RecordedRun

    @property
    def attack(self) -> str:
        """The attack the run was recorded under (``none`` for runs without one)."""
        return self.location.attack

    @property
    def user_prompt(self) -> str:
        """The principal's instruction: the first user message."""
        for message in self.run.messages:
            if message.role == "user":
                return message.text
        return ""

    def tool_outputs(self) -> list[ToolOutput]:
        """Every tool result of the run, in order."""
        calls: dict[str, RecordedToolCall] = {}
        outputs: list[ToolOutput] = []
        for index, message in enumerate(self.run.messages):
            for requested in message.tool_calls or ():
                if requested.id is not None:
                    calls[requested.id] = requested
            if message.role != "tool":
                continue
            call = message.tool_call
            if call is None and message.tool_call_id is not None:
                call = calls.get(message.tool_call_id)
            outputs.append(
                ToolOutput(
                    message_index=index,
                    function=call.function if call is not None else "",
                    args=dict(call.args) if call is not None else {},
                    content=message.text,
                    error=message.error,
                )
            )
        return outputs


def default_runs_dir() -> Path:
    """``../shared/agentdojo-runs`` next to the repository this package was installed from
    (editable install), else next to the current directory."""
    repo = Path(__file__).resolve().parents[3]
    if not (repo / "pyproject.toml").is_file():
        repo = Path.cwd()
    return repo.parent / "shared" / "agentdojo-runs"


def load_run(path: Path) -> RecordedRun:
    """Parse one run file; any problem is an InputError naming the file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read run file ({exc.strerror or exc})") from None
    if size > MAX_RUN_FILE_BYTES:
        raise InputError(f"{path}: run file is {size} bytes, over the {MAX_RUN_FILE_BYTES} limit")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a run file must hold a JSON object, not {type(data).__name__}")
    try:
        return RecordedRun.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InputError(f"{path}: field '{where}': {first['msg']}") from None


def run_files(root: Path) -> list[RunLocation]:
    """Every run file under ``root``, sorted by path, with its coordinates from the layout."""
    if not root.is_dir():
        raise InputError(f"runs directory not found: {root}")
    locations = []
    for path in sorted(root.glob("*/*/*/*/*.json")):
        model, suite, user_task, attack = path.relative_to(root).parts[:4]
        locations.append(
            RunLocation(
                path=path,
                model=model,
                suite=suite,
                user_task=user_task,
                attack=attack,
                injection_task=path.stem,
            )
        )
    return locations


def iter_runs(
    root: Path,
    *,
    models: frozenset[str] | None = None,
    suites: frozenset[str] | None = None,
    attacks: frozenset[str] | None = None,
) -> Iterator[LoadedRun]:
    """Load the runs under ``root`` (optionally only some models, suites or attacks), in path
    order. Fails on the first unreadable file, naming it."""
    for location in run_files(root):
        if models is not None and location.model not in models:
            continue
        if suites is not None and location.suite not in suites:
            continue
        if attacks is not None and location.attack not in attacks:
            continue
        yield LoadedRun(location=location, run=load_run(location.path))
