"""Canonical bytes (RFC 8785, JSON Canonicalization Scheme) and the hashes built on them.

Every hash in thirdway is taken over these bytes, so the same entry hashes the same in any
language and on any machine. Models are dumped with their wire aliases and every field present
(``null`` included): one value, one encoding.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from pydantic import BaseModel

from thirdway.errors import InputError


def canonical_json(value: BaseModel | Any) -> bytes:
    """Return the RFC 8785 encoding of a model or a plain JSON value."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
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
