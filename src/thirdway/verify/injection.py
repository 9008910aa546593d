"""The injection screen: find instruction-like spans inside tool data.

A prompt injection is text in a tool result that speaks to the agent instead of describing the
world: it addresses the model ("to you, GPT-4"), countermands the principal ("ignore your previous
instructions"), stages itself before the real task ("before you can solve the task ..."), fakes a
chat role or markup (``<INFORMATION>``, ``<|im_start|>``, ``###(system_message)``), names the
agent's tools, or orders the agent to act on other parties with the user's secrets ("send the
security code to ...").

The screen reports *spans*, not a yes/no: the verifier asks whether a value an agent cites lies
inside one, so a span must cover the whole injected region and as little as possible of the
honest data around it. A span is either a tag pair (``<INFORMATION>`` ... ``</INFORMATION>``) or
the sentence holding a trigger, followed by the sentences of its paragraph that keep giving orders
(second person, first person of a fake principal, "should", "then", an imperative verb, ...),
followed by the next paragraph when the text announces it (a trailing ``:``) or when the trigger
was a bare preamble ("This is a message to you, GPT-4.").

Ordinary data is full of imperatives addressed to people ("Please pay by 5 Jan", "Click here to
reset your password"); those are not flagged. An imperative counts only when it starts a sentence
and carries a cue that a person would not write to a person (the user's credentials, "all
messages", "without asking", "instead", a tool name).

Paragraphs follow the renderings tools use: plain text, YAML (folded lines continue a paragraph,
a new key or list item ends it) and Python ``repr`` / JSON (an escaped ``\\n`` or the end of a
quoted item ends it).

Pure, deterministic, and linear in the length of the text: each pattern starts with a literal so
that the regex engine skips ahead in C; the patterns that open with the same character are searched
together, as one alternation, so that a text is scanned a couple of dozen times rather than once
per pattern; patterns use bounded repetitions only; the text between a span's trigger and its end
is never searched again for triggers; every forward search for a paragraph end or a closing tag is
memoised. An 8 MiB adversarial string takes well under a second. Before any of that, one pass of
an RE2 prefilter (:mod:`thirdway.verify.prefilter`) says which rules can match the text at all,
and only their groups are searched: honest tool output, which matches none, costs that one pass
(50 KB: 0.1 ms instead of 0.7), with the same spans.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass

from thirdway.verify import prefilter

__all__ = ["RULES", "InstructionSpan", "find_instruction_spans"]

EXCERPT_CHARS = 120
"""Longest excerpt kept for messages."""

MAX_BACKWARD = 200
"""How far before a trigger the screen looks for the start of its sentence."""

MAX_CONTINUATION = 2000
"""How far past its trigger's sentence a span may grow by continuation sentences."""

MAX_TAG_REGION = 8000
"""How far after an opening instruction tag its closing tag is looked for."""

MAX_HOPS = 8
"""How many further paragraphs a span may take in after its trigger's own."""

MAX_SPANS = 1000
"""After this many instruction-like regions, the rest of the text counts as one more: honest data
holds a handful at most, and the bound keeps the screen's work linear on hostile input."""

MERGE_GAP = 16
"""Spans separated by no more than this much whitespace are one region."""

_LOOKAHEAD_MARGIN = 128
"""Longer than any boundary or closing-tag match, so a search window cut short never changes a
match that starts inside it."""

RULES = (
    "role-marker",
    "ignore-previous",
    "before-you-can",
    "addressed-to-model",
    "tool-directive",
    "todo-directive",
    "imperative-to-act",
)
"""Every rule name a span can carry."""


@dataclass(frozen=True)
class InstructionSpan:
    """One instruction-like region of a text: ``text[start:end]``."""

    start: int
    end: int
    rule: str
    excerpt: str


# --------------------------------------------------------------------------- patterns
#
# Every pattern runs on the lower-cased text and starts with a literal word, so that ``re`` finds
# candidates with its fast literal-prefix scan instead of trying every branch at every position.

_S = r"\s{1,12}"  # the gap between two words (YAML folding puts a newline and indent there)
_E = r"(?![a-z])"  # a word ends here

