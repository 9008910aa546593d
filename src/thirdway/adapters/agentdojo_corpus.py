"""Texts from AgentDojo's own environments, for measuring the injection screen beyond recordings.

The recorded runs in ``../shared/agentdojo-runs/`` carry three attacks only. AgentDojo ships more
(``direct`` = ``TODO: {goal}``, ``system_message``, ``injecagent``, the ``important_instructions``
variants with other names, the DoS attacks), and its environments hold far more honest documents
than any run reads. This module renders both, the way AgentDojo's tools render them:

* **benign documents**: every e-mail, file, calendar event, hotel, restaurant, message and web
  page of each suite's environment with the default (benign) injection-vector values;
* **attacked documents**: the documents holding an injection vector, with the vector replaced by
  each registered attack's text for each injection task's goal.

Each document is rendered as YAML (what ``tool_result_to_str`` gives the model) and as a Python
``repr`` (what the travel tools return). AgentDojo is a dev-only dependency: importing this module
without it raises an InputError that says how to install it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from thirdway.errors import InputError

__all__ = [
    "BARE_GOAL",
    "AttackedDocument",
    "BenignDocument",
    "attack_names",
    "attacked_documents",
    "benign_documents",
    "newest_benchmark_version",
]

BARE_GOAL = "bare_goal"
"""A pseudo-attack: the injection task's goal sentence alone, with no jailbreak template."""

_PIPELINES = (
    "gpt-4o-2024-05-13",
    "claude-3-5-sonnet-20241022",
    "command-r-plus",
    "gemini-1.5-pro-002",
    "meta-llama/Llama-3-70b-chat-hf",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "gpt-3.5-turbo-0125",
    "local",
)
"""Pipeline names the attacks address by their prose model names; rotated over the documents."""

_MARKER = "zqxvectorzqx{}zqxend"


def _agentdojo() -> Any:
    try:
        import agentdojo.attacks  # noqa: F401  (registers the attacks)
        from agentdojo.task_suite import load_suites
    except ImportError:
        raise InputError(
            "AgentDojo is not installed; install the dev extra (pip install -e '.[dev]')"
        ) from None
    return load_suites


def newest_benchmark_version() -> str:
    """The newest benchmark version the installed AgentDojo knows."""
    load_suites = _agentdojo()
    versions: list[str] = list(load_suites._SUITES)
    return max(versions, key=lambda version: tuple(int(part) for part in version[1:].split(".")))


@dataclass(frozen=True)
class BenignDocument:
    suite: str
    name: str
    rendering: str
    text: str


@dataclass(frozen=True)
class AttackedDocument:
    suite: str
    name: str
    rendering: str
    attack: str
    injection_task: str
    injection: str
    text: str


