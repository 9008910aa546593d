"""Garbage-collector settings for a long-running gateway process.

A gatekeeper allocates many short-lived objects per action (wire models, dumps, Datalog and
Cedar requests) and keeps few. With CPython's defaults the young generation is collected every
700 net allocations, and every so often a full collection walks every object the process holds,
the several hundred thousand that importing pydantic, cedarpy, biscuit, rich and typer created
included. On the 2-core benchmark VMs that full collection stalled one action in several
hundred for 65–140 ms (``thirdway bench gate``: the run's maximum latency), and the young
collections took up to a tenth of the CPU of an action.

:func:`tune_collector`, called once the process has started (modules imported, services open),
moves everything alive into the permanent generation (:func:`gc.freeze`: never scanned again)
and collects the young generation less often. Reference counting still frees almost everything
at once; only cyclic garbage waits a little longer. ``thirdway serve`` calls it in every worker
once its services are open, and ``thirdway bench gate`` calls it (as ``serve`` would) unless
told not to, for the length of the run only (:func:`tuned_collector`). A program that embeds a
:class:`~thirdway.gateway.Gatekeeper` may call it too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

YOUNG_THRESHOLD: Final = 20_000
"""Net allocations between young-generation collections (CPython's default is 700)."""


def tune_collector() -> None:
    """Freeze what the process holds now and raise the young generation's threshold (see the
    module docstring). Calling it again freezes what was created since; harmless."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextmanager
def tuned_collector() -> Iterator[None]:
    """:func:`tune_collector` for the length of a ``with`` block, then the thresholds as they
    were and nothing frozen (for a benchmark run inside another program, a test suite say)."""
    thresholds = gc.get_threshold()
    tune_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
