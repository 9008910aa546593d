"""Load the charter (and other YAML configuration) strictly.

YAML is friendlier to edit than JSON but looser to read: PyYAML keeps the last of two duplicate
keys, turns ``2024-01-01`` into a date and ``1.0`` into a float. Configuration that decides
sanctions must mean exactly what it says, so duplicates are refused, only JSON-compatible values
are accepted, and the file size is bounded.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from thirdway.charter.model import REQUIRED_CLAUSES_KEY, Charter
from thirdway.charter.registry import PackagedCharter, packaged_entry
from thirdway.errors import InputError
from thirdway.protocol.parse import describe

M = TypeVar("M", bound=BaseModel)

MAX_YAML_BYTES = 1024 * 1024
"""A charter or tiers file is a page of text; anything near a megabyte is not one."""


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys and keeps timestamps as plain strings."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"keys must be strings, found {key!r}", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _construct_timestamp(loader: _StrictLoader, node: yaml.ScalarNode) -> str:
    """Dates stay strings: a charter means what its text says, not a parsed datetime."""
    return str(loader.construct_scalar(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def parse_yaml(text: str | bytes, what: str) -> Any:
    """Parse one YAML document into plain JSON-like values, or raise :class:`InputError`."""
    if len(text) > MAX_YAML_BYTES:
        raise InputError(f"{what} is {len(text)} bytes; the limit is {MAX_YAML_BYTES}")
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{what} is not valid YAML{where}: {problem}") from None


def load_model(model: type[M], text: str | bytes, what: str) -> M:
    """Parse YAML ``text`` and validate it as ``model``; errors name the field."""
    return validate_model(model, _mapping(text, what), what)


def _mapping(text: str | bytes, what: str) -> dict[str, Any]:
    document = parse_yaml(text, what)
    if not isinstance(document, dict):
        raise InputError(f"{what} must be a YAML mapping, found {type(document).__name__}")
    return document


def validate_model(
    model: type[M], document: dict[str, Any], what: str, context: dict[str, Any] | None = None
) -> M:
    """Validate a parsed document as ``model``; errors name the field."""
    try:
        return model.model_validate(document, context=context)
    except ValidationError as exc:
        raise InputError(describe(exc, what)) from None


def read_text(path: Path, what: str) -> bytes:
    """Read a configuration file, naming it (and refusing oversized files) on failure."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise InputError(f"{what} {path} is {size} bytes; the limit is {MAX_YAML_BYTES}")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} path is a directory, not a file: {path}") from None
    except PermissionError:
        raise InputError(f"{what} file is not readable: {path}") from None


def load_charter(path: Path | None = None) -> Charter:
    """The charter at ``path``, or the default charter shipped with thirdway."""
    if path is None:
        return parse_charter(default_charter_text(), "default charter")
    return parse_charter(read_text(path, "charter"), f"charter {path}")


def parse_charter(text: str | bytes, what: str = "charter") -> Charter:
    """Validate charter YAML. A charter must hold every clause the software enforces today,
    except a copy of a shipped superseded version (same hash), which is held to the clauses
    enforced while it was in force: ``--charter`` with charter 1.0's file still loads."""
    document = _mapping(text, what)
    shape_only = validate_model(Charter, document, what, {REQUIRED_CLAUSES_KEY: ()})
    entry = packaged_entry(shape_only.sha256)
    if entry is not None:
        return _as_packaged(entry, document, what)
    return validate_model(Charter, document, what)


def _as_packaged(entry: PackagedCharter, document: dict[str, Any], what: str) -> Charter:
    return validate_model(Charter, document, what, {REQUIRED_CLAUSES_KEY: entry.required_clauses})


def check_packaged(entry: PackagedCharter, text: str | bytes) -> Charter:
    """The charter ``text`` holds, which must be ``entry``'s: a file that hashes to anything
    else (edited, corrupted, replaced) is refused, naming both hashes."""
    what = f"packaged charter {entry.version} ({entry.resource})"
    charter = _as_packaged(entry, _mapping(text, what), what)
    if charter.sha256 != entry.sha256:
        raise InputError(
            f"{what} hashes to {charter.sha256}, not the {entry.sha256} events under charter "
            f"{entry.version} cite: the file was changed"
        )
    return charter


@functools.cache
def packaged_charter(sha256: str) -> Charter | None:
    """The shipped charter that events citing ``sha256`` were decided under, or None when
    thirdway never shipped one with that hash. :class:`InputError` when its file was changed."""
    entry = packaged_entry(sha256)
    if entry is None:
        return None
    text = resources.files("thirdway.charter").joinpath(entry.resource).read_bytes()
    return check_packaged(entry, text)


def default_charter_text() -> bytes:
    """The bytes of the packaged ``charter.yaml``."""
    return resources.files("thirdway.charter").joinpath("charter.yaml").read_bytes()


@functools.cache
def default_charter_sha256() -> str:
    """SHA-256 of the packaged charter (what a gateway built without a charter runs under)."""
    return load_charter().sha256
