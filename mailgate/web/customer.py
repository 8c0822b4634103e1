"""A customer's status page, reached by their own link (no account): `/c/TICKET/KEY`.

The link is the MAC of the ticket and the customer's address (``core.sessions``): it
works while the address is a customer of the ticket (not an agent) and until the ticket
has been archived for ``[web] link_days``; anything else is a 404 that tells nothing.
The page says whose move it is in the customer's words, shows the public thread (the
customer's and the team's mails; never notes, held mails or the team's notices) and
its attachments, and offers what the customer can do by mail: reply, say it is solved,
approve or reject a quote. Each is composed as the customer's own mail and taken in
like one, so it is judged, threaded and answered exactly as if it had been mailed.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from aiohttp import web

from mailgate.core.model import MessageKind, MessageView, Role, TicketView
from mailgate.core.workflow import Group
from mailgate.service import mail_as
from mailgate.store.db import session
from mailgate.store.repos import Repo
from mailgate.store.repos.desk import status_since
from mailgate.web.pages import download
from mailgate.web.site import Site

log = structlog.get_logger("mailgate.web")
LINK_SOURCE = "link"  # a customer's mail written on their status page


def public(message: MessageView) -> bool:
    """What the customers saw by mail: their own mails and the team's answers as relayed
    (not the agent's mail to the desk, which may carry commands)."""
    if message.kind == MessageKind.CUSTOMER.value:
        return True
    return message.kind == MessageKind.AGENT.value and message.direction == "out"


# What each button of the page writes as the first line of the customer's mail: the
# words a customer may answer with by mail (``core.commands``' intents).
INTENTS = {"solved": "#resolved", "approve": "#approve", "disapprove": "#reject"}


def routes(site: Site) -> list[web.RouteDef]:
    page = CustomerPage(site)
    return [
        web.get("/c/{number:\\d+}/{key}", page.show),
        web.post("/c/{number:\\d+}/{key}", page.act),
        web.get("/c/{number:\\d+}/{key}/attachments/{sha256:[0-9a-f]{64}}", page.attachment),
    ]


class CustomerPage:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.app = site.app

    async def _open(self, request: web.Request) -> tuple[TicketView, str]:
        """The ticket and the customer the link is for; 404 for any link that is not one."""
        number = int(request.match_info["number"])
        async with session(self.app.engine) as s:
            view = await Repo(s).ticket_view(number, with_events=False)
        if view is None:
            raise web.HTTPNotFound()
        customers = [
            p.address
            for p in view.participants
            if p.role is not Role.AGENT and not self.app.policy.is_agent(p.address)
        ]
        owner = self.site.signer.link_owner(number, request.match_info["key"], customers)
        if owner is None or await self._expired(view):
            raise web.HTTPNotFound()
        return view, owner

    async def _expired(self, view: TicketView) -> bool:
        state = self.app.config.workflow.find(view.status)
        if state is None or state.group is not Group.ARCHIVED:
            return False
        since = await self.app.blocking.read(lambda conn: status_since(conn, view.number))
        keep = timedelta(days=self.app.config.web.link_days)
        return since is not None and since + keep < self.site.now()

    def _language(self, view: TicketView) -> str:
        queue = next((q for q in self.app.config.queues if q.name == view.queue), None)
        return view.language or (queue.language if queue else "en")

    async def show(self, request: web.Request) -> web.Response:
        view, owner = await self._open(request)
        state = self.app.config.workflow.find(view.status)
        language = self._language(view)
        return self.site.page(
            "customer.html",
            language,
            t=view,
            owner=owner,
            state=state.label(language) if state else view.status,
            acts=view.action_by,
            messages=[m for m in view.messages if public(m)],
            team=self.app.config.outbound.from_name,
            here=request.path,
            check=self.site.signer.link_key(view.number, f"form {owner}"),
            sent=request.query.get("sent") == "1",
            asks_approval=view.approval == "pending",
        )

    async def act(self, request: web.Request) -> web.Response:
        view, owner = await self._open(request)
        posted = await request.post()
        expected = self.site.signer.link_key(view.number, f"form {owner}")
        if posted.get("check") != expected:
            raise web.HTTPForbidden(text="the form's check is missing or out of date")
        action = str(posted.get("action", "reply"))
        text = str(posted.get("text", "")).replace("\r\n", "\n").strip()
        first = INTENTS.get(action)
        if first is None and not text:
            raise web.HTTPSeeOther(request.path)
        await mail_as(
            self.app,
            view.number,
            owner,
            text,
            source=LINK_SOURCE,
            commands=[first] if first else [],
        )
        self.app.outbox_wake.set()
        log.info("web.customer_mail", ticket=f"#{view.number}", action=action)
        raise web.HTTPSeeOther(f"{request.path}?sent=1")

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        view, _ = await self._open(request)
        sha = request.match_info["sha256"]
        shown = [m for m in view.messages if public(m)]
        found = next((a for m in shown for a in m.attachments if a.sha256 == sha), None)
        if found is None:
            raise web.HTTPNotFound()
        return download(await self.site.attachment(sha), found.content_type, found.filename)
