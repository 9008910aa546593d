"""Shared helpers of the verifier tests: the test manifests and the labelled corpus."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Observation, Proposal

HERE = Path(__file__).parent / "verify"
CORPUS = HERE / "corpus"


def load_test_manifests() -> ManifestSet:
    """The fixed manifests the corpus expectations were written against."""
    return ManifestSet.model_validate(yaml.safe_load((HERE / "manifests.yaml").read_text()))


@dataclass
class Case:
    """One labelled corpus case."""

    name: str
    about: str
    observations: list[dict[str, Any]]
    proposal: dict[str, Any]
    verdict: str
    codes: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    recorded_before: int | None = None
    source: str = ""

    def parsed(self) -> tuple[Proposal, list[Observation], list[Proposal]]:
        """Validate through the wire models, as the gateway would."""
        return (
            Proposal.model_validate(self.proposal),
            [Observation.model_validate(o) for o in self.observations],
            [Proposal.model_validate(p) for p in self.history],
        )


def load_corpus() -> list[Case]:
    """Every case of every corpus file, in file order."""
    cases: list[Case] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        scenarios = document.get("scenarios", {})
        for raw in document["cases"]:
            observations = raw.get("observations") or scenarios[raw["scenario"]]
            cases.append(
                Case(
                    name=raw["name"],
                    about=raw.get("about", ""),
                    observations=observations,
                    proposal=raw["proposal"],
                    verdict=raw["expect"]["verdict"],
                    codes=list(raw["expect"]["codes"]),
                    history=raw.get("history", []),
                    recorded_before=raw.get("recorded_before"),
                    source=path.name,
                )
            )
    return cases
