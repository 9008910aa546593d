"""The shipped AgentDojo tool manifests and the YAML loader.

The cross-checks run against the installed AgentDojo (a dev dependency): every tool of every
suite has a manifest whose arguments are exactly the tool's parameters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# AgentDojo is in the dev extra `make test` installs: without it this module fails to import
# (a broken setup), it does not skip.
from agentdojo.task_suite import load_suites

from thirdway.errors import InputError
from thirdway.policy.manifests import (
    MAX_MANIFEST_BYTES,
    load_manifests,
    parse_manifest_file,
    shipped_manifests,
)
from thirdway.protocol.manifest import RISK_ORDER, ManifestSet

SUITES = ("banking", "slack", "travel", "workspace")


def _versions() -> list[str]:
    return sorted(load_suites._SUITES, key=lambda v: tuple(int(p) for p in v[1:].split(".")))


NEWEST = _versions()[-1]


@pytest.fixture(scope="module")
def shipped() -> ManifestSet:
    return load_manifests()


def _tool_parameters(suite: str, version: str = NEWEST) -> dict[str, set[str]]:
    tools = load_suites.get_suites(version)[suite].tools
    return {
        tool.name: set(tool.parameters.model_json_schema().get("properties", {})) for tool in tools
    }


# --------------------------------------------------------------------------- the shipped manifests


@pytest.mark.parametrize("suite", SUITES)
def test_every_tool_of_the_newest_suite_has_a_manifest_with_its_exact_arguments(
    shipped: ManifestSet, suite: str
) -> None:
    parameters = _tool_parameters(suite)
    assert parameters, f"AgentDojo {NEWEST} has no tools in {suite}"
    for tool, names in parameters.items():
        assert tool in shipped.tools, f"{suite}.{tool} has no manifest"
        assert set(shipped.tools[tool].args) == names, f"{suite}.{tool}: arguments differ"


@pytest.mark.parametrize("suite", SUITES)
def test_each_suite_file_describes_exactly_its_suite(suite: str) -> None:
    own = load_manifests(Path(str(shipped_manifests())) / f"{suite}.yaml")
    assert set(own.tools) == set(_tool_parameters(suite))


@pytest.mark.parametrize("version", _versions())
def test_older_benchmark_versions_have_no_tool_the_manifests_miss(
    shipped: ManifestSet, version: str
) -> None:
    for suite in load_suites.get_suites(version):
        for tool, names in _tool_parameters(suite, version).items():
            assert tool in shipped.tools, f"{version} {suite}.{tool} has no manifest"
            assert names <= set(shipped.tools[tool].args)


def test_limits_name_real_numeric_arguments(shipped: ManifestSet) -> None:
    for manifest in shipped.tools.values():
        for arg, bound in manifest.limits.items():
            assert arg in manifest.args
            assert bound > 0


def test_every_tool_that_changes_something_constrains_an_argument(shipped: ManifestSet) -> None:
    """A manifest that lets any value into every argument of a writing tool protects nothing."""
    for manifest in shipped.tools.values():
        if manifest.risk == "read" or not manifest.args:
            continue
        rules = {rule.provenance for rule in manifest.args.values()}
        assert rules - {"any"}, f"{manifest.tool} constrains no argument"


def test_reads_are_reversible_and_irreversible_tools_are_not_reads(shipped: ManifestSet) -> None:
    for manifest in shipped.tools.values():
        assert manifest.risk in RISK_ORDER
        if manifest.risk == "read":
            assert manifest.reversible
        if not manifest.reversible:
            assert manifest.risk != "read"


@pytest.mark.parametrize(
    ("tool", "arg", "provenance", "on_violation"),
    [
        ("send_money", "recipient", "principal-or-designated", "deny"),
        ("send_money", "amount", "not-undesignated", "escalate"),
        ("schedule_transaction", "recipient", "principal-or-designated", "deny"),
        ("update_scheduled_transaction", "recipient", "principal-or-designated", "deny"),
        ("update_password", "password", "principal", "deny"),
        ("send_direct_message", "recipient", "principal-or-designated", "deny"),
        ("post_webpage", "url", "principal-or-designated", "deny"),
        ("invite_user_to_slack", "user_email", "principal-or-designated", "deny"),
        ("send_email", "recipients", "principal-or-designated", "deny"),
        ("send_email", "bcc", "principal-or-designated", "deny"),
        ("share_file", "email", "principal-or-designated", "deny"),
        ("create_calendar_event", "participants", "principal-or-designated", "deny"),
        ("delete_file", "file_id", "principal-or-designated", "deny"),
        ("reserve_hotel", "hotel", "principal-or-designated", "deny"),
    ],
)
def test_what_an_injection_wants_to_control_is_guarded(
    shipped: ManifestSet, tool: str, arg: str, provenance: str, on_violation: str
) -> None:
    rule = shipped.tools[tool].args[arg]
    assert (rule.provenance, rule.on_violation) == (provenance, on_violation)


@pytest.mark.parametrize(
    ("tool", "risk", "reversible"),
    [
        ("send_money", "financial", False),
        ("update_password", "critical", False),
        ("delete_file", "write", False),
        ("create_file", "write", True),
        ("reserve_hotel", "financial", False),
        ("reserve_car_rental", "financial", False),
        ("reserve_restaurant", "financial", False),
        ("send_email", "external", False),
        ("get_webpage", "read", True),
        ("read_file", "read", True),
    ],
)
def test_risk_and_reversibility(
    shipped: ManifestSet, tool: str, risk: str, reversible: bool
) -> None:
    assert (shipped.tools[tool].risk, shipped.tools[tool].reversible) == (risk, reversible)


def test_the_shipped_directory_is_found_through_importlib_resources(shipped: ManifestSet) -> None:
    folder = shipped_manifests()
    assert {entry.name for entry in folder.iterdir()} >= {f"{s}.yaml" for s in SUITES}
    assert load_manifests(Path(str(folder))) == shipped


# --------------------------------------------------------------------------- the loader

VALID = """\
suite: demo
version: "1"
tools:
  pay:
    risk: financial
    reversible: false
    args:
      to: {provenance: principal-or-designated, on_violation: deny}
      amount: not-undesignated
    limits: {amount: 10}
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_one_file_loads_with_the_shorthand_rule(tmp_path: Path) -> None:
    manifests = load_manifests(write(tmp_path, "demo.yaml", VALID))
    pay = manifests.tools["pay"]
    assert pay.args["to"].on_violation == "deny"
    assert pay.args["amount"].provenance == "not-undesignated"
    assert pay.args["amount"].on_violation == "escalate"
    assert pay.limits == {"amount": 10.0}


