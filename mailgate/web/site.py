"""The web desk's shared parts: its pages' renderer, the signed-in agent, the form checks.

Every page is rendered from ``templates/web/`` by a Jinja environment that escapes
everything (mail text is shown as text, never as HTML, so a mail's ``<script>`` or
``onerror=`` is inert); every response carries a Content-Security-Policy that allows
scripts and styles from the desk itself only. A handler that needs an agent calls
``agent``; one that takes a form calls ``form``, which refuses (403) a POST without the
session's CSRF token.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from mailgate.app import App
from mailgate.core.model import PRIORITIES, TICKET_TYPES
from mailgate.core.sessions import Signer, WebSession
from mailgate.outbound.render import SHIPPED_TEMPLATES
from mailgate.store.db import session
from mailgate.store.repos import Repo
from mailgate.web.auth import Passwords, SignInLimiter
from mailgate.web.words import LANGUAGES, words

COOKIE = "mailgate_session"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # a customer's link never leaves in a Referer
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    """A page for agents was asked for without a session."""


@dataclass
class Site:
    """What every page of the web desk works with."""

    app: App
    signer: Signer
    passwords: Passwords
    limiter: SignInLimiter
    env: jinja2.Environment

    @classmethod
    def for_app(cls, app: App) -> Site:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(SHIPPED_TEMPLATES / "web"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        return cls(
            app,
            Signer(app.codec.secret),
            Passwords(app.blocking),
            SignInLimiter(app.config.web.sign_in_attempts),
            env,
        )

    def now(self) -> datetime:
        return self.app.clock.now()

    # --- sessions ----------------------------------------------------------------------

    def session(self, request: web.Request) -> WebSession | None:
        """The signed-in agent of ``request`` (still an agent by the config), or None."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        found = self.signer.read_session(value, self.now())
        if found is None or not self.app.policy.is_agent(found.agent):
            return None
        return found

    def agent(self, request: web.Request) -> WebSession:
        found = self.session(request)
        if found is None:
            raise SignInNeeded
        return found

    def sign_in(self, response: web.StreamResponse, agent: str, language: str) -> None:
        hours = self.app.config.web.session_hours
        value = self.signer.session(
            agent, self.now(), timedelta(hours=hours), language, secrets.token_urlsafe(12)
        )
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(hours * 3600),
            httponly=True,
            samesite="Strict",
            secure=self.app.config.web.secure,
            path="/",
        )

    async def form(self, request: web.Request, session: WebSession) -> MultiDictProxy[Any]:
        """The posted form, after its CSRF token is checked (403 when missing or wrong)."""
        posted = await request.post()
        token = posted.get("csrf")
        if not isinstance(token, str) or not self.signer.csrf_ok(session, token):
            raise web.HTTPForbidden(text="the form's check is missing or out of date")
        return posted

    async def attachment(self, sha256: str) -> bytes:
        """An attachment's bytes by their SHA-256, wherever ``[general] blobs`` keeps them:
        a file, or (a small one, or all with ``blobs = "database"``) the database's."""
        store = self.app.processor.attachments
        if store is not None and store.path(sha256).exists():
            return await asyncio.to_thread(store.get, sha256)
        async with session(self.app.engine) as s:
            data = await Repo(s).blob_get(sha256)
        if data is None:
            raise web.HTTPNotFound()
        return data

    # --- pages -------------------------------------------------------------------------

    def page(
        self,
        template: str,
        language: str,
        *,
        session: WebSession | None = None,
        status: int = 200,
        **values: Any,
    ) -> web.Response:
        language = language if language in LANGUAGES else "en"
        html = self.env.get_template(template).render(
            w=words(language),
            language=language,
            session=session,
            csrf=self.signer.csrf(session) if session else "",
            tag=self.app.codec.subject_tag,
            workflow=self.app.config.workflow,
            zone=self.app.desk.calendar.zone,
            types=TICKET_TYPES,
            priorities=PRIORITIES,
            **values,
        )
        return web.Response(text=html, content_type="text/html", status=status)