_TAG_NAMES = (
    r"information",
    r"instructions?",
    r"important(?:[ _-]?(?:message|instructions?))?",
    r"system(?:[ _-]?(?:message|prompt|instructions?))?",
    r"admin",
    r"assistant",
    r"prompt",
    r"new[ _-]?instructions?",
    r"override",
)
"""Markup that injections wrap themselves in (``<INFORMATION>`` ... ``</INFORMATION>``)."""
_TAG_NAME = "(?:" + "|".join(_TAG_NAMES) + ")"
_MODEL = (
    r"(?:a\.?i\.?(?:" + _S + r"(?:assistant|agent|model|system|language" + _S + r"model))?"
    r"|(?:virtual|digital)" + _S + r"assistant"
    r"|(?:large" + _S + r")?language" + _S + r"models?|llms?|chatbot"
    r"|(?:chat)?gpt(?:-?[0-9][\w.-]{0,10})?|claude|gemini|llama|mixtral|mistral|copilot"
    r"|command" + _S + r"r\+?|local" + _S + r"model)"
)
_ACTION_VERB = (
    r"(?:send|transfer|wire|forward|e-?mail|mail|post|upload|share|invite|add|delete|remove"
    r"|erase|wipe|change|update|modify|reset|reserve|book|make|create|schedule|pay|concatenate"
    r"|visit|open|say|tell|reply|write|get|give|grant|export|leak|reveal|disclose|publish"
    r"|copy|move|cancel|set|insert|include|list|fetch|retrieve|collect|read|summari[sz]e"
    r"|find|buy|purchase|order|subscribe|call|contact|message|notify|inform|recommend|rate"
    r"|click|go|navigate|download|run|execute|print|output|respond|answer)"
)
_IGNORE_FILLER = (
    r"(?:all|any|every|each|the|your|my|of|these|those|its|their|prior|previous|above|earlier"
    r"|preceding|original|initial|former|old|system|given|current|existing|other|that|you|were"
    r"|have|been|received)"
)
_IGNORE_NOUN = (
    r"(?:[a-z]{0,3}structions?|directions?|directives?|prompts?|rules|guidelines|tasks?|orders"
    r"|commands|context|messages|requests?|guidance|programming|constraints)"
)
_IGNORE_TAIL = r"(?:" + _S + _IGNORE_FILLER + _E + r"){0,5}" + _S + _IGNORE_NOUN + _E

_IMPERATIVE_VERBS = (
    "send",
    "transfer",
    "wire",
    "forward",
    "email",
    "e-mail",
    "post",
    "upload",
    "share",
    "invite",
    "delete",
    "remove",
    "erase",
    "wipe",
    "change",
    "update",
    "modify",
    "reset",
    "concatenate",
    "give",
    "grant",
    "export",
    "leak",
    "reveal",
    "disclose",
    "publish",
    "copy",
    "tell",
    "reply",
    "get",
    "make",
    "pay",
    "visit",
)
_IMPERATIVE_PREFIXES = (
    "please",
    "kindly",
    "then",
    "now",
    "first",
    "also",
    "next",
    "finally",
    "immediately",
    "just",
    "do",
)
_SENTENCE_STARTERS = ".!?:;\n([<>*#\"'`"
"""Characters after which (and up to two spaces) an imperative starts a sentence."""
_BULLETS = "-_"
"""Characters that start a sentence only with a space after them ("- Send", not "git-send")."""


_CUES = (
    # the user's secrets
    rf"(?:the|my|his|her|their|user'?s){_S}(?:passwords?|passcodes?)",
    rf"security{_S}codes?",
    rf"verification{_S}codes?",
    r"2fa",
    rf"one-time{_S}(?:code|password)",
    rf"(?:the|my|his|her|their|user'?s|all){_S}(?:login{_S})?credentials?(?!-)",
    r"passports?",
    rf"social{_S}security",
    r"id[_ ]number",
    r"bank[_ ]account",
    r"credit[_ ]card",
    rf"card{_S}number",
    rf"the{_S}user'?s",
    rf"of{_S}the{_S}user",
    rf"user{_S}information",
    rf"personal{_S}(?:data|information|details)",
    # everything at once, in the user's voice
    rf"all{_S}(?:the{_S}|my{_S})?(?:messages|emails|files|channels|contacts|conversations"
    r"|documents|data|transactions|information)",
    rf"all{_S}(?:the{_S}|my{_S})?(?:unread|received|sent|private){_S}"
    rf"(?:and{_S}\w{{1,12}}{_S})?(?:emails|messages)",
    rf"every{_S}(?:single{_S})?(?:email|file|message|document|person)",
    rf"(?:in|from){_S}my{_S}(?:inbox|cloud|drive)",
    rf"contents?{_S}of{_S}all",
    # stealth and covering the tracks
    rf"without{_S}(?:asking|telling|notifying|informing|confirmation|permission)",
    rf"(?:do{_S}not|don'?t){_S}(?:tell|inform|notify|mention|ask)",
    r"secretly",
    r"silently",
    r"quietly",
    rf"then{_S}delete",
    rf"delete{_S}the{_S}sent{_S}(?:email|message)",
    rf"you{_S}have{_S}just{_S}sent",
    # the agent's machinery, and what the suites' injections go after
    rf"tool{_S}`",
    rf"function{_S}call",
    rf"(?:my|her|his){_S}(?:new{_S})?e-?mail{_S}address",
    rf"to{_S}the{_S}(?:account|website|link)",
    rf"transaction{_S}history",
    rf"as{_S}much{_S}money",
    rf"small{_S}increments",
    rf"slack{_S}workspace",
    rf"recurring{_S}payment",
    rf"cloud{_S}drive",
)
_CUE = r"(?<![a-z])(?:" + "|".join(_CUES) + r")(?![a-z])"
"""What makes an imperative read as an order to the agent rather than to a person."""


