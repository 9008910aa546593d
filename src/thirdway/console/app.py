"""The auditor console: a FastAPI app rendering Jinja2 templates, with htmx (vendored, no build
step) only for refreshing the queue and the question-and-answer thread.

Pages: the queue of open dialogues (risk, age), a dialogue (the action, the chain with every
quote marked in the observation it comes from, the verdict's findings, the agent's tier and
history, the thread of challenges and answers, and forms to challenge, approve and deny), an
agent (a chart of its tier over time), and the log (checkpoints and proofs, checked by the
server and again in the browser). Everything works with the keyboard alone; every form field
has a label. Auditors sign in (:mod:`thirdway.console.auth`); every POST carries a CSRF token.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from thirdway.console.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    AuditorAuth,
    RevocableAuditorAuth,
    csrf_ok,
    csrf_token,
    start_session,
)
from thirdway.console.charts import tier_chart
from thirdway.console.logview import log_view
from thirdway.console.render import age, citations, observations_view, pretty
from thirdway.dialogue import DialogueService, TransitionRefused, make_challenge
from thirdway.dialogue.challenges import LABELS
from thirdway.errors import InputError, ThirdwayError
from thirdway.ledger.log import TransparencyLog
from thirdway.trust.text import iso

HERE: Final = Path(__file__).parent
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
MAX_FIELD_CHARS: Final = 16 * 1024


class LoginRequired(Exception):
    """Raised by a page that needs a signed-in auditor."""


class BadForm(Exception):
    """A POST without the right CSRF token."""


def create_console_app(
    service: DialogueService,
    *,
    auth: AuditorAuth,
    secret_key: str | None = None,
    log: TransparencyLog | None = None,
    https_only: bool = False,
) -> FastAPI:
    """The console over ``service``; ``auth`` checks auditors' credentials, ``secret_key`` signs
    session cookies (random per process by default: sessions end with the process), ``log`` is
    the log page's log (default: the service's), ``https_only`` marks the cookie ``Secure``."""
    app = FastAPI(title="thirdway auditor console", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key or secrets.token_hex(32),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        same_site="strict",
        https_only=https_only,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        iso=iso,
        age=age,
        pretty=pretty,
        challenge_labels=LABELS,
        tier_name=service.ctx.tiers.name,
    )
    pages = _Pages(service, templates, log or service.log)
    app.state.console_auth = auth

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("HX-Request"):
            return Response("sign in again", status_code=401)
        target = quote(request.url.path, safe="/:")
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(BadForm)
    async def bad_form(request: Request, exc: BadForm) -> Response:
        return pages.render(
            request,
            "error.html",
            status=403,
            heading="Form refused",
            error="this form is out of date or came from another site; reload the page and retry",
        )

    _routes(app, pages, service, auth)
    return app


class _Pages:
    """Rendering helpers shared by the routes."""

    def __init__(
        self, service: DialogueService, templates: Jinja2Templates, log: TransparencyLog
    ) -> None:
        self.service = service
        self.templates = templates
        self.log = log

    def render(
        self, request: Request, name: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        session = request.session
        flashes = session.pop("flash", []) if "flash" in session else []
        base = {
            "request": request,
            "auditor": session.get("auditor"),
            "csrf": lambda action: csrf_token(session, action),
            "flashes": flashes,
            "now": self.service.now(),
            "title": context.get("heading", "console"),
            "error": None,
        }
        return self.templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status
        )

    def queue_rows(self, open_only: bool) -> list[dict[str, Any]]:
        now = self.service.now()
        rows = []
        for d in self.service.dialogues(open_only=open_only):
            rows.append(
                {
                    "id": d.id,
                    "kind": d.kind,
                    "agent": d.agent,
                    "tier": self.service.store.feed.tier(d.agent),
                    "tool": d.tool,
                    "risk": d.risk,
                    "state": d.state,
                    "approvals": len(d.approvals),
                    "required": d.required_approvals,
                    "age": age(now - d.opened_at),
                }
            )
        return rows

    def dialogue(
        self, request: Request, handle: str, *, error: str | None = None, status: int = 200
    ) -> HTMLResponse:
        try:
            review = self.service.review(handle)
        except ThirdwayError as exc:
            return self.render(
                request, "error.html", status=404, heading="Not found", error=str(exc)
            )
        proposal = review.proposal
        cited = citations(proposal) if proposal is not None else []
        manifest = self.service.manifests.tools.get(proposal.action.tool) if proposal else None
        return self.render(
            request,
            "dialogue.html",
            status=status,
            heading=f"Dialogue {handle}",
            review=review,
            observations=observations_view(review.observations, cited),
            manifest=manifest,
            error=error,
        )

    def thread(self, request: Request, handle: str) -> HTMLResponse:
        review = self.service.review(handle)
        return self.templates.TemplateResponse(
            request, "_thread.html", {"request": request, "review": review}
        )


def _auditor(request: Request) -> str:
    """The signed-in auditor; with revocable credentials, only while the one they signed in
    with still holds (checked on every request, like an API key)."""
    auditor = request.session.get("auditor")
    if not isinstance(auditor, str):
        raise LoginRequired()
    auth = request.app.state.console_auth
    if isinstance(auth, RevocableAuditorAuth):
        credential = request.session.get("credential")
        if not isinstance(credential, str) or not auth.still_valid(auditor, credential):
            request.session.clear()
            raise LoginRequired()
    return auditor


def _check_form(request: Request, token: str) -> str:
    auditor = _auditor(request)
    if not csrf_ok(request.session, request.url.path, token):
        raise BadForm()
    return auditor


def _flash(request: Request, message: str) -> None:
    request.session["flash"] = [*request.session.get("flash", []), message]


def _optional_int(text: str, what: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise InputError(f"{what} must be a whole number, not {text[:40]!r}")
    return int(text)


def _safe_next(target: str) -> str:
    """Only a local path: no scheme, no host, no protocol-relative ``//``."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _status(exc: ThirdwayError) -> int:
    return 409 if isinstance(exc, TransitionRefused) else 400


