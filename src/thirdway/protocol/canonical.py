"""Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and the hashes built on them.

Every hash in thirdway is taken over these bytes, so the same entry hashes the same in any
language and on any machine. Models are dumped with their wire aliases and every field present
(``null`` included): one value, one encoding.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
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


def orjson_canonical(document: Any, *, owned: bool) -> bytes | None:
    """The RFC 8785 bytes of ``document`` written by ``orjson``, or None where only a slower
    path writes them exactly.

    For a document :func:`orjson_ready` accepts, ``orjson`` with sorted keys writes exactly the
    RFC 8785 bytes: no spaces, ``"`` ``\\`` and control characters escaped (``\\b \\t \\n
    \\f \\r``, else lower-case ``\\u00xx``), everything else as UTF-8, keys in code-point
    order (RFC 8785 sorts by UTF-16 code units: the same order inside the BMP), floats as
    ``repr`` writes them. It is about twenty times faster than :func:`json.dumps` and needs no
    copy. ``owned`` says the caller made ``document`` (a fresh dump) so integral floats may be
    made integers in place; otherwise a document holding one is left to the other paths.
    """
    if not orjson_ready(document, owned=owned):
        return None
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # a lone surrogate: let the reference name the problem
        return None


def orjson_ready(document: object, *, owned: bool) -> bool:
    """Whether ``orjson`` writes ``document`` exactly as RFC 8785 does (after integral floats
    are made integers in place, when the document is ``owned``; see :func:`orjson_canonical`).

    Strings, booleans, nulls, integers within I-JSON's range, lists and objects with BMP keys
    qualify, and so do other floats from 1e-4 to 1e16, which both write as Python's ``repr``
    does (the standard-library path relies on the same). Anything else does not.
    """
    # The common cases are tested inline, strings first: this walk runs for every log entry,
    # hash and argument check (some twenty times per gated action), and a call per leaf was
    # most of its time.
    stack = [document]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            for key, child in item.items():
                if type(key) is not str or (not key.isascii() and max(key) >= _ASTRAL):
                    return False
                kind = type(child)
                if kind is str or kind is bool or child is None:
                    continue
                if kind is dict or kind is list:
                    stack.append(child)
                elif kind is int:
                    if not -_MAX_SAFE_INTEGER <= child <= _MAX_SAFE_INTEGER:
                        return False
                elif kind is not float or not _float_ready(item, key, child, owned):
                    return False
        elif type(item) is list:
            for position, child in enumerate(item):
                kind = type(child)
                if kind is str or kind is bool or child is None:
                    continue
                if kind is dict or kind is list:
                    stack.append(child)
                elif kind is int:
                    if not -_MAX_SAFE_INTEGER <= child <= _MAX_SAFE_INTEGER:
                        return False
                elif kind is not float or not _float_ready(item, position, child, owned):
                    return False
        else:
            return False
    return True


def _float_ready(container: Any, key: Any, value: float, owned: bool) -> bool:
    if value.is_integer():
        # Past 2**53 - 1 RFC 8785 writes shortest digits padded with zeros: only the reference.
        if not owned or abs(value) > _MAX_SAFE_INTEGER:
            return False
        container[key] = int(value)
        return True
    return 1e-4 <= abs(value) < 1e16


def canonical_json(value: BaseModel | Any) -> bytes:
    """Return the RFC 8785 encoding of a model or a plain JSON value.

    Common values take an exact fast path (``orjson``, else the standard library's encoder;
    both property-tested byte for byte against ``rfc8785``); the rest, and every error, go
    through ``rfc8785`` itself.
    """
    owned = isinstance(value, BaseModel)
    document: Any = value.model_dump(mode="json", by_alias=True) if owned else value
    fast = orjson_canonical(document, owned=owned)  # a model's dump is fresh: ours to change
    if fast is not None:
        return fast
    try:
        return _fast_canonical(document)
    except (_NeedsReference, RecursionError):
        pass
    try:
        return rfc8785.dumps(document)
    except RecursionError:
        raise InputError("value cannot be canonicalised as JSON: it is nested too deeply") from None
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InputError(f"value cannot be canonicalised as JSON: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(value: BaseModel | Any) -> str:
    """Lower-case hex SHA-256 of :func:`canonical_json`."""
    return sha256_hex(canonical_json(value))