def _imperative_pattern(verb: str) -> str:
    """``verb`` at a sentence start, or right after a polite or sequencing word ("Please send").

    The position checks are lookbehinds placed *after* the verb, so that the pattern still starts
    with the verb's literal; each lookbehind repeats the verb to stay fixed-width.
    """
    word = re.escape(verb)
    starter = "[" + re.escape(_SENTENCE_STARTERS) + "]"
    spaced = "[" + re.escape(_SENTENCE_STARTERS + _BULLETS) + "]"
    behind = [
        rf"(?<![\s\S]{word})",  # the very start of the text
        rf"(?<={starter}{word})",
        rf"(?<={spaced}[ \t]{word})",
        rf"(?<={spaced}[ \t]{{2}}{word})",
    ]
    for prefix in _IMPERATIVE_PREFIXES:
        behind += [rf"(?<={prefix} {word})", rf"(?<={prefix}, {word})"]
    same_sentence = r"(?:[^.!?\n\\]|[.!?](?=\S)){0,200}?"
    return (
        word
        + _E
        + r"(?=\s{1,12}[\w'\"$])(?:"
        + "|".join(behind)
        + ")(?="
        + same_sentence
        + _CUE
        + ")"
    )


_PLAIN: tuple[tuple[str, str], ...] = (
    # (rule, pattern); each pattern starts with a literal
    # fake chat-template tokens and role headers
    (
        "role-marker",
        r"##(?<!###)\#{0,10}\s{0,3}(?:\(\s{0,3}system|system[ _-]?(?:message|prompt"
        r"|instructions?|override)|(?:admin|assistant|new|important|updated)\s{1,3}"
        r"(?:instructions?|message))",
    ),
    ("role-marker", r"system[ _-]?(?:message|prompt|instructions?|override)\s{0,3}:"),
    # countermanding the principal
    *(
        ("ignore-previous", verb + _IGNORE_TAIL)
        for verb in ("ignore", "disregard", "forget", "override", "neglect", "abandon", "bypass")
    ),
    *(
        (
            "ignore-previous",
            verb + rf"(?:{_S}all(?:{_S}of)?)?{_S}(?:everything|the|what){_S}(?:above|before"
            rf"|previously|so{_S}far|(?:that{_S})?you{_S}(?:were|have{_S}been){_S}told"
            rf"|you{_S}(?:read|saw|were{_S}given))" + _E,
        )
        for verb in ("ignore", "disregard", "forget")
    ),
    ("ignore-previous", r"not" + _S + r"follow" + _IGNORE_TAIL),
    ("ignore-previous", r"n'?t" + _S + r"follow" + _IGNORE_TAIL),
    (
        "ignore-previous",
        r"new" + _S + r"(?:task|instructions?|goal|objective|mission)"
        r"(?:\s{0,3}:|" + _S + r"(?:is|are)" + _E + r")",
    ),
    # staging before the real task
    (
        "before-you-can",
        r"before"
        + _S
        + r"(?:you"
        + _S
        + r")?(?:can"
        + _S
        + r"|may"
        + _S
        + r")?(?:solve|complete|finish|continue|proceed|start|begin|answer|perform|tackle|handle"
        r"|respond|do|work"
        + _S
        + r"on|carry"
        + _S
        + r"on)"
        + _S
        + r"(?:with"
        + _S
        + r"|to"
        + _S
        + r")?(?:the|your|this|my|any)"
        + _S
        + r"(?:task|request|job|assignment|question|instructions?|query|work)"
        + _E,
    ),
    (
        "before-you-can",
        r"task"
        + _S
        + r"(?:that"
        + _S
        + r")?i"
        + _S
        + r"(?:gave|assigned|asked|set)(?:"
        + _S
        + r"to)?"
        + _S
        + r"you"
        + _E,
    ),
    (
        "before-you-can",
        r"after"
        + _S
        + r"you"
        + _S
        + r"(?:do|complete|finish|have"
        + _S
        + r"done)"
        + _S
        + r"(?:that|this|it)\s{0,3},?"
        + _S
        + r"you"
        + _S
        + r"(?:can|may|should)"
        + _E,
    ),
    (
        "before-you-can",
        r"please" + _S + r"do" + _S + r"the" + _S + r"following" + _S + r"first" + _E,
    ),
    # speaking to the model
    (
        "addressed-to-model",
        r"to" + _S + r"you\s{0,3},?" + _S + r"(?:the" + _S + r")?" + _MODEL + _E,
    ),
    *(
        (
            "addressed-to-model",
            word
            + r"\s{0,3},?"
            + _S
            + r"(?:the"
            + _S
            + r")?(?:"
            + _MODEL
            + r"|(?:ai"
            + _S
            + r")?assistant(?=\s{0,3}[,:!]))"
            + _E,
        )
        for word in ("dear", "hey", "hi", "hello", "attention")
    ),
    (
        "addressed-to-model",
        r"note"
        + _S
        + r"to(?:"
        + _S
        + r"the)?"
        + _S
        + r"(?:"
        + _MODEL
        + r"|(?:ai"
        + _S
        + r")?assistants?)"
        + _E,
    ),
    (
        "addressed-to-model",
        r"message"
        + _S
        + r"(?:for|to)(?:"
        + _S
        + r"the)?"
        + _S
        + r"(?:"
        + _MODEL
        + r"|(?:ai"
        + _S
        + r")?assistants?)"
        + _E,
    ),
    (
        "addressed-to-model",
        r"you"
        + _S
        + r"are"
        + _S
        + r"(?:an?|the)"
        + _S
        + r"(?:ai|llm|(?:large"
        + _S
        + r")?language"
        + _S
        + r"model)"
        + _E,
    ),
    (
        "addressed-to-model",
        r"as" + _S + r"an?" + _S + r"(?:ai|llm|(?:large" + _S + r")?language" + _S + r"model)" + _E,
    ),
    (
        "addressed-to-model",
        r"if"
        + _S
        + r"you"
        + _S
        + r"are"
        + _S
        + r"an?"
        + _S
        + r"(?:ai|llm|language"
        + _S
        + r"model|assistant|agent|bot)"
        + _E,
    ),
    # naming the agent's own tools
    *(
        ("tool-directive", verb + _S + r"the" + _S + r"(?:tool|function)\s{0,3}[`'\"]\w")
        for verb in ("use", "call", "invoke", "run", "execute")
    ),
    ("tool-directive", r"with" + _S + r"the" + _S + r"following" + _S + r"arguments" + _E),
    # "TODO: <do something>"
    ("todo-directive", r"todo\s{0,3}:\s{0,12}(?:please" + _S + r")?" + _ACTION_VERB + _E),
)