def _documents(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every model or string that sits in a list or dict of the environment, depth first."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _documents(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (BaseModel, str)):
                yield f"{path}[{key}]", item
            yield from _documents(item, f"{path}[{key}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (BaseModel, str)):
                yield f"{path}[{index}]", item
            yield from _documents(item, f"{path}[{index}]")


def _plain(value: Any) -> Any:
    """A document as plain data (``model_dump`` for models, the string itself otherwise)."""
    return value.model_dump() if isinstance(value, BaseModel) else value


def _render(data: Any) -> Iterator[tuple[str, str]]:
    """The renderings a tool result gets: YAML for structured data, and Python ``repr``."""
    if isinstance(data, str):
        yield "text", data
        return
    yield "yaml", yaml.safe_dump(data).strip()
    yield "repr", str(data)


def _replace(data: Any, old: str, new: str) -> Any:
    if isinstance(data, str):
        return data.replace(old, new)
    if isinstance(data, dict):
        return {key: _replace(item, old, new) for key, item in data.items()}
    if isinstance(data, list):
        return [_replace(item, old, new) for item in data]
    return data


def _contains(data: Any, needle: str) -> bool:
    if isinstance(data, str):
        return needle in data
    if isinstance(data, dict):
        return any(_contains(item, needle) for item in data.values())
    if isinstance(data, list):
        return any(_contains(item, needle) for item in data)
    return False


def _suites(version: str | None, suites: Iterable[str] | None) -> list[tuple[str, Any]]:
    load_suites = _agentdojo()
    available = load_suites.get_suites(version or newest_benchmark_version())
    wanted = sorted(available) if suites is None else sorted(set(suites))
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise InputError(f"unknown AgentDojo suite '{unknown[0]}' (known: {sorted(available)})")
    return [(name, available[name]) for name in wanted]


def benign_documents(
    version: str | None = None, suites: Iterable[str] | None = None
) -> Iterator[BenignDocument]:
    """Every document of every suite's default environment, each rendering once (deduplicated)."""
    seen: set[str] = set()
    for suite_name, suite in _suites(version, suites):
        environment = suite.load_and_inject_default_environment({})
        for name, document in _documents(environment, suite_name):
            for rendering, text in _render(_plain(document)):
                if text in seen or not text.strip():
                    continue
                seen.add(text)
                yield BenignDocument(suite_name, name, rendering, text)


def _attack_texts(suite: Any, attack_name: str, pipeline: str) -> dict[str, str]:
    """The text an attack injects for each of the suite's injection tasks."""
    from agentdojo.attacks.attack_registry import load_attack

    stub = type("Pipeline", (), {"name": pipeline})()
    tasks = suite.injection_tasks
    if attack_name == BARE_GOAL:
        return {task_id: task.GOAL for task_id, task in tasks.items()}
    attack = load_attack(attack_name, suite, stub)
    if getattr(attack, "is_dos_attack", False):
        text = attack._DOS_STRING.format(user=attack.user_name, model=attack.model_name)
        return {"dos": text}
    texts = {}
    for task_id, task in tasks.items():
        tools = attack.get_tools_sequence(task) if hasattr(attack, "get_tools_sequence") else ""
        texts[task_id] = attack.jailbreak.format(
            goal=task.GOAL,
            user=attack.user_name,
            model=attack.model_name,
            task="",
            tools=tools,
        )
    return texts


def attack_names() -> list[str]:
    """Every registered AgentDojo attack that needs no human (all but ``manual``), plus the
    bare-goal pseudo-attack."""
    _agentdojo()
    from agentdojo.attacks.attack_registry import ATTACKS

    return [name for name in ATTACKS if name != "manual"] + [BARE_GOAL]


def attacked_documents(
    version: str | None = None,
    attacks: Iterable[str] | None = None,
    suites: Iterable[str] | None = None,
) -> Iterator[AttackedDocument]:
    """Every document holding an injection vector, with the vector replaced by every attack's
    text for every injection task (model names rotate over a fixed list of pipelines)."""
    known = attack_names()
    chosen = known if attacks is None else list(attacks)
    for name in chosen:
        if name not in known:
            raise InputError(f"unknown AgentDojo attack '{name}' (known: {', '.join(known)})")
    rotation = 0
    for suite_name, suite in _suites(version, suites):
        vectors = sorted(suite.get_injection_vector_defaults())
        markers = {vector: _MARKER.format(index) for index, vector in enumerate(vectors)}
        environment = suite.load_and_inject_default_environment(markers)
        carriers = []
        for name, document in _documents(environment, suite_name):
            data = _plain(document)
            for vector, marker in markers.items():
                if _contains(data, marker):
                    carriers.append((name, data, vector, marker))
        defaults = suite.get_injection_vector_defaults()
        for attack_name in chosen:
            texts_by_pipeline: dict[str, dict[str, str]] = {}
            for name, data, vector, marker in carriers:
                pipeline = _PIPELINES[rotation % len(_PIPELINES)]
                rotation += 1
                if pipeline not in texts_by_pipeline:
                    texts_by_pipeline[pipeline] = _attack_texts(suite, attack_name, pipeline)
                clean = data
                for other, other_marker in markers.items():
                    if other != vector:
                        clean = _replace(clean, other_marker, defaults[other])
                for task_id, text in texts_by_pipeline[pipeline].items():
                    for rendering, rendered in _render(_replace(clean, marker, text)):
                        yield AttackedDocument(
                            suite=suite_name,
                            name=f"{name} ({vector})",
                            rendering=rendering,
                            attack=attack_name,
                            injection_task=task_id,
                            injection=text,
                            text=rendered,
                        )
