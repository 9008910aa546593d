"""The model clients: OpenAI-compatible (against a fake server on 127.0.0.1), the bundled local
model (the real SmolLM2 GGUF), JSON replies with one retry, and the response cache."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from thirdway.llm import (
    CachedModel,
    LocalModel,
    Message,
    ModelError,
    OpenAICompatible,
    ResponseCache,
    bundled_model_path,
    complete_json,
    default_cache_dir,
    local_model_id,
    open_model,
    request_key,
)
from thirdway.llm.local import file_sha256

HELLO: list[Message] = [{"role": "user", "content": "Say hi."}]


class Answer(BaseModel):
    ok: bool
    word: str = Field(max_length=12)


# --------------------------------------------------------------------------- fake endpoint


class FakeEndpoint:
    """A chat-completions server on 127.0.0.1 that replays a script of canned replies."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes, float]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                endpoint.requests.append(json.loads(self.rfile.read(length)))
                endpoint.headers.append(dict(self.headers))
                status, body, delay = endpoint.replies.pop(0) if endpoint.replies else (404, b"", 0)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def reply(self, content: str | None, *, status: int = 200, delay: float = 0.0) -> None:
        body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
        self.replies.append((status, json.dumps(body).encode(), delay))

    def raw(self, body: bytes, *, status: int = 200) -> None:
        self.replies.append((status, body, 0.0))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint()
    yield server
    server.close()


def test_openai_request_shape(endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-test")
    endpoint.reply('{"ok": true, "word": "hi"}')
    client = OpenAICompatible(endpoint.url, "tiny", api_key_env="TEST_KEY", timeout_s=5)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    text = client.complete(HELLO, json_schema=schema, max_tokens=7, seed=3)
    assert text == '{"ok": true, "word": "hi"}'
    sent = endpoint.requests[0]
    assert sent["model"] == "tiny"
    assert sent["messages"] == [{"role": "user", "content": "Say hi."}]
    assert sent["temperature"] == 0 and sent["max_tokens"] == 7 and sent["seed"] == 3
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == schema
    assert endpoint.headers[0]["Authorization"] == "Bearer sk-test"


def test_openai_without_schema_or_key(
    endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    endpoint.reply("plain")
    client = OpenAICompatible(endpoint.url, "tiny", timeout_s=5)
    assert client.complete(HELLO, max_tokens=5) == "plain"
    assert "response_format" not in endpoint.requests[0]
    assert "Authorization" not in endpoint.headers[0]


def test_openai_http_500(endpoint: FakeEndpoint) -> None:
    endpoint.raw(b'{"error": "overloaded"}', status=500)
    client = OpenAICompatible(endpoint.url, "tiny", timeout_s=5)
    with pytest.raises(ModelError, match=r"HTTP 500: .*overloaded"):
        client.complete(HELLO, max_tokens=5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b'{"choices": []}', "not a chat completion"),
        (b'{"id": "x"}', "not a chat completion"),
        (b'{"choices": [{"message": {"content": null}}]}', "no text content"),
    ],
)
def test_openai_garbage_body(endpoint: FakeEndpoint, body: bytes, message: str) -> None:
    endpoint.raw(body)
    client = OpenAICompatible(endpoint.url, "tiny", timeout_s=5)
    with pytest.raises(ModelError, match=message):
        client.complete(HELLO, max_tokens=5)


def test_openai_timeout(endpoint: FakeEndpoint) -> None:
    endpoint.reply("late", delay=1.5)
    client = OpenAICompatible(endpoint.url, "tiny", timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"timed out after 0\.3s"):
        client.complete(HELLO, max_tokens=5)
    assert time.monotonic() - started < 1.4


def test_openai_unreachable() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()  # nothing listens on this port now
    client = OpenAICompatible(f"http://127.0.0.1:{port}/v1", "tiny", timeout_s=2)
    with pytest.raises(ModelError, match="unreachable"):
        client.complete(HELLO, max_tokens=5)


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:8000", ""])
def test_openai_rejects_non_http_url(url: str) -> None:
    with pytest.raises(ModelError, match="http"):
        OpenAICompatible(url, "tiny")


# --------------------------------------------------------------------------- JSON replies


def test_complete_json_retries_once(endpoint: FakeEndpoint) -> None:
    endpoint.reply('{"ok": tr')  # cut short
    endpoint.reply('{"ok": true, "word": "yes"}')
    client = OpenAICompatible(endpoint.url, "tiny", timeout_s=5)
    answer = complete_json(client, HELLO, Answer, max_tokens=20, seed=5)
    assert answer == Answer(ok=True, word="yes")
    second = endpoint.requests[1]
    assert second["seed"] == 6
    assert second["messages"][-2] == {"role": "assistant", "content": '{"ok": tr'}
    assert "not valid JSON" in second["messages"][-1]["content"]


def test_complete_json_gives_up_after_one_retry(endpoint: FakeEndpoint) -> None:
    endpoint.reply("sure! here you go")
    endpoint.reply('{"ok": "maybe", "word": 1}')
    client = OpenAICompatible(endpoint.url, "tiny", timeout_s=5)
    with pytest.raises(ModelError, match=r"after one retry \(first: .*not JSON.*retry: .*schema"):
        complete_json(client, HELLO, Answer, max_tokens=20)
    assert len(endpoint.requests) == 2


# --------------------------------------------------------------------------- cache


class CountingModel:
    """A deterministic fake model that counts how often it is really asked."""

    model_id = "fake:counting"

    def __init__(self) -> None:
        self.calls = 0

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int,
        seed: int = 0,
    ) -> str:
        self.calls += 1
        return f"reply {self.calls} to {messages[-1]['content']} seed {seed}"