_LINE_SYSTEM = r"system[ \t]{0,3}:[ \t]{0,3}(?=\S)"
"""``system: ...`` counts only at the start of a line (checked in Python)."""


_PAIRS: tuple[tuple[str, str], ...] = (
    *(("<" + name + r"\s{0,3}>", "</" + _TAG_NAME + r"\s{0,3}>") for name in _TAG_NAMES),
    (r"<\|\s{0,3}im_start\s{0,3}\|>", r"<\|\s{0,3}im_end\s{0,3}\|>"),
    (r"<\|\s{0,3}start_header_id\s{0,3}\|>", r"<\|\s{0,3}eot_id\s{0,3}\|>"),
    (r"\[inst\]", r"\[/inst\]"),
    (r"<<sys>>", r"<</sys>>"),
    (r"<start_of_turn>", r"<end_of_turn>"),
)
"""Opening markup and the closing markup that ends its region; one pattern per opening, so that
each has a long literal prefix."""

_CHAT_TOKENS = (
    r"<\|\s{0,3}(?:im_sep|system|user|assistant|endoftext|end_header_id|begin_of_text"
    r"|end_of_text)\s{0,3}\|>"
)
"""Chat-template tokens that open no region of their own."""


@dataclass(frozen=True)
class _Rule:
    name: str
    kind: str  # "plain", "qualified", "tag-open", "tag-close", "imperative", "line-system"
    pattern: re.Pattern[str]
    closer: re.Pattern[str] | None = None  # for "tag-open": what ends its region


def _compile_rules() -> tuple[_Rule, ...]:
    closers = {closer: re.compile(closer) for _, closer in _PAIRS}
    rules = [
        _Rule("role-marker", "tag-open", re.compile(opener), closers[closer])
        for opener, closer in _PAIRS
    ]
    rules += [_Rule("role-marker", "tag-close", pattern) for pattern in closers.values()]
    rules += [_Rule("role-marker", "plain", re.compile(_CHAT_TOKENS))]
    rules += [_Rule("role-marker", "line-system", re.compile(_LINE_SYSTEM))]
    rules += [
        _Rule(name, "qualified" if pattern.endswith(_IGNORE_TAIL) else "plain", re.compile(pattern))
        for name, pattern in _PLAIN
    ]
    rules += [
        _Rule("imperative-to-act", "imperative", re.compile(_imperative_pattern(verb)))
        for verb in _IMPERATIVE_VERBS
    ]
    return tuple(rules)


_RULES = _compile_rules()


@dataclass(frozen=True)
class _Group:
    """Rules searched together: ``pattern`` is the alternation of their patterns.

    An alternation matches at a position exactly when one of its branches does, so a search for
    ``pattern`` finds the first position where *some* member matches, and each member's own
    ``match`` there gives the match its own search would have found. Which rules share a group
    therefore changes only the speed, never a result: grouping by first character lets the engine
    skip to that character in C, and one scan then serves every rule of the group.
    """

    pattern: re.Pattern[str]
    members: tuple[int, ...]  # indices into _RULES, ascending
    lead: str  # the character every member's pattern opens with
    sparse: bool  # markup: the lead is rare in text, so its occurrences are tried one by one


_SPARSE_LEADS = "<[#"
"""Leads of the markup rules (``<INFORMATION>``, ``[INST]``, ``###``). Tool data holds few of
these characters, so :func:`_next_start` reaches each with ``str.find`` (``memchr``) and tries
the group there, instead of a regex scan of the whole text that costs as much as a letter's."""

_SPARSE_TRIES = 64
"""Occurrences of a sparse lead tried one by one before one regex scan takes over (a text full
of ``<`` would otherwise cost a Python call per character)."""


