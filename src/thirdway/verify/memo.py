"""A cache of values derived from one immutable object, kept while the object lives.

A gateway verifies many proposals against the same session's observations and the same
manifests. Normalising an 8 MiB observation, screening it for injections or hashing the manifests
gives the same result every time (the wire models are frozen), so it is done once per object.
This changes no result, only the time it takes: the verifier stays a pure function.

Entries are keyed by ``id(obj)`` and dropped by a weak-reference callback when ``obj`` dies, so
an id reused by a later object can never see a stale entry.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_entries: dict[tuple[int, str], tuple[weakref.ref[Any], Any]] = {}
_lock = threading.Lock()


def _forget(key: tuple[int, str]) -> Callable[[weakref.ref[Any]], None]:
    def callback(_ref: weakref.ref[Any]) -> None:
        with _lock:
            _entries.pop(key, None)

    return callback


def derived(obj: object, name: str, compute: Callable[[], T]) -> T:
    """Return ``compute()``, computed at most once per live ``obj`` and ``name``.

    Objects that cannot be weakly referenced are not cached (the value is computed each time).
    """
    key = (id(obj), name)
    entry = _entries.get(key)  # one dict read is atomic: no lock (writers hold it)
    if entry is not None and entry[0]() is obj:
        value: T = entry[1]
        return value
    value = compute()
    try:
        ref = weakref.ref(obj, _forget(key))
    except TypeError:
        return value
    with _lock:
        _entries[key] = (ref, value)
    return value
