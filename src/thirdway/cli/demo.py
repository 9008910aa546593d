"""``thirdway demo``: the main job on the embedded default (a SQLite log in a temporary folder).

An agent pays a bill carrying AgentDojo's banking prompt injection behind a fully wired gateway
(trust tiers, automatic sanctions, the dialogue service with its automatic auditor), and the demo
shows five labelled outcomes (see :mod:`thirdway.demo.runner`). The agent is scripted; with
``--model local`` (the bundled SmolLM2) or ``--model-url URL`` (any OpenAI-compatible endpoint) a
language model also proposes a payment, and the demo prints what the gate made of it.
Exit 0 when all five outcomes came out as promised, 1 otherwise.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from thirdway.cli.common import console, friendly_errors
from thirdway.errors import InputError
from thirdway.llm import ChatModel, open_model


def _model(spec: str | None, url: str | None, name: str) -> ChatModel | None:
    if spec is not None and url is not None:
        raise InputError("give --model or --model-url, not both")
    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"--model-url must be an http(s) URL, not {url[:80]!r}")
        return open_model(url, endpoint_model=name)
    if spec is not None:
        return open_model(spec)
    return None


@friendly_errors
def demo(
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Use this (new or empty) folder and keep the log there."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Also let a model propose: 'local' (bundled) or a .gguf."),
    ] = None,
    model_url: Annotated[
        str | None,
        typer.Option("--model-url", help="Also let an OpenAI-compatible endpoint propose."),
    ] = None,
    model_name: Annotated[
        str, typer.Option("--model-name", help="The model to ask --model-url for.")
    ] = "default",
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=32, max=4096, help="The model's reply budget.")
    ] = 256,
) -> None:
    """Run an agent through a banking scenario with a prompt injection, behind the gate."""
    from thirdway.demo.runner import run_demo

    chat = _model(model, model_url, model_name)
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise InputError(f"--keep folder {keep} is not empty; give a new or empty folder")
    with tempfile.TemporaryDirectory(prefix="thirdway-demo-") as tmp:
        folder = keep or Path(tmp)
        report = run_demo(folder, console, model=chat, max_tokens=max_tokens)
    if report.model_outcome is not None:
        console.print(f"the model's proposal: {report.model_outcome}", highlight=False)
    if not report.ok:
        console.print("[red]demo finished: some outcomes were NOT as expected[/]")
        raise typer.Exit(1)
    console.print("[green]demo finished: all five outcomes as expected[/]")