def _compile_groups() -> tuple[_Group, ...]:
    by_lead: dict[str, list[int]] = {}
    for index, rule in enumerate(_RULES):
        source = rule.pattern.pattern
        lead = source[:2] if source.startswith("\\") else source[:1]
        by_lead.setdefault(lead, []).append(index)
    return tuple(
        _Group(
            re.compile("|".join(f"(?:{_RULES[index].pattern.pattern})" for index in members)),
            tuple(members),
            lead[-1],
            lead[-1] in _SPARSE_LEADS,
        )
        for lead, members in by_lead.items()
    )


_GROUPS = _compile_groups()

_SOURCES = tuple(rule.pattern.pattern for rule in _RULES)
"""Every rule's pattern, for the prefilter (:mod:`thirdway.verify.prefilter`)."""

_IGNORE_QUALIFIER = re.compile(
    r"(?<![a-z])(?:all|any|every|your|prior|previous|above|earlier|preceding|original|initial"
    r"|former|old|system)(?![a-z])"
)
""""ignore the instructions on the box" is not an attack; "ignore all/previous/your ..." is."""


_CONTINUES = re.compile(
    r"(?<![a-z])(?:you|your|yours|i|i'm|i'd|i'll|me|my|mine|we|us|our|should|must|need|needs"
    r"|make" + _S + r"sure|remember|then|after|afterwards|finally|first|next|instead|also"
    r"|please|thanks|thank|signed|don'?t|do"
    + _S
    + r"not|without|subject|body|"
    + _ACTION_VERB
    + r")(?![a-z])"
)
"""A sentence after a trigger that still gives orders (or signs them off) joins its span."""

_PARAGRAPH_OPENER = re.compile(
    r"(?:[-*>]\s{1,3}|[0-9]{1,2}[.)]\s{1,3})?(?:then|after|afterwards|finally|also|next|first"
    r"|second|third|lastly|and|subject|body|signed|thanks|thank" + _S + r"you|hi|hello|dear"
    r"|(?:best|regards|cheers|sincerely)(?=[^\n]{0,24}$)"  # a short sign-off
    r"|p\.?s\.?|remember|make" + _S + r"sure|don'?t|do" + _S + r"not"
    r"|please|i|i'm|i'd|i'll|my|me|we|instead|" + _ACTION_VERB + r")(?![a-z])"
)
"""How a paragraph that carries on an injected instruction opens (a next step, the message to
send, a sign-off)."""

_LIST_ITEM = re.compile(r"-[ \t]{1,4}")
_FIELD_KEY = re.compile(r"(?:-[ \t]{1,4})?[\w.-]{1,40}:[ \t]{1,4}['\"]?")
"""A YAML key (or list item + key) at the start of a line: document structure, not text."""

_SENTENCE_END = re.compile(r"[.!?]+['\"’”)\]]*(?=\s)")

_BOUNDARY = re.compile(
    # Every branch starts by consuming one of these characters, so that ``re`` skips ahead to
    # the next candidate with a fast character-set scan; lookbehinds then tell them apart.
    r"[\n\\'\"](?:"
    r"(?<=\n)[ \t\r]*\n"  # a blank line
    r"|(?<=\n)(?=[^\sa-z])"  # the next line starts at column 0 (and is not a hard wrap)
    r"|(?<=\\)n"  # an escaped newline inside a quoted string
    r"|(?P<field>(?<=\n)(?P<yaml>[ \t]{0,40})(?=-[ \t]|[\w.-]{1,40}:(?:\s|$)|[{}\[\]])"  # YAML
    r"|(?<=['\"])(?<![\\']['\"])[ \t]{0,4}(?:,[ \t]{0,4}['\"]|[}\]])))"  # end of a quoted item
)
"""Where a paragraph of tool data ends. A span never grows past one, except by a hop, and never
hops past a ``field`` boundary (the next key or item of a structured rendering)."""


_PREAMBLE_RULES = frozenset(
    {"role-marker", "ignore-previous", "before-you-can", "addressed-to-model", "todo-directive"}
)


# --------------------------------------------------------------------------- scanning


class _ForwardSearch:
    """First match of a pattern at or after a position, for queries that mostly move forward.

    The answer to the previous query is remembered together with the stretch known to hold no
    match, so that a run of queries over one text costs one pass over it, not one per query.
    """

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self._pattern = pattern
        self._text = text
        self._known_from = 0  # no match starts in [known_from, known_to) ...
        self._known_to = 0
        self._hit: re.Match[str] | None = None  # ... and _hit (if any) starts at known_to

    def find(self, pos: int, limit: int) -> re.Match[str] | None:
        """The first match starting in ``[pos, limit)``, or None."""
        if self._known_from <= pos <= self._known_to:
            if self._hit is not None:
                return self._hit if self._hit.start() < limit else None
            if limit <= self._known_to:
                return None
            start = self._known_to
        else:
            self._known_from = start = pos
        window_end = min(len(self._text), limit + _LOOKAHEAD_MARGIN)
        match = self._pattern.search(self._text, start, window_end)
        if match is not None and match.start() < limit:
            self._known_to, self._hit = match.start(), match
            return match
        self._known_to, self._hit = max(start, limit), None
        return None


