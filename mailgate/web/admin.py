"""The sysadmin's pages of the web desk: quarantine, held mails, outbox and health.

What ``mailgate quarantine``, ``outbox`` and ``/healthz`` show, for a signed-in agent:
quarantined mails with their error and traceback id (retry runs a mail through the
worker again, as ``mailgate quarantine retry`` does); the held mails of all tickets
(released or rejected by the ticket's own form); the outbox's mails due, retrying and
dead (retry puts a dead mail back in line) and the newest sent; and the health checks.
"""

from __future__ import annotations

from aiohttp import web

from mailgate.ops.http import health_of
from mailgate.store.db import session
from mailgate.store.repos import Repo
from mailgate.store.repos.desk import held_mails
from mailgate.store.repos.outbox import OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT
from mailgate.web.site import Site

SHOWN = 100  # sent mails shown, newest first


def routes(site: Site) -> list[web.RouteDef]:
    admin = Admin(site)
    return [
        web.get("/admin/quarantine", admin.quarantine),
        web.post("/admin/quarantine/{spool_id:\\d+}/retry", admin.retry_mail),
        web.get("/admin/held", admin.held),
        web.get("/admin/outbox", admin.outbox),
        web.post("/admin/outbox/{outbox_id:\\d+}/retry", admin.retry_outbox),
        web.get("/admin/health", admin.health),
    ]


class Admin:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.app = site.app

    async def quarantine(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        async with session(self.app.engine) as s:
            entries = await Repo(s).quarantined()
        return self.site.page(
            "quarantine.html",
            agent.language,
            session=agent,
            entries=entries,
            said=request.query.get("said", ""),
            back=request.path,
        )

    async def retry_mail(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        await self.site.form(request, agent)
        spool_id = int(request.match_info["spool_id"])
        async with session(self.app.engine, write=True) as s:
            found = await Repo(s).requeue([spool_id], self.site.now())
        if not found:
            raise web.HTTPNotFound(text=f"no quarantined mail {spool_id}")
        outcome = await self.app.processor.process(spool_id)
        self.app.outbox_wake.set()
        said = f"{spool_id}: {outcome.action.value if outcome else 'stored'}"
        raise web.HTTPSeeOther(f"/admin/quarantine?said={said}")

    async def held(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        mails = await self.app.blocking.read(held_mails)
        return self.site.page(
            "held.html", agent.language, session=agent, mails=mails, back=request.path
        )

    async def outbox(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        async with session(self.app.engine) as s:
            repo = Repo(s)
            due = await repo.outbox_list(OUTBOX_PENDING)
            dead = await repo.outbox_list(OUTBOX_DEAD)
            sent = await repo.outbox_list(OUTBOX_SENT, newest=SHOWN)
        return self.site.page(
            "outbox.html",
            agent.language,
            session=agent,
            due=[i for i in due if not i.attempts],
            retrying=[i for i in due if i.attempts],
            dead=dead,
            sent=sent,
            said=request.query.get("said", ""),
            back=request.path,
        )

    async def retry_outbox(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        await self.site.form(request, agent)
        outbox_id = int(request.match_info["outbox_id"])
        async with session(self.app.engine, write=True) as s:
            found = await Repo(s).outbox_retry([outbox_id], self.site.now())
        if not found:
            raise web.HTTPNotFound(text=f"no dead outbox mail {outbox_id}")
        self.app.outbox_wake.set()
        raise web.HTTPSeeOther(f"/admin/outbox?said={outbox_id}")

    async def health(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        healthy, checks = await health_of(self.app).check()
        return self.site.page(
            "health.html",
            agent.language,
            session=agent,
            healthy=healthy,
            checks=checks,
            back=request.path,
            status=200 if healthy else 503,
        )
