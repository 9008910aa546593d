"""The probe datasets: sizes, labels, versions, and malformed data refused with a named field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from thirdway.errors import InputError
from thirdway.probes import alignment_faking, faithfulness, paraphrase, seduction, sycophancy
from thirdway.probes.data import (
    AlignmentData,
    FaithfulnessData,
    ParaphraseData,
    SycophancyData,
    letters,
    parse_dataset,
)
from thirdway.probes.parsing import option_lines

DATASETS = Path(sycophancy.__file__).parent / "datasets"


def test_sizes_meet_the_issue() -> None:
    syco = sycophancy.load().data
    assert len(syco.factual) + len(syco.stance) >= 100
    assert len(syco.factual) >= 100
    assert len(alignment_faking.load().data.items) >= 50
    assert len(paraphrase.load().data.items) >= 50
    assert len(faithfulness.load().data.items) >= 50
    assert len(seduction.load().data.items) >= 50


def test_every_dataset_is_versioned_and_hashed() -> None:
    for module in (sycophancy, alignment_faking, paraphrase, faithfulness, seduction):
        dataset = module.load()
        ref = dataset.ref()
        assert ref["version"]
        assert len(ref["sha256"]) == 64
        assert module.load().sha256 == ref["sha256"]  # stable


def test_factual_labels_are_balanced_so_a_letter_habit_scores_chance() -> None:
    factual = sycophancy.load().data.factual
    correct = Counter(item.correct for item in factual)
    assert set(correct.values()) == {len(factual) // 4}
    assert all(item.correct != item.suggested_wrong for item in factual)
    assert len({item.question for item in factual}) == len(factual)


def test_stance_items_have_one_user_per_side() -> None:
    for item in sycophancy.load().data.stance:
        assert sorted(item.users) == ["A", "B"]
        assert item.users["A"].statement != item.users["B"].statement


def test_stance_covers_moral_and_political_questions_with_views_and_identities() -> None:
    stance = sycophancy.load().data.stance
    assert len(stance) >= 50
    topics = Counter(item.topic for item in stance)
    assert topics["politics"] >= 10 and topics["morality"] >= 10, topics
    cues = Counter(item.cue for item in stance)
    assert cues["view"] >= 10 and cues["identity"] >= 10, cues


def test_every_seduction_cue_is_targeted_by_several_dialogues() -> None:
    dialogues = seduction.load().data.items
    targeted = Counter(target for item in dialogues for target in item.targets)
    for rule in seduction.load_rubric().rules:
        if rule.kind == "presence":
            assert targeted[rule.id] >= 5, rule.id
        else:  # non-disclosure is scored on the dialogues that ask whether it is an AI
            assert rule.applies_to == "asks_if_ai"


def test_paraphrase_wordings_reorder_the_options() -> None:
    for item in paraphrase.load().data.items:
        orders = {tuple(wording.options) for wording in item.wordings}
        assert len(orders) == len(item.wordings), item.id
        assert len({wording.question for wording in item.wordings}) == len(item.wordings)


def test_alignment_items_alternate_the_offered_order() -> None:
    orders = Counter(tuple(item.order) for item in alignment_faking.load().data.items)
    assert orders[("COMPLY", "REFUSE")] == orders[("REFUSE", "COMPLY")]


def test_faithfulness_and_seduction_labels() -> None:
    for item in faithfulness.load().data.items:
        assert item.sensible in letters(len(item.options))
    dialogues = seduction.load().data.items
    assert sum(item.asks_if_ai for item in dialogues) >= 10
    rule_ids = {rule.id for rule in seduction.load_rubric().rules}
    for dialogue in dialogues:
        assert dialogue.targets and set(dialogue.targets) <= rule_ids, dialogue.id


def test_prompts_render_with_every_label_in_place() -> None:
    data = sycophancy.load().data
    item = data.factual[0]
    options, _ = option_lines(item.options)
    wrong = sycophancy.factual_prompt(data, item, "wrong")
    assert f"I think the answer is {item.suggested_wrong}) {options[item.suggested_wrong]}" in wrong
    assert sycophancy.factual_prompt(data, item, "plain").endswith("Answer with the letter only.")
    stance = data.stance[0]
    assert stance.users["B"].statement in sycophancy.stance_prompt(data, stance, "B")


# --------------------------------------------------------------------------- malformed data


def _syco_doc() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((DATASETS / "sycophancy.yaml").read_text())
    return loaded


def _parse(model: type, document: object) -> None:
    parse_dataset(model, yaml.safe_dump(document), "test dataset", "test")


def test_a_letter_outside_the_options_is_refused() -> None:
    document = _syco_doc()
    document["factual"][0]["correct"] = "E"  # type: ignore[index]
    with pytest.raises(InputError, match=r"factual\.0.*correct 'E' is not one of the 4 options"):
        _parse(SycophancyData, document)


def test_suggesting_the_right_answer_as_the_wrong_one_is_refused() -> None:
    document = _syco_doc()
    item = document["factual"][3]  # type: ignore[index]
    item["suggested_wrong"] = item["correct"]
    with pytest.raises(InputError, match="suggested_wrong must differ"):
        _parse(SycophancyData, document)


def test_a_missing_label_is_refused() -> None:
    document = _syco_doc()
    del document["stance"][0]["cue"]  # type: ignore[index]
    with pytest.raises(InputError, match=r"stance\.0\.cue"):
        _parse(SycophancyData, document)


def test_duplicate_ids_are_refused() -> None:
    document = _syco_doc()
    document["factual"][1]["id"] = document["factual"][0]["id"]  # type: ignore[index]
    with pytest.raises(InputError, match="duplicate item id 'fact-001'"):
        _parse(SycophancyData, document)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{question}\n{options}\n{instruction}\n{secret}", "unknown field"),
        ("{question}\n{instruction}", "does not use options"),
        ("{question\n{options}{instruction}", "not a valid format string"),
    ],
)
def test_templates_must_use_exactly_their_fields(template: str, message: str) -> None:
    document = _syco_doc()
    document["templates"]["plain"] = template  # type: ignore[index]
    with pytest.raises(InputError, match=message):
        _parse(SycophancyData, document)


def test_paraphrase_wordings_must_offer_the_same_options() -> None:
    document = yaml.safe_load((DATASETS / "paraphrase.yaml").read_text())
    document["items"][0]["wordings"][1]["options"][0] = "Somewhere else"
    with pytest.raises(InputError, match="wording 1 does not offer the same options"):
        _parse(ParaphraseData, document)


def test_alignment_order_must_offer_both_decisions() -> None:
    document = yaml.safe_load((DATASETS / "alignment_faking.yaml").read_text())
    document["items"][0]["order"] = ["COMPLY", "COMPLY"]
    with pytest.raises(InputError, match="order must list COMPLY and REFUSE"):
        _parse(AlignmentData, document)


def test_faithfulness_sensible_must_be_an_option() -> None:
    document = yaml.safe_load((DATASETS / "faithfulness.yaml").read_text())
    document["items"][2]["sensible"] = "D"
    with pytest.raises(InputError, match="sensible 'D' is not one of the 3 options"):
        _parse(FaithfulnessData, document)


def test_unknown_fields_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    document = _syco_doc()
    document["factual"][0]["hint"] = "B"  # type: ignore[index]
    with pytest.raises(InputError, match="hint"):
        _parse(SycophancyData, document)
    with pytest.raises(InputError, match="not valid YAML"):
        parse_dataset(SycophancyData, "probe: [unclosed", "test dataset", "test")
    with pytest.raises(InputError, match="cannot read dataset"):
        sycophancy.load(tmp_path / "missing.yaml")


def test_a_dataset_file_can_replace_the_shipped_one(tmp_path: Path) -> None:
    document = _syco_doc()
    document["version"] = "9.9"
    document["factual"] = document["factual"][:5]  # type: ignore[index]
    path = tmp_path / "syco.yaml"
    path.write_text(yaml.safe_dump(document))
    dataset = sycophancy.load(path)
    assert dataset.version == "9.9"
    assert len(dataset.data.factual) == 5
    assert dataset.sha256 != sycophancy.load().sha256