def test_cache_hit_and_misses(tmp_path: Path) -> None:
    inner = CountingModel()
    model = CachedModel(inner, ResponseCache(tmp_path))
    first = model.complete(HELLO, max_tokens=10, seed=1)
    assert model.complete(HELLO, max_tokens=10, seed=1) == first
    assert (inner.calls, model.hits, model.misses) == (1, 1, 1)
    model.complete(HELLO, max_tokens=10, seed=2)  # different seed
    model.complete(HELLO, max_tokens=11, seed=1)  # different budget
    model.complete(HELLO, max_tokens=10, seed=1, json_schema={"type": "object"})  # schema
    model.complete([{"role": "user", "content": "Say bye."}], max_tokens=10, seed=1)
    assert inner.calls == 5 and model.hits == 1


def test_cache_persists_across_instances(tmp_path: Path) -> None:
    first = CachedModel(CountingModel(), ResponseCache(tmp_path))
    answer = first.complete(HELLO, max_tokens=10)
    first.cache.close()
    inner = CountingModel()
    second = CachedModel(inner, ResponseCache(tmp_path))
    assert second.complete(HELLO, max_tokens=10) == answer
    assert inner.calls == 0


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THIRDWAY_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert ResponseCache().path.parent == tmp_path / "c"
    monkeypatch.delenv("THIRDWAY_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "thirdway"


def test_cache_unwritable_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ModelError, match="cannot open the model response cache"):
        ResponseCache(blocker / "sub")


@given(
    seeds=st.tuples(st.integers(0, 2**31), st.integers(0, 2**31)),
    text=st.text(max_size=40),
)
def test_request_key_separates_seeds(seeds: tuple[int, int], text: str) -> None:
    messages: list[Message] = [{"role": "user", "content": text}]
    a = request_key("m", messages, json_schema=None, max_tokens=8, seed=seeds[0])
    b = request_key("m", messages, json_schema=None, max_tokens=8, seed=seeds[1])
    assert (a == b) == (seeds[0] == seeds[1])
    assert a == request_key("m", list(messages), json_schema=None, max_tokens=8, seed=seeds[0])


# --------------------------------------------------------------------------- local model


def test_open_model_specs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        open_model("gpt-9")
    with pytest.raises(ModelError, match="endpoint_model"):
        open_model("http://127.0.0.1:1/v1")
    with pytest.raises(ModelError, match="model file not found"):
        open_model(str(tmp_path / "missing.gguf"))
    client = open_model("http://127.0.0.1:1/v1", endpoint_model="m", cache_dir=tmp_path)
    assert isinstance(client, CachedModel)
    assert client.model_id == "openai-compatible:http://127.0.0.1:1/v1:m"


def test_local_model_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        LocalModel(tmp_path / "nope.gguf")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file")
    with pytest.raises(ModelError, match="cannot load model file"):
        LocalModel(bogus)


def test_bundled_model_is_found() -> None:
    path = bundled_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 10_000_000
    assert path.read_bytes()[:4] == b"GGUF"


@pytest.fixture(scope="module")
def smollm() -> LocalModel:
    return LocalModel(n_ctx=1024)


def test_local_model_constrained_json(smollm: LocalModel) -> None:
    messages: list[Message] = [
        {"role": "user", "content": "Is water wet? Answer in JSON with ok and word."}
    ]
    schema = Answer.model_json_schema()
    text = smollm.complete(messages, json_schema=schema, max_tokens=24)
    parsed = Answer.model_validate_json(text)  # grammar-constrained: valid by construction
    assert isinstance(parsed.ok, bool)
    again = smollm.complete(messages, json_schema=schema, max_tokens=24)
    assert again == text  # greedy decoding is deterministic


def test_local_model_prompt_too_long(smollm: LocalModel) -> None:
    huge: list[Message] = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(ModelError, match="generation failed"):
        smollm.complete(huge, max_tokens=8)


def test_local_decoding_is_greedy_with_the_given_seed(
    smollm: LocalModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    real = smollm._llama.create_chat_completion

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(smollm._llama, "create_chat_completion", spy)
    smollm.complete(HELLO, max_tokens=2, seed=5)
    assert (seen[0]["temperature"], seen[0]["seed"], seen[0]["max_tokens"]) == (0.0, 5, 2)


def test_local_model_id_names_the_weights_not_the_file_name(tmp_path: Path) -> None:
    first, second, copy = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf", tmp_path / "m.gguf"
    for path, content in ((first, b"GGUF one"), (second, b"GGUF two"), (copy, b"GGUF one")):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    ids = [local_model_id("m", file_sha256(path), 2048) for path in (first, second, copy)]
    assert ids[0] != ids[1] and ids[0] == ids[2]
    assert ids[0] == "local:m@" + hashlib.sha256(b"GGUF one").hexdigest()[:16] + ":n_ctx=2048"
    # So two same-named files never share cached replies.
    keys = {request_key(i, HELLO, json_schema=None, max_tokens=8, seed=0) for i in ids}
    assert len(keys) == 2
    with pytest.raises(ModelError, match="cannot read model file"):
        file_sha256(tmp_path)


def test_bundled_model_id_carries_its_file_hash(smollm: LocalModel) -> None:
    digest = file_sha256(bundled_model_path())
    assert smollm.sha256 == digest
    assert smollm.model_id == local_model_id("smollm2-135m-instruct", digest, 1024)