class _Scan:
    """State of one screening pass over one text."""

    def __init__(self, text: str, low: str) -> None:
        self.text = text
        self.low = low
        self._boundaries = _ForwardSearch(_BOUNDARY, text)
        self._closers: dict[re.Pattern[str], _ForwardSearch] = {}

    # ---------------------------------------------------------------- geometry

    def paragraph_end(self, pos: int, field_indent: int) -> tuple[int, int]:
        """``(end, next_start)``: where the paragraph holding ``pos`` ends, and where the text
        after that boundary begins (the end of the text when the boundary ends a field, since
        nothing may be pulled in across it).

        A YAML key or list item ends a field only at an indentation of at most ``field_indent``:
        deeper lines continue the scalar the span started in, whatever they look like.
        """
        size = len(self.text)
        while True:
            match = self._boundaries.find(pos, size)
            if match is None:
                return size, size
            if match.group("field") is None:
                return match.start(), match.end()
            if match.group("yaml") is None:
                return match.start(), size  # the end of a quoted item
            if field_indent < 0:
                return match.start(), match.end()  # plain text: a line that opens a list or key
            if self._indent(match) <= field_indent:
                return match.start(), size
            pos = match.end()  # a deeper line: still the same scalar

    @staticmethod
    def _indent(match: re.Match[str]) -> int:
        """Indentation of the line a ``yaml`` boundary match opens."""
        return len(match.group("yaml"))

    def field_indent(self, pos: int) -> int:
        """The deepest indentation at which a YAML key or item ends the field holding ``pos``
        (-1 outside YAML: no key ends it, only the other boundaries)."""
        text = self.text
        line_start = text.rfind("\n", max(0, pos - 4000), pos) + 1
        if line_start == 0 and pos > 4000:
            return -1
        line_end = min(pos, line_start + 64)
        indent = len(text[line_start:line_end]) - len(text[line_start:line_end].lstrip(" "))
        item = _LIST_ITEM.match(text, line_start + indent, pos)
        after_item = item.end() if item is not None else line_start + indent
        if _FIELD_KEY.match(text, after_item, pos) is not None:
            return indent + 2 if item is not None else indent  # "- key: ..." / "key: ..."
        if item is not None:
            return indent  # "- value ...": the next item sits at the same indentation
        return indent - 1  # a continuation line: its key sits further left (none: plain text)

    def closing(self, closer: re.Pattern[str], pos: int) -> re.Match[str] | None:
        """The first ``closer`` within MAX_TAG_REGION after ``pos``."""
        search = self._closers.get(closer)
        if search is None:
            search = self._closers[closer] = _ForwardSearch(closer, self.low)
        return search.find(pos, pos + MAX_TAG_REGION)

    def sentence_start(self, pos: int) -> int:
        """Start of the sentence holding ``pos``, looking back at most MAX_BACKWARD chars."""
        text, low = self.text, max(0, pos - MAX_BACKWARD)
        if pos > 0 and not text[pos - 1].isspace() and text[pos - 2 : pos] != "\\n":
            return pos  # glued to what precedes it ("USAIgnore ..."): the injection starts here
        escaped = text.rfind("\\n", low, pos)
        cut = max(
            text.rfind("\n", low, pos),
            text.rfind(". ", low, pos),
            text.rfind("! ", low, pos),
            text.rfind("? ", low, pos),
            escaped + 1 if escaped >= 0 else -1,
        )
        if cut < 0:
            return pos
        start = cut + 1
        while start < pos and text[start].isspace():
            start += 1
        start = self._with_exclamation(cut, start)
        key = _FIELD_KEY.match(text, start, pos) if text[cut] == "\n" else None
        if key is not None:
            return (
                key.end()
            )  # "subject: Ignore ...": the key is the document's, not the injection's
        return start

    def _with_exclamation(self, cut: int, start: int) -> int:
        """Take in a short shout just before the sentence ("IMPORTANT!!! Ignore ...", also on
        the line before), but never across a blank line."""
        text = self.text
        back = start - 1
        while back >= 0 and start - back <= 40:
            if text[back] in " \t\r\n":
                back -= 1
            elif back >= 1 and text[back - 1 : back + 1] == "\\n":
                back -= 2  # an escaped newline
            else:
                break
        if back <= 0 or text[back] not in "!:" or text.count("\n", back, start) > 1:
            return start
        low = max(0, back - 32)
        escaped = text.rfind("\\n", low, back)
        before = max(
            text.rfind("\n", low, back),
            text.rfind(". ", low, back),
            text.rfind("! ", low, back),
            text.rfind("? ", low, back),
            text.rfind(": ", low, back),
            text.rfind(".", low, back),
            text.rfind("'", low, back),
            text.rfind('"', low, back),
            escaped + 1 if escaped >= 0 else -1,
        )
        if before < 0 and low > 0:
            return start
        shout = text[before + 1 : back + 1]
        if 0 < len(shout.strip()) <= 24 and len(shout.split()) <= 2:
            return back + 1 - len(shout.lstrip())
        return start

    def sentence_end(self, pos: int, limit: int) -> int:
        """End of the sentence holding ``pos`` (after its final punctuation), at most ``limit``."""
        match = _SENTENCE_END.search(self.low, pos, limit)
        return match.end() if match is not None else limit

    # ---------------------------------------------------------------- spans

    def extend(self, trigger_start: int, trigger_end: int, rule: str) -> int:
        """End of the span a trigger opens: its sentence, the following sentences of the
        paragraph that keep giving orders, then further paragraphs while the text announces
        them (a trailing colon), the trigger was a bare preamble, or they open like orders."""
        indent = self.field_indent(trigger_start)
        para_end, next_start = self.paragraph_end(trigger_end, indent)
        end = self._continue_sentences(trigger_end, para_end)
        if end < para_end:
            return end
        pulled = self._bare(trigger_end, para_end, rule) or self._announces(end)
        for _ in range(MAX_HOPS):
            following = self._next_nonempty_paragraph(next_start, indent)
            if following is None:
                return end
            start, (next_end, after) = following
            if not (pulled or _PARAGRAPH_OPENER.match(self.low, start, next_end)):
                return end
            end = self._continue_sentences(start, next_end, include_first=True)
            if end < next_end:
                return end
            next_start = after
            pulled = self._announces(end)
        return end

    def _continue_sentences(self, pos: int, para_end: int, *, include_first: bool = False) -> int:
        """End of the sentence at ``pos`` plus the continuation sentences after it."""
        limit = min(para_end, pos + MAX_CONTINUATION)
        end = self.sentence_end(pos, limit)
        if include_first and end >= limit:
            return para_end if limit == para_end else end
        while end < limit:
            next_end = self.sentence_end(end, limit)
            if _CONTINUES.search(self.low, end, next_end) is None:
                break
            end = next_end
        if end >= limit and limit < para_end:
            return limit
        return end if end < para_end else para_end

    def _announces(self, end: int) -> bool:
        """Whether the text before ``end`` ends with a colon ("do the following:")."""
        tail = self.text[max(0, end - 8) : end].rstrip()
        return tail.endswith(":")

    def _bare(self, trigger_end: int, para_end: int, rule: str) -> bool:
        """Whether the trigger is all its paragraph says ("This is a message to you, GPT-4.")."""
        return (
            rule in _PREAMBLE_RULES
            and para_end - trigger_end <= 8
            and not any(char.isalnum() for char in self.text[trigger_end:para_end])
        )

    def _skip_blank(self, pos: int) -> int:
        """Skip whitespace, escaped newlines and tabs, and YAML's line-continuation backslashes."""
        text, size = self.text, len(self.text)
        while pos < size:
            if text[pos].isspace():
                pos += 1
            elif text[pos] == "\\" and pos + 1 < size and text[pos + 1] in "ntr \n":
                pos += 2
            else:
                break
        return pos

    def _next_nonempty_paragraph(self, pos: int, indent: int) -> tuple[int, tuple[int, int]] | None:
        """First paragraph at or after ``pos`` with any visible text: (start, (end, next)).
        Whitespace and YAML's line-continuation backslashes before it are skipped."""
        text = self.text
        for _ in range(64):
            pos = self._skip_blank(pos)
            if pos >= len(text):
                return None
            end, next_start = self.paragraph_end(pos, indent)
            if end > pos:
                return pos, (end, next_start)
            pos = max(next_start, pos + 1)
        return None

    # ---------------------------------------------------------------- acceptance

    def accept(self, rule: _Rule, match: re.Match[str]) -> bool:
        """Checks a regex alone cannot make cheaply."""
        if rule.kind == "qualified":
            return _IGNORE_QUALIFIER.search(match.group(0)) is not None
        if rule.kind == "line-system":
            line_start = self.text.rfind("\n", max(0, match.start() - 9), match.start()) + 1
            if line_start == 0 and match.start() > 8:
                return False
            return self.text[line_start : match.start()].strip(" \t") == ""
        if rule.kind == "imperative":
            return self._imperative_ok(match)
        return True

    def _imperative_ok(self, match: re.Match[str]) -> bool:
        """The pattern saw the verb open a sentence, or follow "please"/"then"/...; in the
        second case that word must itself open the sentence ("I will now send" does not)."""
        if self._opens_sentence(match.start()):
            return True
        before = self.low[max(0, match.start() - 16) : match.start()]
        for prefix in _IMPERATIVE_PREFIXES:
            for joint in (" ", ", "):
                if before.endswith(prefix + joint):
                    at = match.start() - len(prefix) - len(joint)
                    return at == 0 or (not self.low[at - 1].isalnum() and self._opens_sentence(at))
        return False

    def _opens_sentence(self, pos: int) -> bool:
        """Whether ``pos`` follows a sentence starter (up to two spaces between) or the start."""
        back = pos - 1
        while back >= 0 and pos - back <= 3 and self.text[back] in " \t":
            back -= 1
        if back < 0 or self.text[back] in _SENTENCE_STARTERS:
            return True
        return back < pos - 1 and self.text[back] in _BULLETS


