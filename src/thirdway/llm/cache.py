"""A response cache keyed by the SHA-256 of the canonical request.

Model calls are slow (seconds locally, money remotely) and, at temperature 0 with a fixed seed,
repeatable, so probes and judges reuse earlier answers. The key is the RFC 8785 hash of everything
that can change the answer (model id, messages, schema, token budget, seed, temperature), so any
change to any of them is a miss. Entries live in one SQLite file under ``THIRDWAY_CACHE_DIR``
(default ``~/.cache/thirdway``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thirdway.llm.base import ChatModel, Message, ModelError
from thirdway.protocol.canonical import canonical_sha256

CACHE_ENV = "THIRDWAY_CACHE_DIR"
CACHE_FILE = "llm-responses.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    response TEXT NOT NULL
)
"""


def default_cache_dir() -> Path:
    """``$THIRDWAY_CACHE_DIR`` if set, else ``~/.cache/thirdway``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "thirdway"


def request_key(
    model_id: str,
    messages: Sequence[Message],
    *,
    json_schema: dict[str, Any] | None,
    max_tokens: int,
    seed: int,
) -> str:
    """SHA-256 (hex) of the canonical JSON of one request."""
    request = {
        "model": model_id,
        "messages": [dict(message) for message in messages],
        "json_schema": json_schema,
        "max_tokens": max_tokens,
        "seed": seed,
        "temperature": 0,
    }
    return canonical_sha256(request)


class ResponseCache:
    """SQLite store of replies by request key; safe to share between threads."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or default_cache_dir()) / CACHE_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ModelError(
                f"cannot open the model response cache at {self.path}: {exc}"
            ) from None
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT response FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, model_id: str, response: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model_id, response) VALUES (?, ?, ?)",
                (key, model_id, response),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedModel:
    """A :class:`ChatModel` that answers repeated requests from a :class:`ResponseCache`."""

    def __init__(self, inner: ChatModel, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int,
        seed: int = 0,
    ) -> str:
        key = request_key(
            self.model_id, messages, json_schema=json_schema, max_tokens=max_tokens, seed=seed
        )
        cached = self.cache.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        response = self.inner.complete(
            messages, json_schema=json_schema, max_tokens=max_tokens, seed=seed
        )
        self.cache.put(key, self.model_id, response)
        return response