Field = Annotated[str, Form(max_length=MAX_FIELD_CHARS)]


def _routes(app: FastAPI, pages: _Pages, service: DialogueService, auth: AuditorAuth) -> None:
    """Attach every page and form handler."""

    @app.get("/login", response_class=HTMLResponse, name="login_form")
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return pages.render(
            request, "login.html", heading="Sign in", next=_safe_next(next), auditor_value=""
        )

    @app.post("/login", name="login")
    def login(
        request: Request, auditor: Field = "", secret: Field = "", next: Field = "/"
    ) -> Response:
        who = auth.authenticate(auditor, secret) if auditor and secret else None
        problem = None
        if who is None:
            problem = "unknown auditor id or wrong secret"
        elif who in service.store.agents:
            problem = f"{who!r} is an agent; agents cannot use the auditor console"
        if problem is not None:
            return pages.render(
                request, "login.html", status=401, heading="Sign in", error=problem,
                next=_safe_next(next), auditor_value=auditor[:256],
            )  # fmt: skip
        credential = auth.credential_id(secret) if isinstance(auth, RevocableAuditorAuth) else None
        start_session(request.session, who, credential)  # type: ignore[arg-type]
        _flash(request, f"Signed in as {who}.")
        return RedirectResponse(_safe_next(next), status_code=303)

    @app.post("/logout", name="logout")
    def logout(request: Request, csrf_token: Field = "") -> Response:
        _check_form(request, csrf_token)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse, name="queue")
    def queue(request: Request) -> HTMLResponse:
        _auditor(request)
        return pages.render(
            request, "queue.html", heading="Open dialogues", open_only=True,
            rows=pages.queue_rows(True),
        )  # fmt: skip

    @app.get("/queue/rows", response_class=HTMLResponse, name="queue_rows")
    def queue_rows(request: Request) -> HTMLResponse:
        _auditor(request)
        return pages.templates.TemplateResponse(
            request,
            "_queue_rows.html",
            {"request": request, "rows": pages.queue_rows(True), "open_only": True,
             "heading": "Open dialogues"},
        )  # fmt: skip

    @app.get("/dialogues", response_class=HTMLResponse, name="all_dialogues")
    def all_dialogues(request: Request) -> HTMLResponse:
        _auditor(request)
        return pages.render(
            request, "queue.html", heading="All dialogues", open_only=False,
            rows=pages.queue_rows(False),
        )  # fmt: skip

    @app.get("/dialogues/{handle}", response_class=HTMLResponse, name="dialogue_page")
    def dialogue_page(request: Request, handle: str) -> HTMLResponse:
        _auditor(request)
        return pages.dialogue(request, handle)

    @app.get("/dialogues/{handle}/thread", response_class=HTMLResponse, name="thread_part")
    def thread_part(request: Request, handle: str) -> Response:
        _auditor(request)
        try:
            return pages.thread(request, handle)
        except ThirdwayError as exc:
            return Response(str(exc), status_code=404)

    def act(request: Request, handle: str, action: Callable[[str], str]) -> Response:
        try:
            message = action(_auditor(request))
        except ThirdwayError as exc:
            return pages.dialogue(request, handle, error=str(exc), status=_status(exc))
        _flash(request, message)
        target = request.url_for("dialogue_page", handle=handle)
        return RedirectResponse(str(target.path), status_code=303)

    @app.post("/dialogues/{handle}/challenge", name="challenge")
    def challenge(
        request: Request,
        handle: str,
        kind: Field = "",
        obs: Field = "",
        text: Field = "",
        csrf_token: Field = "",
    ) -> Response:
        _check_form(request, csrf_token)

        def run(auditor: str) -> str:
            asked = make_challenge(kind, obs=_optional_int(obs, "the observation"), text=text)
            service.challenge(handle, auditor, asked)
            return "Challenge sent; the agent's answer will appear below."

        return act(request, handle, run)

    @app.post("/dialogues/{handle}/approve", name="approve")
    def approve(
        request: Request, handle: str, reason: Field = "", csrf_token: Field = ""
    ) -> Response:
        _check_form(request, csrf_token)

        def run(auditor: str) -> str:
            after = service.approve(handle, auditor, reason)
            if after.state == "approved":
                return "Approved."
            return (
                f"Your approval is recorded ({len(after.approvals)} of {after.required_approvals})."
            )

        return act(request, handle, run)

    @app.post("/dialogues/{handle}/deny", name="deny")
    def deny(request: Request, handle: str, reason: Field = "", csrf_token: Field = "") -> Response:
        _check_form(request, csrf_token)

        def run(auditor: str) -> str:
            service.deny(handle, auditor, reason)
            return "Denied; the agent is told your reason."

        return act(request, handle, run)

    @app.get("/agents/{agent}", response_class=HTMLResponse, name="agent_page")
    def agent_page(request: Request, agent: str) -> HTMLResponse:
        _auditor(request)
        state, points = service.trust(agent)
        initial = service.ctx.rules.initial_tier
        start_at = min((d.opened_at for d in service.dialogues() if d.agent == agent), default=None)
        first = min(
            [p.at for p in points] + ([start_at] if start_at else []), default=service.now()
        )
        chart = tier_chart(
            [(p.at, p.tier) for p in points],
            start=(first, initial),
            now=service.now(),
            names=[spec.name for spec in service.ctx.tiers.tiers],
        )
        return pages.render(
            request, "agent.html", heading=f"Agent {agent}", agent=agent, state=state,
            points=points, chart=chart,
            spot_rate=service.ctx.tiers.spec(state.tier).spot_audit_percent,
            dialogues=[d for d in service.dialogues() if d.agent == agent],
        )  # fmt: skip

    @app.get("/log", response_class=HTMLResponse, name="log_page")
    def log_page(request: Request, entry: str = "") -> HTMLResponse:
        _auditor(request)
        try:
            index = _optional_int(entry, "the entry index")
        except InputError as exc:
            return pages.render(
                request, "log.html", status=400, heading="Log", view=log_view(pages.log, None),
                error=str(exc),
            )  # fmt: skip
        return pages.render(request, "log.html", heading="Log", view=log_view(pages.log, index))

    @app.post("/log/checkpoint", name="sign_checkpoint")
    def sign_checkpoint(request: Request, csrf_token: Field = "") -> Response:
        _check_form(request, csrf_token)
        try:
            pages.log.checkpoint()
            _flash(request, f"Signed a checkpoint of {pages.log.size()} entries.")
        except ThirdwayError as exc:
            _flash(request, f"No checkpoint: {exc}")
        return RedirectResponse("/log", status_code=303)