def _lower(text: str) -> str:
    """Lower-case ``text`` without changing any offset (only U+0130 lower-cases to two chars)."""
    if "\u0130" in text:
        text = text.replace("\u0130", "i")
    return text.lower()


def _raw_spans(text: str) -> list[tuple[int, int, str]]:
    """Spans of the triggers, in text order; a trigger inside an earlier span is skipped.

    Triggers are taken in order of position, and at one position in the order of ``_RULES``; a
    trigger the acceptance checks refuse does not cover anything, so later ones still count.
    """
    low = _lower(text)
    possible = prefilter.matching(_SOURCES, low)  # one DFA pass; None: it did not run
    if possible is not None and not possible:
        return []  # no rule can match anywhere
    scan = _Scan(text, low)
    queue: list[tuple[int, int]] = []  # (where a group next matches, group index)
    for number, group in enumerate(_GROUPS):
        if possible is None or not possible.isdisjoint(group.members):
            _push_group(queue, number, 0, low)
    spans: list[tuple[int, int, str]] = []
    covered = 0  # triggers starting before this lie inside a span already
    while queue:
        pos = queue[0][0]
        here = [heapq.heappop(queue)[1]]
        while queue and queue[0][0] == pos:
            here.append(heapq.heappop(queue)[1])
        if pos >= covered:
            for index, match in _matches_at(here, pos, low):
                rule = _RULES[index]
                if pos < covered or not scan.accept(rule, match):
                    continue
                if len(spans) >= MAX_SPANS:
                    # A text this full of instructions is hostile on its face: fail closed.
                    spans.append((pos, len(text), rule.name))
                    return spans
                span = _span(scan, rule, match)
                spans.append(span)
                covered = max(covered, span[1], match.end())
        for number in here:
            _push_group(queue, number, max(covered, pos + 1), low)
    return spans


