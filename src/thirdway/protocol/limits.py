"""Size limits of the ``thirdway/1`` wire format.

Limits exist so that hostile input is refused in bounded time with a clear error instead of
exhausting memory or CPU. They are part of the format: a proposal that exceeds them is invalid
everywhere, not only on one server.
"""

MAX_ID_CHARS = 256
"""Session ids, agent ids, step ids, tool names and argument names."""

MAX_QUOTE_CHARS = 64 * 1024
"""A quote is evidence, not a document: 64 KiB is far above any honest citation."""

MAX_CLAIM_CHARS = 16 * 1024
MAX_CONTENT_CHARS = 8 * 1024 * 1024
"""One observation's content (a tool result or an instruction)."""

MAX_STEPS = 1000
MAX_CITES_PER_STEP = 64
MAX_FROM_PER_STEP = 64
MAX_BINDING_DEPTH = 16
MAX_BINDING_ITEMS = 1000
MAX_ARGS = 256
MAX_OBSERVATIONS = 100_000
