"""JSON Schema export of the wire models (``thirdway schema``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from thirdway.protocol.models import (
    LogEntry,
    Observation,
    Proposal,
    TrustEvent,
    Verdict,
)

SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "observation": Observation,
    "proposal": Proposal,
    "verdict": Verdict,
    "trust-event": TrustEvent,
    "log-entry": LogEntry,
}


def schema_for(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://thirdway.dev/schema/thirdway-1/{model.__name__}.json"
    return schema


def write_schemas(out_dir: Path) -> list[Path]:
    """Write one ``<name>.schema.json`` per wire model; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMA_MODELS.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema_for(model), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