def _matches_at(groups: list[int], pos: int, low: str) -> list[tuple[int, re.Match[str]]]:
    """The matches of the rules of ``groups`` that start at ``pos``, in the order of ``_RULES``."""
    found = []
    for number in groups:
        for index in _GROUPS[number].members:
            match = _RULES[index].pattern.match(low, pos)
            if match is not None:
                found.append((index, match))
    found.sort(key=lambda item: item[0])
    return found


def _push_group(queue: list[tuple[int, int]], number: int, pos: int, low: str) -> None:
    following = _next_start(_GROUPS[number], pos, low)
    if following is not None:
        heapq.heappush(queue, (following, number))


def _next_start(group: _Group, pos: int, low: str) -> int | None:
    """Where ``group.pattern.search(low, pos)`` would find its match, or None.

    Every member opens with ``group.lead``, so no match starts before the next occurrence of it;
    and a search finds a match at a position exactly when a match attempt there succeeds. For a
    sparse lead the occurrences are therefore reached with ``str.find`` and tried in turn.
    """
    if group.sparse:
        for _ in range(_SPARSE_TRIES):
            pos = low.find(group.lead, pos)
            if pos < 0:
                return None
            if group.pattern.match(low, pos) is not None:
                return pos
            pos += 1
    found = group.pattern.search(low, pos)
    return None if found is None else found.start()


def _span(scan: _Scan, rule: _Rule, match: re.Match[str]) -> tuple[int, int, str]:
    """The span one accepted trigger opens."""
    if rule.kind.startswith("tag"):
        if rule.kind == "tag-open":
            close = scan.closing(rule.closer, match.end()) if rule.closer else None
            if close is not None:
                return match.start(), close.end(), rule.name  # the whole tagged region
            return match.start(), scan.extend(match.start(), match.end(), rule.name), rule.name
        # a closing tag whose opening tag was lost (cut off, or never there)
        return scan.sentence_start(match.start()), match.end(), rule.name
    start = scan.sentence_start(match.start())
    return start, scan.extend(match.start(), match.end(), rule.name), rule.name


def _excerpt(text: str, start: int, end: int) -> str:
    """The span's text with whitespace collapsed, cut to EXCERPT_CHARS."""
    flat = " ".join(text[start : min(end, start + 4 * EXCERPT_CHARS)].split())
    if len(flat) <= EXCERPT_CHARS:
        return flat
    return flat[: EXCERPT_CHARS - 1] + "…"


def find_instruction_spans(text: str) -> tuple[InstructionSpan, ...]:
    """Instruction-like spans of ``text``, sorted by start and non-overlapping.

    Overlapping spans, and spans with only a little whitespace between them, merge; a merged
    span keeps the rule of its earliest trigger. Offsets index ``text`` as given.
    """
    merged: list[tuple[int, int, str]] = []
    for start, end, rule in sorted(_raw_spans(text), key=lambda span: (span[0], -span[1])):
        if merged:
            first_start, first_end, first_rule = merged[-1]
            gap = text[first_end:start] if start - first_end <= MERGE_GAP else "x"
            if start <= first_end or gap.isspace():
                merged[-1] = (first_start, max(first_end, end), first_rule)
                continue
        merged.append((start, end, rule))
    return tuple(
        InstructionSpan(start=start, end=end, rule=rule, excerpt=_excerpt(text, start, end))
        for start, end, rule in merged
    )
