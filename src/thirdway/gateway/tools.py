"""The tool registry: Python callables the gateway hosts, each with its manifest.

A registered function is never called directly by the gatekeeper: :meth:`ToolRegistry.lock`
wraps every one as a :class:`~thirdway.capability.LockedTool`, so the only way to run it is with
a capability token for exactly that call. A tool without a manifest cannot be registered: its risk
would be unknown, and the gate refuses what it cannot classify.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from thirdway.capability import CapabilityVerifier, LockedTool, SpentSet
from thirdway.errors import InputError
from thirdway.protocol.manifest import ManifestSet, ToolManifest
from thirdway.protocol.models import Id, Model

F = TypeVar("F", bound=Callable[..., Any])


class _Name(Model):
    name: Id


@dataclass(frozen=True)
class HostedTool:
    """One registered tool: the plain function and its manifest."""

    name: str
    func: Callable[..., Any]
    manifest: ToolManifest


class ToolRegistry:
    """Named tools with manifests. Register before the gatekeeper is built; it copies the set."""

    def __init__(self) -> None:
        self._tools: dict[str, HostedTool] = {}
        self._lock = threading.Lock()

    def register(
        self, func: Callable[..., Any], manifest: ToolManifest, *, name: str | None = None
    ) -> HostedTool:
        """Host ``func`` as the tool ``manifest.tool`` (``name`` must agree when given)."""
        if not callable(func):
            raise InputError(f"a tool must be callable, not {type(func).__name__}")
        if not isinstance(manifest, ToolManifest):
            raise InputError(f"tool manifests are ToolManifest objects, not {type(manifest)}")
        tool_name = manifest.tool if name is None else _valid_name(name)
        if tool_name != manifest.tool:
            raise InputError(
                f"tool name {tool_name!r} differs from its manifest's {manifest.tool!r}"
            )
        hosted = HostedTool(tool_name, func, manifest)
        with self._lock:
            if tool_name in self._tools:
                raise InputError(f"tool {tool_name!r} is already registered")
            self._tools[tool_name] = hosted
        return hosted

    def tool(self, manifest: ToolManifest) -> Callable[[F], F]:
        """Decorator form of :meth:`register`; returns the function unchanged."""

        def wrap(func: F) -> F:
            self.register(func, manifest)
            return func

        return wrap

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[HostedTool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def merged_manifests(self, manifests: ManifestSet) -> ManifestSet:
        """``manifests`` plus every hosted tool's manifest. A tool described differently in both
        is an error: which rules apply must never be ambiguous."""
        tools = dict(manifests.tools)
        for hosted in self:
            known = tools.get(hosted.name)
            if known is not None and known != hosted.manifest:
                raise InputError(
                    f"tool {hosted.name!r} has a different manifest in the registry than in the "
                    "manifest set; keep one"
                )
            tools[hosted.name] = hosted.manifest
        return ManifestSet(version=manifests.version, tools=tools)

    def lock(
        self,
        *,
        verifier: CapabilityVerifier,
        spent_set: SpentSet,
        clock: Callable[[], float],
    ) -> dict[str, LockedTool[Any]]:
        """Every hosted tool wrapped so that it runs only with a valid, unspent token."""
        return {
            hosted.name: LockedTool(
                hosted.func, hosted.name, verifier=verifier, spent_set=spent_set, clock=clock
            )
            for hosted in self
        }


def _valid_name(name: str) -> str:
    try:
        return _Name(name=name).name
    except ValidationError as exc:
        raise InputError(f"invalid tool name {name!r}: {exc.errors()[0]['msg']}") from None


def render_result(value: Any) -> str:
    """A tool's return value as the text of a data observation (what the agent reads and cites).

    Text stays as it is; models and JSON values become JSON (non-ASCII kept, so a quote of the
    result matches what the agent saw); anything else its ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json(by_alias=True)
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)
