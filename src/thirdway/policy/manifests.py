"""Load tool manifests from YAML.

A manifest file names a suite and maps tool names to their manifests (see
``manifests/agentdojo/banking.yaml`` for the format and the meaning of each rule)::

    suite: banking
    version: "1"
    tools:
      send_money:
        risk: financial
        reversible: false
        external: true
        args:
          recipient: {provenance: principal-or-designated, on_violation: deny}
          amount: not-undesignated        # shorthand for {provenance: not-undesignated}
        limits: {amount: 5000}

``load_manifests`` reads one such file or every ``*.yaml`` of a directory (not recursive) and
merges them into one :class:`~thirdway.protocol.manifest.ManifestSet`. Two files may describe
the same tool only identically (AgentDojo's travel and workspace suites share ``send_email``); a
tool described two ways is refused, since either choice would silently weaken one of them.
Every error names the file and the field.

The AgentDojo manifests ship inside the package (next to this module, in ``manifests/``, a data
directory, not a Python package) and are found with :mod:`importlib.resources`, so they load from
a wheel, a zip or an editable checkout alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from thirdway.errors import InputError
from thirdway.protocol.manifest import ManifestSet, ToolManifest

__all__ = ["MAX_MANIFEST_BYTES", "load_manifests", "parse_manifest_file", "shipped_manifests"]

MAX_MANIFEST_BYTES = 1024 * 1024
"""A manifest file is a few KiB; a larger one is refused before YAML parses it."""

_TOP_LEVEL = frozenset({"suite", "version", "tools"})
SHIPPED = ("manifests", "agentdojo")
"""Where the shipped manifests sit, relative to the ``thirdway.policy`` package."""


def shipped_manifests() -> Traversable:
    """The directory of the AgentDojo manifests shipped with thirdway."""
    folder = resources.files("thirdway.policy")
    for part in SHIPPED:
        folder = folder / part
    return folder


def load_manifests(path: Path | None = None) -> ManifestSet:
    """Manifests from a ``*.yaml`` file, or every ``*.yaml`` of a directory; ``None`` loads the
    shipped AgentDojo manifests. Raises :class:`InputError` naming the file and field at fault."""
    if path is None:
        return _merge(_read_all(_yaml_files(shipped_manifests())))
    if path.is_dir():
        files = sorted(path.glob("*.yaml"))
        if not files:
            raise InputError(f"{path}: no *.yaml manifest files in this directory")
        return _merge(_read_all(files))
    if not path.exists():
        raise InputError(f"{path}: manifest file not found")
    return _merge(_read_all([path]))


def _yaml_files(folder: Traversable) -> list[Traversable]:
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".yaml")),
        key=lambda entry: entry.name,
    )
    if not files:
        raise InputError(f"{folder}: the shipped manifests are missing from this installation")
    return files


def _read_all(files: Iterable[Path | Traversable]) -> Iterator[tuple[str, ManifestSet]]:
    for file in files:
        name = str(file)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise InputError(f"{name}: cannot read manifest file ({exc.strerror or exc})") from None
        yield name, parse_manifest_file(raw, name)


def parse_manifest_file(raw: bytes, name: str) -> ManifestSet:
    """Parse the bytes of one manifest file (``name`` is only used in error messages)."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InputError(f"{name}: {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"{name}: malformed YAML{line} ({problem})") from None
    if not isinstance(data, dict):
        raise InputError(f"{name}: a manifest file must be a mapping with a 'tools' key")
    unknown = sorted(str(key) for key in data if key not in _TOP_LEVEL)
    if unknown:
        raise InputError(f"{name}: unknown top-level field '{unknown[0]}'")
    tools = data.get("tools")
    if not isinstance(tools, dict) or not tools:
        raise InputError(f"{name}: field 'tools' must be a non-empty mapping of tool to manifest")
    version = data.get("version", "1")
    if not isinstance(version, str):
        raise InputError(f"{name}: field 'version' must be a string (quote it: \"1\")")
    manifests = {}
    for tool, spec in tools.items():
        manifests[str(tool)] = _tool(name, tool, spec)
    return _validated(name, "", lambda: ManifestSet(version=version, tools=manifests))


def _tool(name: str, tool: Any, spec: Any) -> ToolManifest:
    where = f"tools.{tool}"
    if not isinstance(tool, str):
        raise InputError(f"{name}: field '{where}': a tool name must be a string")
    if not isinstance(spec, dict):
        raise InputError(f"{name}: field '{where}' must be a mapping")
    if "tool" in spec and spec["tool"] != tool:
        raise InputError(f"{name}: field '{where}.tool' says '{spec['tool']}', not '{tool}'")
    fields = dict(spec, tool=tool)
    args = fields.get("args")
    if isinstance(args, dict):
        fields["args"] = {arg: _rule(rule) for arg, rule in args.items()}
    return _validated(name, where, lambda: ToolManifest.model_validate(fields))


def _rule(rule: Any) -> Any:
    """``arg: principal`` is shorthand for ``arg: {provenance: principal}``."""
    return {"provenance": rule} if isinstance(rule, str) else rule


T = TypeVar("T")


def _validated(name: str, where: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(part) for part in error["loc"])
        field = ".".join(part for part in (where, path) if part)
        raise InputError(f"{name}: field '{field}': {error['msg']}") from None


def _merge(loaded: Iterable[tuple[str, ManifestSet]]) -> ManifestSet:
    """One set from several files; the same tool twice must be the same manifest."""
    tools: dict[str, ToolManifest] = {}
    origin: dict[str, str] = {}
    version: str | None = None
    version_origin = ""
    for name, manifests in loaded:
        if version is not None and manifests.version != version:
            raise InputError(
                f"{name}: version '{manifests.version}' differs from '{version}' in "
                f"{version_origin}; manifests of one set share a version"
            )
        version, version_origin = manifests.version, name
        for tool, manifest in manifests.tools.items():
            if tool in tools and tools[tool] != manifest:
                raise InputError(
                    f"{name}: tool '{tool}' is also described, differently, in {origin[tool]}; "
                    "make the two descriptions identical or rename one tool"
                )
            tools.setdefault(tool, manifest)
            origin.setdefault(tool, name)
    return ManifestSet(version=version or "1", tools=tools)
