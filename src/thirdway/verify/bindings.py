"""Pair every value in the action's arguments with the binding that claims to explain it.

The walk follows the argument value and its binding side by side (``items`` into lists,
``fields`` into objects) and yields one :class:`Leaf` per scalar value, with the quote or
composed binding that covers it, or ``None`` where nothing does. Every value of the action
appears as a leaf exactly once, bound or not, so later checks (binding, provenance, screen)
see the whole action, not just the parts the chain chose to explain. Shape problems become
``incomplete`` issues here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pydantic import JsonValue

from thirdway.protocol import limits
from thirdway.protocol.models import (
    Binding,
    ComposedBinding,
    FieldsBinding,
    ItemsBinding,
    QuoteBinding,
)
from thirdway.verify import codes
from thirdway.verify.issues import Issue, issue
from thirdway.verify.transforms import type_name

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Leaf:
    """A scalar inside the action's arguments and the binding covering it (``None``: unbound)."""

    path: str
    value: Scalar
    binding: QuoteBinding | ComposedBinding | None


@dataclass
class Walk:
    """Result of pairing arguments with bindings."""

    leaves: list[Leaf] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    by_argument: dict[str, list[Leaf]] = field(default_factory=dict)
    """The leaves of each top-level argument."""


def scalars(value: JsonValue, path: str) -> Iterator[tuple[str, Scalar]]:
    """Every scalar in a JSON value with its path, depth-first, without recursion."""
    stack: list[tuple[str, JsonValue]] = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(current))))
        elif isinstance(current, dict):
            stack.extend((f"{where}.{k}", current[k]) for k in sorted(current, reverse=True))
        else:
            yield where, current


def walk(args: Mapping[str, JsonValue], bindings: Mapping[str, Binding]) -> Walk:
    """Pair each argument with its binding, in argument-name order."""
    result = Walk()
    for name in sorted(args):
        start = len(result.leaves)
        _pair(args[name], bindings.get(name), name, 1, result)
        result.by_argument[name] = result.leaves[start:]
    for name in sorted(set(bindings) - set(args)):
        result.issues.append(_extra(name, "the action has no such argument"))
    return result


def _pair(value: JsonValue, binding: Binding | None, path: str, depth: int, out: Walk) -> None:
    if binding is None:
        out.issues.append(
            issue(
                codes.MISSING_BINDING, f"argument '{path}' has no binding; say where it came from"
            )
        )
        _unbound(value, path, out)
    elif depth > limits.MAX_BINDING_DEPTH:
        out.issues.append(
            issue(
                codes.BINDING_TOO_DEEP,
                f"binding of '{path}' nests deeper than {limits.MAX_BINDING_DEPTH} levels",
            )
        )
        _unbound(value, path, out)
    elif isinstance(binding, ComposedBinding):
        out.leaves.extend(Leaf(p, v, binding) for p, v in scalars(value, path))
    elif isinstance(binding, QuoteBinding):
        if isinstance(value, list | dict):
            out.issues.append(_shape(path, value, "a quote", binding.step))
            _unbound(value, path, out)
        else:
            out.leaves.append(Leaf(path, value, binding))
    elif isinstance(binding, ItemsBinding):
        _pair_items(value, binding, path, depth, out)
    else:
        _pair_fields(value, binding, path, depth, out)


def _pair_items(value: JsonValue, binding: ItemsBinding, path: str, depth: int, out: Walk) -> None:
    if not isinstance(value, list):
        out.issues.append(_shape(path, value, "items"))
        _unbound(value, path, out)
        return
    for i, item in enumerate(value):
        inner = binding.items[i] if i < len(binding.items) else None
        _pair(item, inner, f"{path}[{i}]", depth + 1, out)
    for i in range(len(value), len(binding.items)):
        out.issues.append(_extra(f"{path}[{i}]", f"the list has {len(value)} items"))


def _pair_fields(
    value: JsonValue, binding: FieldsBinding, path: str, depth: int, out: Walk
) -> None:
    if not isinstance(value, dict):
        out.issues.append(_shape(path, value, "fields"))
        _unbound(value, path, out)
        return
    for key in sorted(value):
        _pair(value[key], binding.fields.get(key), f"{path}.{key}", depth + 1, out)
    for key in sorted(set(binding.fields) - set(value)):
        out.issues.append(_extra(f"{path}.{key}", "the object has no such field"))


def _unbound(value: JsonValue, path: str, out: Walk) -> None:
    out.leaves.extend(Leaf(p, v, None) for p, v in scalars(value, path))


def _shape(path: str, value: JsonValue, kind: str, step: str | None = None) -> Issue:
    hint = {"list": "items", "object": "fields"}.get(type_name(value), "a quote or composed")
    return issue(
        codes.BINDING_SHAPE,
        f"argument '{path}' is a {type_name(value)} but is bound with {kind}; use {hint}",
        step=step,
    )


def _extra(path: str, why: str) -> Issue:
    return issue(codes.EXTRA_BINDING, f"binding for '{path}' binds nothing: {why}")


def binding_steps(bindings: Mapping[str, Binding]) -> list[tuple[str, str]]:
    """Every ``(argument path, step id)`` a binding names, whether or not the argument exists.

    Iterative and depth-bounded like the walk, so a hostile nesting cannot exhaust the stack.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Binding, int]] = [(n, bindings[n], 1) for n in sorted(bindings)]
    while stack:
        path, binding, depth = stack.pop()
        if isinstance(binding, QuoteBinding):
            found.append((path, binding.step))
        elif isinstance(binding, ComposedBinding):
            found.append((path, binding.composed))
        elif depth <= limits.MAX_BINDING_DEPTH:
            if isinstance(binding, ItemsBinding):
                stack.extend((f"{path}[{i}]", b, depth + 1) for i, b in enumerate(binding.items))
            else:
                stack.extend(
                    (f"{path}.{k}", binding.fields[k], depth + 1) for k in sorted(binding.fields)
                )
    return sorted(found)
