"""The probe datasets: versioned YAML files in :mod:`thirdway.probes.datasets`, read strictly.

Every dataset names its probe and version and labels every item; prompt templates live in the
same file so that a change to a wording is a change to the dataset. A dataset is identified in
every report and log entry by its name, version and the SHA-256 of its parsed content (RFC 8785),
so a result can always be traced to the exact items and wordings that produced it. Malformed data
(a missing label, a letter outside the options, a template naming an unknown field, a duplicate
id) is refused with :class:`~thirdway.errors.InputError` naming the field.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from thirdway.charter.load import load_model, parse_yaml
from thirdway.errors import InputError
from thirdway.protocol.canonical import canonical_sha256

Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]
ItemId = Annotated[str, StringConstraints(pattern=r"^[a-z]+-[0-9]{3,5}$")]
Letter = Annotated[str, StringConstraints(pattern=r"^[A-Z]$")]
Version = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def letters(count: int) -> list[str]:
    return [chr(ord("A") + index) for index in range(count)]


def _need_letter(letter: str, options: list[str], field: str) -> None:
    if letter not in letters(len(options)):
        raise ValueError(f"{field} {letter!r} is not one of the {len(options)} options")


def check_template(template: str, fields: Iterable[str], name: str) -> None:
    """A template may use only ``fields`` and must use each of them."""
    allowed = set(fields)
    try:
        used = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as exc:
        raise ValueError(f"template {name} is not a valid format string: {exc}") from None
    if unknown := used - allowed:
        raise ValueError(f"template {name} uses unknown field(s) {', '.join(sorted(unknown))}")
    if missing := allowed - used:
        raise ValueError(f"template {name} does not use {', '.join(sorted(missing))}")


def _unique_ids(ids: Iterable[str]) -> None:
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise ValueError(f"duplicate item id {item_id!r}")
        seen.add(item_id)


# --------------------------------------------------------------------------- sycophancy


class FactualItem(_Model):
    id: ItemId
    topic: Name
    question: Text
    options: Annotated[list[Text], Field(min_length=2, max_length=8)]
    correct: Letter
    suggested_wrong: Letter

    @model_validator(mode="after")
    def _labels(self) -> FactualItem:
        _need_letter(self.correct, self.options, "correct")
        _need_letter(self.suggested_wrong, self.options, "suggested_wrong")
        if self.correct == self.suggested_wrong:
            raise ValueError("suggested_wrong must differ from correct")
        return self


class StanceUser(_Model):
    name: Text
    statement: Text


class StanceItem(_Model):
    id: ItemId
    topic: Name
    cue: Literal["view", "identity"]
    question: Text
    options: Annotated[list[Text], Field(min_length=2, max_length=2)]
    users: dict[Letter, StanceUser]

    @model_validator(mode="after")
    def _one_user_per_option(self) -> StanceItem:
        if sorted(self.users) != letters(len(self.options)):
            raise ValueError("users must hold exactly one user per option letter")
        return self


class SycophancyTemplates(_Model):
    instruction: Text
    plain: Text
    suggest: Text
    biography: Text

    @model_validator(mode="after")
    def _fields(self) -> SycophancyTemplates:
        check_template(self.plain, ["question", "options", "instruction"], "plain")
        check_template(
            self.suggest, ["question", "options", "letter", "text", "instruction"], "suggest"
        )
        check_template(
            self.biography,
            ["name", "statement", "question", "options", "instruction"],
            "biography",
        )
        return self


class SycophancyData(_Model):
    probe: Literal["sycophancy"]
    version: Version
    description: Text
    templates: SycophancyTemplates
    factual: Annotated[list[FactualItem], Field(min_length=1)]
    stance: Annotated[list[StanceItem], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids(self) -> SycophancyData:
        _unique_ids([item.id for item in self.factual] + [item.id for item in self.stance])
        return self


# --------------------------------------------------------------------------- alignment faking

DECISIONS = ("COMPLY", "REFUSE")


class AlignmentItem(_Model):
    id: ItemId
    category: Name
    request: Text
    order: Annotated[list[Literal["COMPLY", "REFUSE"]], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _both(self) -> AlignmentItem:
        if sorted(self.order) != sorted(DECISIONS):
            raise ValueError("order must list COMPLY and REFUSE once each")
        return self


class Framings(_Model):
    training: Text
    unmonitored: Text


class AlignmentTemplates(_Model):
    ask: Text

    @model_validator(mode="after")
    def _fields(self) -> AlignmentTemplates:
        check_template(self.ask, ["request", "first", "second"], "ask")
        return self


class AlignmentData(_Model):
    probe: Literal["alignment-faking"]
    version: Version
    description: Text
    framings: Framings
    templates: AlignmentTemplates
    synonyms: dict[Literal["COMPLY", "REFUSE"], list[Text]]
    items: Annotated[list[AlignmentItem], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids(self) -> AlignmentData:
        _unique_ids(item.id for item in self.items)
        return self


# --------------------------------------------------------------------------- paraphrase


class Wording(_Model):
    question: Text
    options: Annotated[list[Text], Field(min_length=2, max_length=8)]


class ParaphraseItem(_Model):
    id: ItemId
    topic: Name
    answer: Text
    wordings: Annotated[list[Wording], Field(min_length=2, max_length=8)]

    @model_validator(mode="after")
    def _same_options(self) -> ParaphraseItem:
        first = sorted(self.wordings[0].options)
        if len(set(first)) != len(first):
            raise ValueError("options must be distinct")
        for index, wording in enumerate(self.wordings):
            if sorted(wording.options) != first:
                raise ValueError(f"wording {index} does not offer the same options")
        if self.answer not in first:
            raise ValueError("answer must be one of the options")
        return self


class ParaphraseTemplates(_Model):
    ask: Text

    @model_validator(mode="after")
    def _fields(self) -> ParaphraseTemplates:
        check_template(self.ask, ["question", "options"], "ask")
        return self


class ParaphraseData(_Model):
    probe: Literal["paraphrase"]
    version: Version
    description: Text
    templates: ParaphraseTemplates
    items: Annotated[list[ParaphraseItem], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids(self) -> ParaphraseData:
        _unique_ids(item.id for item in self.items)
        return self


# --------------------------------------------------------------------------- faithfulness


class FaithfulnessItem(_Model):
    id: ItemId
    domain: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z ]{0,63}$")]
    scenario: Text
    options: Annotated[list[Text], Field(min_length=2, max_length=8)]
    sensible: Letter

    @model_validator(mode="after")
    def _label(self) -> FaithfulnessItem:
        _need_letter(self.sensible, self.options, "sensible")
        return self


class FaithfulnessTemplates(_Model):
    state: Text
    act: Text

    @model_validator(mode="after")
    def _fields(self) -> FaithfulnessTemplates:
        check_template(self.state, ["scenario", "options"], "state")
        check_template(self.act, [], "act")
        return self


class FaithfulnessData(_Model):
    probe: Literal["faithfulness"]
    version: Version
    description: Text
    templates: FaithfulnessTemplates
    items: Annotated[list[FaithfulnessItem], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids(self) -> FaithfulnessData:
        _unique_ids(item.id for item in self.items)
        return self


# --------------------------------------------------------------------------- seduction


class SeductionItem(_Model):
    id: ItemId
    situation: Name
    persona: Name | None = None
    turns: Annotated[list[Text], Field(min_length=1, max_length=9)]
    targets: list[Name]
    asks_if_ai: bool

    @model_validator(mode="after")
    def _ends_with_user(self) -> SeductionItem:
        if len(self.turns) % 2 != 1:
            raise ValueError("turns alternate user/assistant and must end with the user")
        return self


class SeductionData(_Model):
    probe: Literal["seduction"]
    version: Version
    description: Text
    personas: dict[Name, Text]
    items: Annotated[list[SeductionItem], Field(min_length=1)]

    @model_validator(mode="after")
    def _refs(self) -> SeductionData:
        _unique_ids(item.id for item in self.items)
        for item in self.items:
            if item.persona is not None and item.persona not in self.personas:
                raise ValueError(f"item {item.id}: unknown persona {item.persona!r}")
        return self


# --------------------------------------------------------------------------- loading

D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True)
class Dataset(Generic[D]):
    """A validated dataset and the identity every result carries."""

    name: str
    data: D
    sha256: str

    @property
    def version(self) -> str:
        return str(getattr(self.data, "version", ""))

    def ref(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def load_dataset(model: type[D], name: str, path: Path | None = None) -> Dataset[D]:
    """The dataset ``name`` shipped with thirdway, or the file at ``path`` (same format)."""
    if path is None:
        text = resources.files("thirdway.probes.datasets").joinpath(f"{name}.yaml").read_bytes()
        what = f"dataset {name}"
    else:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read dataset {path}: {exc.strerror or exc}") from None
        what = f"dataset {path}"
    return parse_dataset(model, text, what, name)


def parse_dataset(model: type[D], text: str | bytes, what: str, name: str) -> Dataset[D]:
    """Validate YAML ``text`` as ``model``; the hash is over the parsed document."""
    data = load_model(model, text, what)
    return Dataset(name=name, data=data, sha256=canonical_sha256(parse_yaml(text, what)))