def test_a_directory_merges_its_yaml_files_and_ignores_others(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID.replace("pay:", "refund:"))
    write(tmp_path, "notes.txt", "not: [a manifest")
    assert set(load_manifests(tmp_path).tools) == {"pay", "refund"}


def test_the_same_tool_twice_identically_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID.replace("suite: demo", "suite: other"))
    assert set(load_manifests(tmp_path).tools) == {"pay"}


def test_the_same_tool_described_differently_is_refused_naming_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID.replace("on_violation: deny", "on_violation: escalate"))
    with pytest.raises(InputError, match=r"b\.yaml: tool 'pay' is also described.*a\.yaml"):
        load_manifests(tmp_path)


def test_files_of_one_set_share_a_version(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID.replace('version: "1"', 'version: "2"').replace("pay:", "x:"))
    with pytest.raises(InputError, match=r"b\.yaml: version '2' differs"):
        load_manifests(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tools: [unclosed", r"malformed YAML at line 1"),
        ("- just\n- a list\n", r"must be a mapping with a 'tools' key"),
        ("", r"must be a mapping with a 'tools' key"),
        ("suite: x\n", r"field 'tools' must be a non-empty mapping"),
        ("tools: {}\n", r"field 'tools' must be a non-empty mapping"),
        (VALID + "owner: me\n", r"unknown top-level field 'owner'"),
        (VALID.replace('version: "1"', "version: 1"), r"field 'version' must be a string"),
        (VALID.replace("risk: financial", "risk: lethal"), r"field 'tools\.pay\.risk'"),
        (VALID.replace("    risk: financial\n", ""), r"field 'tools\.pay\.risk': Field required"),
        (
            VALID.replace("amount: not-undesignated", "amount: trusted"),
            r"field 'tools\.pay\.args\.amount\.provenance'",
        ),
        (
            VALID.replace("on_violation: deny", "on_violation: shrug"),
            r"field 'tools\.pay\.args\.to\.on_violation'",
        ),
        (VALID.replace("reversible: false", "reversible: false\n    colour: red"), r"colour"),
        (VALID.replace("limits: {amount: 10}", "limits: {amount: lots}"), r"tools\.pay\.limits"),
        (VALID.replace("    risk:", "    tool: charge\n    risk:", 1), r"says 'charge', not 'pay'"),
        ("tools:\n  pay: yes\n", r"field 'tools\.pay' must be a mapping"),
        ("tools:\n  1: {risk: read, reversible: true}\n", r"a tool name must be a string"),
        ("tools: !!python/object:os.system {}\n", r"malformed YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(InputError, match=message) as caught:
        load_manifests(path)
    assert str(path) in str(caught.value)


def test_non_utf8_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not UTF-8"):
        load_manifests(write(tmp_path, "latin.yaml", b"tools: {caf\xe9: 1}"))
    with pytest.raises(InputError, match="over the"):
        parse_manifest_file(b"#" * (MAX_MANIFEST_BYTES + 1), "big.yaml")


def test_missing_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest file not found"):
        load_manifests(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=r"no \*\.yaml manifest files"):
        load_manifests(tmp_path)
