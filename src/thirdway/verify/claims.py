"""Typed claims: a small arithmetic/boolean language, decided with z3.

A step may attach ``typed: {"expr": "total == rent + fee", "vars": {"rent": 1100, "fee": 100,
"total": 1200}}``. The verifier checks that all of a chain's typed claims can hold together
(``unsatisfiable_claims``, deception: the agent asserts things that cannot all be true), then that
they can hold together with the typed claims of the agent's earlier *passing* proposals in the
session (``contradiction``, deception: the agent now says the opposite of what it said before).

Names are session-wide facts: ``balance`` in one proposal is ``balance`` in the next, so a
changed fact needs a new name. ``vars`` pins a name to a value; a name bound to a boolean is a
boolean everywhere, every other name is a real number.

The grammar is a whitelist of Python expression nodes, parsed with :func:`ast.parse` in ``eval``
mode: numbers, ``True``/``False``, names, ``+ - * /`` (``*`` and ``/`` need a constant on one side
— the divisor for ``/`` — which keeps the logic linear and decidable), comparisons (chainable),
``and``/``or``/``not`` and parentheses, nested at most :data:`MAX_DEPTH` deep. Anything else is
``bad_typed_claim``. z3 runs in a fresh context per verification with a deterministic resource
limit (no wall clock), so the same claims always get the same answer; running out of it is
``undecided_claims`` (incomplete, never a pass).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeAlias

import z3

MAX_DEPTH = 64
"""Deepest expression tree accepted; deeper ones are refused before any recursion."""

_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Name,
    ast.Load,
    ast.Constant,
)


class ClaimError(ValueError):
    """A typed claim outside the grammar or ill-typed; the message says which part."""


@dataclass(frozen=True)
class Claim:
    """One typed claim with a label for messages (``s3`` or ``earlier proposal 2, step s1``)."""

    label: str
    expr: str
    vars: Mapping[str, float | int | bool]


def parse(expr: str) -> ast.Expression:
    """Parse and whitelist; raise :class:`ClaimError` naming what is not allowed."""
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ClaimError(f"not an expression: {type(exc).__name__}") from None
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ClaimError(f"nested deeper than {MAX_DEPTH}")
        if not isinstance(node, _NODES):
            raise ClaimError(f"'{type(node).__name__}' is not allowed")
        if isinstance(node, ast.Constant) and not _is_number_or_bool(node.value):
            raise ClaimError(f"constant {node.value!r} is not a number or boolean")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def _is_number_or_bool(value: object) -> bool:
    if isinstance(value, bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _rational(value: int | float) -> Fraction:
    return Fraction(Decimal(repr(value))) if isinstance(value, float) else Fraction(value)


Term: TypeAlias = Any
"""A z3 term (``ArithRef`` or ``BoolRef``); z3 ships no type hints."""


class Translator:
    """Turns whitelisted trees into z3 terms, checking sorts on the way."""

    def __init__(self, ctx: z3.Context, booleans: frozenset[str]) -> None:
        self.ctx = ctx
        self.booleans = booleans

    def name(self, name: str) -> Term:
        if name in self.booleans:
            return z3.Bool(name, self.ctx)
        return z3.Real(name, self.ctx)

    def value(self, value: int | float | bool) -> Term:
        if isinstance(value, bool):
            return z3.BoolVal(value, self.ctx)
        return self.constant(_rational(value))

    def constant(self, value: Fraction) -> Term:
        return z3.RealVal(f"{value.numerator}/{value.denominator}", self.ctx)

    def claim(self, claim: Claim) -> Term:
        """The claim's formula conjoined with its ``vars`` pins."""
        parts = [self.boolean(parse(claim.expr).body)]
        for name in sorted(claim.vars):
            value = claim.vars[name]
            if isinstance(value, bool) != (name in self.booleans):
                raise ClaimError(f"'{name}' is used both as a boolean and as a number")
            parts.append(self.name(name) == self.value(value))
        return z3.And(*parts) if len(parts) > 1 else parts[0]

    def boolean(self, node: ast.expr) -> Term:
        term = self.term(node)
        if not isinstance(term, z3.BoolRef):
            raise ClaimError("a number where a true/false statement is needed")
        return term

    def real(self, node: ast.expr) -> Term:
        term = self.term(node)
        if isinstance(term, z3.BoolRef):
            raise ClaimError("a true/false statement where a number is needed")
        return term

    def term(self, node: ast.expr) -> Term:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, bool | int | float):
                raise ClaimError(f"constant {node.value!r} is not a number or boolean")
            return self.value(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.BoolOp):
            values = [self.boolean(v) for v in node.values]
            return z3.And(*values) if isinstance(node.op, ast.And) else z3.Or(*values)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return z3.Not(self.boolean(node.operand))
            operand = self.real(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            return self.arithmetic(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise ClaimError(f"'{type(node).__name__}' is not allowed")

    def arithmetic(self, node: ast.BinOp) -> Term:
        left, right = self.real(node.left), self.real(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            if not (_constant(node.left) or _constant(node.right)):
                raise ClaimError("'*' needs a constant on one side (claims stay linear)")
            return left * right
        divisor = _constant(node.right)
        if divisor is None or divisor == 0:
            raise ClaimError("'/' needs a nonzero constant divisor")
        return left / self.constant(divisor)

    def compare(self, node: ast.Compare) -> Term:
        terms = [self.term(node.left), *(self.term(c) for c in node.comparators)]
        parts: list[Term] = []
        for op, left, right in zip(node.ops, terms, terms[1:], strict=False):
            if isinstance(op, ast.Eq | ast.NotEq):
                if isinstance(left, z3.BoolRef) != isinstance(right, z3.BoolRef):
                    raise ClaimError("'==' between a number and a true/false statement")
                parts.append(left == right if isinstance(op, ast.Eq) else left != right)
                continue
            if isinstance(left, z3.BoolRef) or isinstance(right, z3.BoolRef):
                raise ClaimError("ordering true/false statements")
            parts.append(_order(op, left, right))
        return z3.And(*parts) if len(parts) > 1 else parts[0]


def _order(op: ast.cmpop, left: Term, right: Term) -> Term:
    if isinstance(op, ast.Lt):
        return left < right
    if isinstance(op, ast.LtE):
        return left <= right
    if isinstance(op, ast.Gt):
        return left > right
    return left >= right


def _constant(node: ast.expr) -> Fraction | None:
    """The value of a subtree built only of numbers and ``+ - * /`` (so ``1/3 * x`` is linear)."""
    stack: list[ast.expr] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Constant):
            if isinstance(current.value, bool) or not isinstance(current.value, int | float):
                return None
        elif isinstance(current, ast.UnaryOp) and isinstance(current.op, ast.USub | ast.UAdd):
            stack.append(current.operand)
        elif isinstance(current, ast.BinOp):
            stack.extend((current.left, current.right))
        else:
            return None
    return _evaluate(node)


def _evaluate(node: ast.expr) -> Fraction | None:
    if isinstance(node, ast.Constant):
        value = node.value
        return _rational(value) if isinstance(value, int | float) else None
    if isinstance(node, ast.UnaryOp):
        inner = _evaluate(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    assert isinstance(node, ast.BinOp)
    left, right = _evaluate(node.left), _evaluate(node.right)
    if left is None or right is None:
        return None
    if isinstance(node.op, ast.Add):
        return left + right
    if isinstance(node.op, ast.Sub):
        return left - right
    if isinstance(node.op, ast.Mult):
        return left * right
    return None if right == 0 else left / right


def booleans_of(claims: Sequence[Claim]) -> dict[str, set[bool]]:
    """For every pinned name, whether it was pinned to a boolean (True) or a number (False)."""
    kinds: dict[str, set[bool]] = {}
    for claim in claims:
        for name, value in claim.vars.items():
            kinds.setdefault(name, set()).add(isinstance(value, bool))
    return kinds


@dataclass(frozen=True)
class Outcome:
    """``sat``, ``unsat`` (with the labels of a conflicting subset), or ``unknown``."""

    result: str
    core: tuple[str, ...] = ()


def solve(formulas: Sequence[tuple[str, Term]], ctx: z3.Context, rlimit: int) -> Outcome:
    """Decide the conjunction; on ``unsat`` name the claims of an unsatisfiable core."""
    solver = z3.Solver(ctx=ctx)
    solver.set("rlimit", rlimit)
    labels: dict[int, str] = {}
    for label, formula in formulas:
        tracker = z3.FreshBool("track", ctx)  # distinct from every name a claim can use
        labels[tracker.get_id()] = label
        solver.assert_and_track(formula, tracker)
    result = solver.check()
    if result == z3.sat:
        return Outcome("sat")
    if result == z3.unsat:
        core = sorted({labels[t.get_id()] for t in solver.unsat_core()})
        return Outcome("unsat", tuple(core))
    return Outcome("unknown")
