"""Signing in and out of the web desk, and the agent's choice of language.

Only an address of ``[agents]`` with a password (``mailgate agent add``) signs in.
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

import structlog
from aiohttp import web

from mailgate.web.site import COOKIE, Site

log = structlog.get_logger("mailgate.web")
PRE = "mailgate_signin"  # the sign-in form's own check, before there is a session


def routes(site: Site) -> list[web.RouteDef]:
    doors = Doors(site)
    return [
        web.get("/sign-in", doors.form),
        web.post("/sign-in", doors.sign_in),
        web.post("/sign-out", doors.sign_out),
        web.post("/language", doors.language),
    ]


class Doors:
    def __init__(self, site: Site) -> None:
        self.site = site

    def _check(self, nonce: str) -> str:
        return self.site.signer.form_check(nonce)

    def _form(
        self, language: str, *, error: str = "", status: int = 200, minutes: int = 0
    ) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        response = self.site.page(
            "sign_in.html",
            language,
            status=status,
            error=error,
            minutes=minutes,
            check=self._check(nonce),
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

    async def sign_in(self, request: web.Request) -> web.Response:
        posted = await request.post()
        language = str(posted.get("lang", "en"))
        nonce = request.cookies.get(PRE, "")
        check = str(posted.get("check", ""))
        if not nonce or not hmac.compare_digest(check.encode(), self._check(nonce).encode()):
            raise web.HTTPForbidden(text="the form's check is missing or out of date")
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
        agent = self.site.app.policy.is_agent(address)
        if not (agent and await self.site.passwords.check(address, password)):
            self.site.limiter.failed(keys, now)
            log.warning("web.sign_in_failed", address=address, client=client)
            return self._form(language, error="bad_sign_in", status=401)
        self.site.limiter.succeeded(keys[0])
        log.info("web.signed_in", agent=address, client=client)
        response = web.HTTPSeeOther("/tickets")
        self.site.sign_in(response, address, language)
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
