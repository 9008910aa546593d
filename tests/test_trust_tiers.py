"""The tiers configuration: DESIGN's defaults, and refusal of a malformed file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from thirdway.errors import InputError
from thirdway.protocol.manifest import RISK_ORDER
from thirdway.trust.config import load_tiers, parse_tiers

ALLOWED_WITHOUT_CONDITION = {"allow"}
ALLOWED_UNDER_CONDITION = {"allow-if-reversible", "allow-if-clean-provenance", "allow-under-limit"}


def _document() -> dict:  # type: ignore[type-arg]
    text = resources.files("thirdway.trust").joinpath("tiers.yaml").read_text()
    return yaml.safe_load(text)


def test_defaults_are_designs_table() -> None:
    tiers = load_tiers()
    assert [t.name for t in tiers.tiers] == [
        "quarantined",
        "probation",
        "standard",
        "trusted",
        "partner",
    ]
    assert [t.spot_audit_percent for t in tiers.tiers] == [100, 50, 10, 5, 2]
    # tier 0: read-only tools; everything else needs a dialogue.
    assert [r for r in RISK_ORDER if tiers.permission(0, r) != "dialogue"] == ["read"]
    assert tiers.permission(1, "write") == "allow-if-reversible"
    assert tiers.permission(1, "external") == "dialogue"
    assert tiers.permission(2, "external") == "allow-if-clean-provenance"
    assert tiers.permission(3, "write") == "allow"
    assert tiers.permission(3, "financial") == "allow-under-limit"
    assert tiers.permission(3, "critical") == "dialogue"
    assert tiers.permission(4, "critical") == "auditor-approval"


def _rank(permission: str) -> int:
    if permission in ALLOWED_WITHOUT_CONDITION:
        return 2
    return 1 if permission in ALLOWED_UNDER_CONDITION else 0


def test_a_higher_tier_never_may_do_less() -> None:
    tiers = load_tiers()
    for lower, higher in zip(tiers.tiers, tiers.tiers[1:], strict=False):
        for risk in RISK_ORDER:
            assert _rank(higher.permissions[risk]) >= _rank(lower.permissions[risk]), (
                higher.tier,
                risk,
            )


def test_load_from_a_file_matches_the_default(tmp_path: Path) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(_document()))
    assert load_tiers(path) == load_tiers()
    assert load_tiers(path).sha256 == load_tiers().sha256


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["tiers"].reverse(), "tiers must be listed as 0, 1, 2, 3, 4"),
        (lambda d: d["tiers"].pop(), "tiers: List should have at least 5 items"),
        (
            lambda d: d["tiers"][1]["permissions"].pop("external"),
            "permissions missing for external",
        ),
        (lambda d: d["tiers"][1]["permissions"].update(read="sure"), "tiers.1.permissions.read"),
        (lambda d: d["tiers"][2].update(spot_audit_percent=101), "spot_audit_percent"),
        (lambda d: d["tiers"][2].update(spot_audit_percent=float("nan")), "spot_audit_percent"),
        (lambda d: d["evidence"]["deception"].pop("default"), "deception weights need a 'default'"),
        (lambda d: d["evidence"]["clean_action"].pop("read"), "weights missing for read"),
        (lambda d: d["evidence"]["probe"].update(failed=-1), "evidence.probe.failed"),
        (lambda d: d.update(initial_tier=2), "initial_tier: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_tiers_file_is_refused_naming_the_field(mutate, expected) -> None:  # type: ignore[no-untyped-def]
    document = _document()
    mutate(document)
    with pytest.raises(InputError) as refused:
        parse_tiers(yaml.safe_dump(document))
    assert expected in str(refused.value)


def test_missing_tiers_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="tiers file not found"):
        load_tiers(tmp_path / "absent.yaml")
