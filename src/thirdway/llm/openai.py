"""A client for OpenAI-compatible chat-completion endpoints (OpenAI, vLLM, llama.cpp server, …).

Only ``POST {base_url}/chat/completions`` is used, with ``temperature: 0``, a seed, and, when a
schema is given, ``response_format: {"type": "json_schema", ...}`` so the server constrains the
reply. Every failure a caller can meet (unreachable, timeout, HTTP error, a body that is not a
chat completion) becomes a one-line :class:`ModelError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx

from thirdway.llm.base import Message, ModelError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""A chat reply far larger than any token budget means something else answered."""


class OpenAICompatible:
    """A chat model behind an OpenAI-compatible HTTP API."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = DEFAULT_KEY_ENV,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ModelError(f"model endpoint must be an http(s) URL, got {base_url!r}")
        if timeout_s <= 0:
            raise ModelError(f"model timeout must be positive, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._timeout_s = timeout_s

    @property
    def model_id(self) -> str:
        return f"openai-compatible:{self.base_url}:{self.model}"

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int,
        seed: int = 0,
    ) -> str:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(message) for message in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json_schema, "strict": True},
            }
        return _reply_text(self._post(body))

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        url = f"{self.base_url}/chat/completions"
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise ModelError(
                f"model endpoint timed out after {self._timeout_s:g}s: {url}"
            ) from None
        except httpx.HTTPError as exc:
            raise ModelError(f"model endpoint unreachable: {url} ({exc})") from None
        if response.status_code != 200:
            snippet = response.text[:200].replace("\n", " ")
            raise ModelError(f"model endpoint returned HTTP {response.status_code}: {snippet}")
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise ModelError(f"model endpoint reply is too large ({len(response.content)} bytes)")
        return response

    def close(self) -> None:
        self._client.close()


def _reply_text(response: httpx.Response) -> str:
    """The first choice's message content, or ModelError saying what is missing."""
    try:
        payload = response.json()
    except ValueError:
        raise ModelError("model endpoint reply is not JSON") from None
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ModelError(
            "model endpoint reply is not a chat completion (no choices[0].message.content)"
        ) from None
    if not isinstance(content, str):
        raise ModelError("model endpoint reply has no text content (refused or empty)")
    return content
