"""Model clients: one :class:`ChatModel` interface over the bundled local model and
OpenAI-compatible endpoints, with a response cache keyed by request hash.

Use :func:`open_model` to turn a user-facing model spec into a (cached) client.
"""

from __future__ import annotations

from pathlib import Path

from thirdway.llm.base import (
    ChatModel,
    Message,
    ModelError,
    complete_json,
    parse_reply,
    reply_schema,
)
from thirdway.llm.cache import CachedModel, ResponseCache, default_cache_dir, request_key
from thirdway.llm.local import LocalModel, bundled_model_path, local_model_id
from thirdway.llm.openai import OpenAICompatible

__all__ = [
    "CachedModel",
    "ChatModel",
    "LocalModel",
    "Message",
    "ModelError",
    "OpenAICompatible",
    "ResponseCache",
    "bundled_model_path",
    "complete_json",
    "default_cache_dir",
    "local_model_id",
    "open_model",
    "parse_reply",
    "reply_schema",
    "request_key",
]


def open_model(
    spec: str,
    *,
    endpoint_model: str | None = None,
    timeout_s: float = 60.0,
    cache: bool = True,
    cache_dir: Path | None = None,
) -> ChatModel:
    """Open the model a user named.

    ``spec`` is ``local`` (the bundled SmolLM2), a path to a ``.gguf`` file, or the base URL of
    an OpenAI-compatible API (e.g. ``http://127.0.0.1:8000/v1``; ``endpoint_model`` then names
    the model to ask for). With ``cache`` the client is wrapped in the response cache.
    """
    model: ChatModel
    if spec == "local":
        model = LocalModel()
    elif spec.startswith(("http://", "https://")):
        if not endpoint_model:
            raise ModelError(f"name the model to ask {spec} for (endpoint_model)")
        model = OpenAICompatible(spec, endpoint_model, timeout_s=timeout_s)
    elif spec.endswith(".gguf"):
        model = LocalModel(Path(spec))
    else:
        raise ModelError(
            f"unknown model {spec!r}: use 'local', a .gguf file, or an http(s) endpoint URL"
        )
    return CachedModel(model, ResponseCache(cache_dir)) if cache else model
