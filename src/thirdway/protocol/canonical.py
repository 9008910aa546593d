"""Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and the hashes built on them.

Every hash in thirdway is taken over these bytes, so the same entry hashes the same in any
language and on any machine. Models are dumped with their wire aliases and every field present
(``null`` included): one value, one encoding.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785
from pydantic import BaseModel

from thirdway.errors import InputError

_MAX_SAFE_INTEGER = 2**53 - 1
_ASTRAL = "\U00010000"


class _NeedsReference(Exception):
    """The value holds something the fast path cannot encode exactly like RFC 8785."""


def _prepare(value: Any) -> Any:
    """Copy ``value`` into a form whose ``json.dumps`` is byte-identical to RFC 8785.

    Python's JSON encoder already agrees with RFC 8785 on strings (same escapes), integers,
    booleans and null, and with ``sort_keys`` on key order as long as no key holds a character
    outside the Basic Multilingual Plane (RFC 8785 sorts by UTF-16 code units, Python by code
    points). Floats agree when they are integral and safe integers (written as integers) or
    when they are not integral and ``repr`` writes them without an exponent. Anything else goes
    to the reference implementation.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return value
        raise _NeedsReference
    if kind is float:
        if value.is_integer():
            # Up to 2**53 - 1 RFC 8785 writes the integer's digits; above, it writes the
            # shortest round-trip digits padded with zeros, which only the reference knows.
            if abs(value) <= _MAX_SAFE_INTEGER:
                return int(value)
            raise _NeedsReference
        if 1e-4 <= abs(value) < 1e16:
            return value
        raise _NeedsReference
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or (key and max(key) >= _ASTRAL):
                raise _NeedsReference
            out[key] = _prepare(item)
        return out
    if kind is list or kind is tuple:
        return [_prepare(item) for item in value]
    raise _NeedsReference


def _fast_canonical(value: Any) -> bytes:
    text = json.dumps(
        _prepare(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: let the reference name the problem
        raise _NeedsReference from exc


def canonical_json(value: BaseModel | Any) -> bytes:
    """Return the RFC 8785 encoding of a model or a plain JSON value.

    Common values take an exact fast path through the standard library's encoder (property-tested
    byte for byte against ``rfc8785``); the rest, and every error, go through ``rfc8785`` itself.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    try:
        return _fast_canonical(value)
    except (_NeedsReference, RecursionError):
        pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InputError(f"value cannot be canonicalised as JSON: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(value: BaseModel | Any) -> str:
    """Lower-case hex SHA-256 of :func:`canonical_json`."""
    return sha256_hex(canonical_json(value))
