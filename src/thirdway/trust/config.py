"""Loading the tiers configuration, and the context (charter + tiers) every rule reads."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from thirdway.charter.load import load_charter, load_model, read_text
from thirdway.trust.model import TiersConfig
from thirdway.trust.rules import Context


def parse_tiers(text: str | bytes, what: str = "tiers") -> TiersConfig:
    """Validate tiers YAML."""
    return load_model(TiersConfig, text, what)


def load_tiers(path: Path | None = None) -> TiersConfig:
    """The tiers at ``path``, or the defaults shipped with thirdway (DESIGN's table)."""
    if path is None:
        text = resources.files("thirdway.trust").joinpath("tiers.yaml").read_bytes()
        return parse_tiers(text, "default tiers")
    return parse_tiers(read_text(path, "tiers"), f"tiers {path}")


def load_context(charter: Path | None = None, tiers: Path | None = None) -> Context:
    """Charter and tiers from files, each defaulting to the shipped one."""
    return Context(charter=load_charter(charter), tiers=load_tiers(tiers))
