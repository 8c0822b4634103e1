"""Signing in and out of the web desk, and the agent's choice of language.

An address of ``[agents]`` signs in with its password (``mailgate agent add``) or
with a one-time link mailed to it (15 minutes; one click on the page it opens, so
that a mail scanner following links does not use it up).
The sign-in form carries a check of its own (a random cookie and its MAC), so that
another site cannot sign a browser in to an account of its choosing. Failed attempts
are limited per address and per client (``web.auth.SignInLimiter``); each sign-in,
failed attempt and refusal is logged with the client's address, never the password.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import Connection

from mailgate.service import mail_agent
from mailgate.store.repos.agents import AgentRepo
from mailgate.web.site import COOKIE, Site
from mailgate.web.words import words

log = structlog.get_logger("mailgate.web")
PRE = "mailgate_signin"  # the sign-in form's own check, before there is a session
LINK_LIFETIME = timedelta(minutes=15)  # a mailed sign-in link works this long, once


def routes(site: Site) -> list[web.RouteDef]:
    doors = Doors(site)
    return [
        web.get("/sign-in", doors.form),
        web.post("/sign-in", doors.sign_in),
        web.post("/sign-in/mail", doors.mail_link),
        web.get("/sign-in/link/{token}", doors.confirm_link),
        web.post("/sign-in/link/{token}", doors.use_link),
        web.post("/sign-out", doors.sign_out),
        web.post("/language", doors.language),
    ]


class Doors:
    def __init__(self, site: Site) -> None:
        self.site = site

    def _check(self, nonce: str) -> str:
        return self.site.signer.form_check(nonce)

    def _form(
        self,
        language: str,
        *,
        error: str = "",
        status: int = 200,
        minutes: int = 0,
        said: str = "",
        template: str = "sign_in.html",
        agent: str = "",
    ) -> web.Response:
        """A page with a form of the sign-in kind: its check, and the check's cookie."""
        nonce = secrets.token_urlsafe(16)
        response = self.site.page(
            template,
            language,
            status=status,
            error=error,
            minutes=minutes,
            said=said,
            check=self._check(nonce),
            agent=agent,
        )
        response.set_cookie(
            PRE,
            nonce,
            max_age=3600,
            httponly=True,
            samesite="Strict",
            secure=self.site.app.config.web.secure,
        )
        return response

    async def form(self, request: web.Request) -> web.Response:
        if self.site.session(request) is not None:
            raise web.HTTPSeeOther("/tickets")
        return self._form(request.query.get("lang", "en"))

    async def _posted(self, request: web.Request) -> MultiDictProxy[Any]:
        """A sign-in kind of form, after its check (403 without): before any session, only
        the browser that was shown the form can send it."""
        posted = await request.post()
        nonce = request.cookies.get(PRE, "")
        check = str(posted.get("check", ""))
        if not nonce or not hmac.compare_digest(check.encode(), self._check(nonce).encode()):
            raise web.HTTPForbidden(text="the form's check is missing or out of date")
        return posted

    async def sign_in(self, request: web.Request) -> web.Response:
        posted = await self._posted(request)
        language = str(posted.get("lang", "en"))
        address = str(posted.get("address", "")).strip().lower()[:320]
        password = str(posted.get("password", ""))
        client = request.remote or "?"
        keys = [f"address {address}", f"client {client}"]
        now = self.site.now()
        wait = self.site.limiter.wait(keys, now)
        if wait is not None:
            log.warning("web.sign_in_limited", address=address, client=client)
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            page = self._form(language, error="too_many", status=429, minutes=minutes)
            page.headers["Retry-After"] = str(int(wait.total_seconds()) + 1)
            return page
        # The password is checked for any address (a dummy hash when it has none), so that
        # the answer's timing does not tell which addresses are agents.
        valid = await self.site.passwords.check(address, password)
        if not (valid and self.site.app.policy.is_agent(address)):
            self.site.limiter.failed(keys, now)
            log.warning("web.sign_in_failed", address=address, client=client)
            return self._form(language, error="bad_sign_in", status=401)
        self.site.limiter.succeeded(keys[0])
        log.info("web.signed_in", agent=address, client=client)
        response = web.HTTPSeeOther("/tickets")
        self.site.sign_in(response, address, language)
        response.del_cookie(PRE)
        raise response

    async def mail_link(self, request: web.Request) -> web.Response:
        """Mail a one-time sign-in link to an agent's address. The answer is the same for
        any address (it does not tell who is an agent); requests count against the limit."""
        posted = await self._posted(request)
        language = str(posted.get("lang", "en"))
        address = str(posted.get("address", "")).strip().lower()[:320]
        client = request.remote or "?"
        keys = [f"link {address}", f"link client {client}"]
        now = self.site.now()
        if self.site.limiter.wait(keys, now) is not None:
            return self._form(language, error="too_many", status=429, minutes=15)
        self.site.limiter.failed(keys, now)
        if self.site.app.policy.is_agent(address):
            token = self.site.signer.sign_in_link(
                address, now, LINK_LIFETIME, secrets.token_urlsafe(12)
            )
            w = words(language)
            link = f"{self.site.app.config.web.base_url}/sign-in/link/{token}"
            minutes = int(LINK_LIFETIME.total_seconds() // 60)
            text = w["link_text"].format(minutes=minutes, link=link)
            await mail_agent(self.site.app, address, w["link_subject"], text, "sign_in_link")
            log.info("web.sign_in_link_mailed", agent=address, client=client)
        return self._form(language, said="link_sent")

    async def confirm_link(self, request: web.Request) -> web.Response:
        """A link from the mail asks for one click: a mail scanner that opens links does
        not use it up."""
        found = self.site.signer.read_sign_in_link(request.match_info["token"], self.site.now())
        language = request.query.get("lang", "en")
        if found is None:
            return self._form(language, error="link_bad", status=404)
        return self._form(language, template="sign_in_link.html", agent=found[0])

    async def use_link(self, request: web.Request) -> web.Response:
        await self._posted(request)
        now = self.site.now()
        found = self.site.signer.read_sign_in_link(request.match_info["token"], now)
        if found is None or not self.site.app.policy.is_agent(found[0]):
            return self._form("en", error="link_bad", status=404)
        agent, nonce = found

        def use(conn: Connection) -> bool:
            return AgentRepo(conn).use_link(nonce, now)

        if not await self.site.app.blocking.write(use):
            log.warning("web.sign_in_link_reused", agent=agent, client=request.remote)
            return self._form("en", error="link_bad", status=410)
        log.info("web.signed_in", agent=agent, client=request.remote, by="link")
        response = web.HTTPSeeOther("/tickets")
        self.site.sign_in(response, agent, "en")
        response.del_cookie(PRE)
        raise response

    async def sign_out(self, request: web.Request) -> web.Response:
        agent = self.site.session(request)
        if agent is not None:
            await self.site.form(request, agent)
            log.info("web.signed_out", agent=agent.agent)
        response = web.HTTPSeeOther("/sign-in")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def language(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        form = await self.site.form(request, agent)
        back = str(form.get("back", ""))
        response = web.HTTPSeeOther(back if re.fullmatch(r"/(?!/)[^\s]*", back) else "/tickets")
        self.site.sign_in(response, agent.agent, "nl" if agent.language == "en" else "en")
        raise response
