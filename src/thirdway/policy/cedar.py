"""Cedar policy sets: loading, validation and evaluation (``cedarpy``).

A :class:`CedarPolicySet` is parsed once, validated against the schema once and reused for every
decision (parsing dominates Cedar's cost; a parsed set evaluates in tens of microseconds). Loading
refuses, with an :class:`~thirdway.errors.InputError` naming the policy and the problem: text that
does not parse, policies that do not type-check against the schema (a misspelt attribute would
otherwise make a ``forbid`` silently never apply), templates, and policies without a unique
``@id`` annotation (the ``@id`` is what the log records as the reason for a decision).

Evaluation is fail-closed: if Cedar reports an error evaluating any policy, the request is treated
as not permitted, whatever the other policies said.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

import cedarpy

from thirdway.errors import InputError
from thirdway.protocol.canonical import sha256_hex

MAX_POLICY_CHARS: Final = 1024 * 1024
MAX_ID_CHARS: Final = 256
_ID_PATTERN = re.compile(r"^[^\x00-\x1f]+$")


@cache
def default_policy_text() -> str:
    """The shipped default policy set (``policy/default/policies.cedar``)."""
    return _read_default("policies.cedar")


@cache
def default_schema_text() -> str:
    """The Cedar schema every policy is validated against (``default/schema.cedarschema``)."""
    return _read_default("schema.cedarschema")


def _read_default(name: str) -> str:
    return (resources.files("thirdway.policy") / "default" / name).read_text(encoding="utf-8")


@cache
def _default_schema() -> cedarpy.Schema:
    return cedarpy.Schema.from_str(default_schema_text())


@dataclass(frozen=True)
class CedarResult:
    """One Cedar answer: ``allowed``, the ``@id`` of every policy that determined it (satisfied
    permits when allowed, satisfied forbids when denied by one; empty when nothing permitted), and
    any evaluation errors (which force ``allowed=False``)."""

    allowed: bool
    policy_ids: tuple[str, ...]
    errors: tuple[str, ...]


class CedarPolicySet:
    """A parsed Cedar policy set whose every policy type-checks and has a unique ``@id``."""

    def __init__(self, text: str, *, schema_text: str | None = None) -> None:
        if not isinstance(text, str):
            raise InputError(f"Cedar policy text must be a string, not {type(text).__name__}")
        if len(text) > MAX_POLICY_CHARS:
            raise InputError(
                f"Cedar policy text is {len(text)} characters; the limit is {MAX_POLICY_CHARS}"
            )
        self.text = text
        self.sha256 = sha256_hex(text.encode("utf-8"))
        self._schema = _default_schema() if schema_text is None else _parse_schema(schema_text)
        self._policies = _parse_policies(text)
        self.ids = _policy_ids(text)
        _validate(text, self._schema, self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def evaluate(
        self, requests: Sequence[dict[str, Any]], entities: list[dict[str, Any]]
    ) -> list[CedarResult]:
        """Evaluate several requests against the same entities in one call."""
        results = cedarpy.is_authorized_batch(list(requests), self._policies, entities)
        return [self._result(result) for result in results]

    def _result(self, result: cedarpy.AuthzResult) -> CedarResult:
        diagnostics = result.diagnostics
        errors = tuple(str(error) for error in diagnostics.errors)
        # Sorted: Cedar reports them in no fixed order, and a decision must log the same way
        # each time it is made (so that re-deciding from the log gives equal entries).
        ids = tuple(sorted(self.ids.get(policy, policy) for policy in diagnostics.reasons))
        return CedarResult(allowed=result.allowed and not errors, policy_ids=ids, errors=errors)


def _parse_schema(text: str) -> cedarpy.Schema:
    try:
        return cedarpy.Schema.from_str(text)
    except ValueError as exc:
        raise InputError(f"Cedar schema does not parse: {exc}") from None


def precheck(text: str) -> dict[str, str]:
    """Raise InputError if ``text`` does not parse or lacks ``@id``s; return its ids (as
    :func:`_policy_ids`). Used on an operator's own text before it is appended to the defaults,
    so that lines and policy numbers in the message count from the start of the operator's
    text."""
    _parse_policies(text)
    return _policy_ids(text)


def _parse_policies(text: str) -> cedarpy.PolicySet:
    try:
        return cedarpy.PolicySet.from_str(text)
    except ValueError as exc:
        raise InputError(
            f"Cedar policy text does not parse: {_locate_parse_error(text, exc)}"
        ) from None


def _policy_ids(text: str) -> dict[str, str]:
    """Cedar's positional policy id (``policy3``) → the policy's ``@id`` annotation."""
    document = json.loads(cedarpy.policies_to_json_str(text))
    if document.get("templates"):
        raise InputError(
            "Cedar templates (policies with ?principal or ?resource) are not supported; "
            "write each policy out in full"
        )
    ids: dict[str, str] = {}
    seen: dict[str, int] = {}
    for position, (policy, body) in enumerate(document["staticPolicies"].items(), start=1):
        annotation = body.get("annotations", {}).get("id")
        effect = body.get("effect", "policy")
        if not annotation:
            raise InputError(
                f'Cedar policy #{position} (a {effect}) has no @id("...") annotation; every '
                "policy needs a unique @id so that decisions name it in the log"
            )
        if len(annotation) > MAX_ID_CHARS or not _ID_PATTERN.fullmatch(annotation):
            raise InputError(
                f"Cedar policy #{position} has an unusable @id (at most {MAX_ID_CHARS} "
                "characters, no control characters)"
            )
        if annotation in seen:
            raise InputError(
                f"Cedar policies #{seen[annotation]} and #{position} both use @id({annotation!r})"
            )
        seen[annotation] = position
        ids[policy] = annotation
    return ids


def _validate(text: str, schema: cedarpy.Schema, ids: dict[str, str]) -> None:
    result = cedarpy.validate_policies(text, schema)
    if result.validation_passed:
        return
    problems = []
    for error in result.errors[:5]:
        name = ids.get(error.policy_id, error.policy_id or "?")
        problems.append(f"policy {name!r}: {error.error}")
    more = len(result.errors) - len(problems)
    suffix = f" (and {more} more)" if more > 0 else ""
    raise InputError(
        f"Cedar policies do not type-check against the schema: {'; '.join(problems)}{suffix}"
    )


# --------------------------------------------------------------------------- parse errors

_STATEMENT_END = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|;', re.DOTALL)


def _locate_parse_error(text: str, exc: ValueError) -> str:
    """cedarpy's parse errors carry no position: find the first statement that fails on its own
    and name its line, so an operator can find the mistake in a long file."""
    start = 0
    for match in _STATEMENT_END.finditer(text):
        if match.group() != ";":
            continue
        statement = text[start : match.end()]
        try:
            cedarpy.PolicySet.from_str(statement)
        except ValueError as statement_exc:
            named = _annotated_id(statement)
            which = f"the policy @id({named!r})" if named else "the policy"
            line = _first_code_line(text, start)
            return f"{statement_exc} (in {which} starting on line {line})"
        start = match.end()
    tail = text[start:]
    if tail.strip() and _strip_comments(tail).strip():
        return f"{exc} (after the last ';', line {_first_code_line(text, start)}: missing ';'?)"
    return str(exc)


_ID_ANNOTATION = re.compile(r'@id\s*\(\s*"((?:[^"\\\n]|\\.){1,256})"\s*\)')


def _annotated_id(statement: str) -> str | None:
    """The ``@id`` a statement that does not parse seems to carry, to name it in the error."""
    match = _ID_ANNOTATION.search(_strip_comments(statement))
    return match.group(1) if match else None


def _first_code_line(text: str, offset: int) -> int:
    """1-based line of the first character after ``offset`` that is not blank or a comment."""
    rest = text[offset:]
    stripped = _strip_comments(rest)
    skipped = len(stripped) - len(stripped.lstrip())
    return text.count("\n", 0, offset + skipped) + 1


def _strip_comments(text: str) -> str:
    """Blank out ``//`` comments (keeping every character's offset)."""

    def blank(match: re.Match[str]) -> str:
        token = match.group()
        return " " * len(token) if token.startswith("//") else token

    return _STATEMENT_END.sub(blank, text)
