"""The transparency log: checkpoints, entries, inclusion and consistency proofs. Any
authenticated principal may read them (the agent verifies the log as much as the operator);
an agent reads other agents' entries only as leaf hashes."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

from thirdway.service import schemas
from thirdway.service.deps import Caller, Svc
from thirdway.service.errors import ERROR_RESPONSES, ServiceError
from thirdway.service.limits import DEFAULT_PAGE, Cursor, Limit, next_cursor, start_of
from thirdway.service.state import Services

router = APIRouter(prefix="/v1/log", tags=["log"], responses=ERROR_RESPONSES)

Size = Annotated[int, Query(ge=0, le=2**62)]


def _latest_checkpoint(svc: Services) -> tuple[int, str]:
    """The newest stored checkpoint if it covers the whole log, else a freshly signed one."""
    log = svc.gate.log
    size = log.size()
    stored = log.checkpoints()
    if stored and _size_of(stored[-1]) == size:
        return size, stored[-1]
    note = log.checkpoint()
    return _size_of(note), note


def _size_of(note: str) -> int:
    return int(note.split("\n")[1])


def _entry(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {"value": value}


def _in_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ServiceError(f"{what} {value} is out of range: use {low} to {high}")


@router.get("/checkpoint", response_model=schemas.CheckpointBody)
def checkpoint(svc: Svc, who: Caller) -> schemas.CheckpointBody:
    """The log's signed checkpoint (C2SP tlog-checkpoint) for its current size."""
    size, note = _latest_checkpoint(svc)
    return schemas.CheckpointBody(size=size, root=svc.gate.log.root(size).hex(), checkpoint=note)


@router.get("/entries", response_model=schemas.Page[schemas.LogEntryBody])
def entries(
    svc: Svc, who: Caller, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> schemas.Page[schemas.LogEntryBody]:
    """Entries in order from ``cursor`` (an index), with their leaf hashes. Auditors and admins
    see every entry; an agent sees its own and only the leaf hashes of the rest."""
    log = svc.gate.log
    size = log.size()
    start = start_of(cursor)
    end = min(size, start + limit)
    items = []
    for i in range(start, end):
        entry = _entry(log.entry(i))
        leaf = log.leaf_hash_at(i).hex()
        if who.role == "agent" and entry.get("agent") != who.name:
            items.append(schemas.LogEntryBody(index=i, entry=None, leaf_hash=leaf, redacted=True))
        else:
            items.append(schemas.LogEntryBody(index=i, entry=entry, leaf_hash=leaf))
    return schemas.Page(items=items, next_cursor=next_cursor(start, len(items), size))


@router.get("/proofs/inclusion", response_model=schemas.InclusionProofBody)
def inclusion(
    svc: Svc, who: Caller, index: Size, size: Size | None = None
) -> schemas.InclusionProofBody:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` (default: all)."""
    log = svc.gate.log
    current = log.size()
    tree = current if size is None else size
    _in_range("size", tree, 1, current)
    _in_range("index", index, 0, tree - 1)
    proof = log.inclusion_proof(index, tree)
    return schemas.InclusionProofBody(
        index=index,
        size=tree,
        leaf_hash=log.leaf_hash_at(index).hex(),
        root=log.root(tree).hex(),
        proof=[p.hex() for p in proof],
    )


@router.get("/proofs/consistency", response_model=schemas.ConsistencyProofBody)
def consistency(
    svc: Svc, who: Caller, first: Size, second: Size | None = None
) -> schemas.ConsistencyProofBody:
    """RFC 9162 consistency proof between the trees of ``first`` and ``second`` entries."""
    log = svc.gate.log
    current = log.size()
    later = current if second is None else second
    _in_range("second", later, 1, current)
    _in_range("first", first, 1, later)
    proof = log.consistency_proof(first, later)
    return schemas.ConsistencyProofBody(
        first=first,
        second=later,
        first_root=log.root(first).hex(),
        second_root=log.root(later).hex(),
        proof=[p.hex() for p in proof],
    )
