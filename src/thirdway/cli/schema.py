"""``thirdway schema``: write the JSON Schemas of the wire format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thirdway.cli.common import console, friendly_errors
from thirdway.protocol.schema import write_schemas


@friendly_errors
def schema(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the schemas into.")] = Path(
        "schema"
    ),
) -> None:
    """Write one JSON Schema per thirdway/1 wire model."""
    for path in write_schemas(out):
        console.print(f"wrote {path}")
