"""The team's pages: the ticket list, a ticket, and what agents do on it.

The list has the views the mailbox team uses (who must act: support, customer, on
hold, closed; mine; unassigned; all), filters, a search and the sorts of ``mailgate
tickets``. A ticket shows its thread (visible text, the quoted part behind a toggle,
attachments to download, the raw mail), its SLA targets and history, and the forms for
what an agent does by mail: an answer or a note, status, priority, type and assignee,
a held mail released or rejected, a merge. Each goes through ``mailgate.service``, the
path the command line takes, so mail, command line and web never disagree.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from mailgate.core.desk import Refusal
from mailgate.core.model import TicketView
from mailgate.core.workflow import Group
from mailgate.errors import NotFound
from mailgate.intake.spool import WEB_SOURCE
from mailgate.service import change_fields, mail_as, raw_mail
from mailgate.store.db import session
from mailgate.store.repos import Repo
from mailgate.store.repos.desk import SORTS, TicketQuery, dues, latest_change, list_tickets
from mailgate.store.repos.history import HistoryRepo
from mailgate.tickets.agents import field_commands
from mailgate.web.site import Site

VIEWS = ("support", "customer", "hold", "closed", "mine", "unassigned", "all")
_FILTERS = ("queue", "type", "priority", "status", "requester", "organisation", "q")


def routes(site: Site) -> list[web.RouteDef]:
    pages = Pages(site)
    return [
        web.get("/", pages.home),
        web.get("/tickets", pages.tickets),
        web.get("/tickets/changed", pages.changed),
        web.get("/tickets/{number:\\d+}", pages.ticket),
        web.post("/tickets/{number:\\d+}/answer", pages.answer),
        web.post("/tickets/{number:\\d+}/set", pages.set_fields),
        web.post("/tickets/{number:\\d+}/held", pages.held),
        web.post("/tickets/{number:\\d+}/merge", pages.merge),
        web.post("/tickets/{number:\\d+}/quote", pages.quote),
        web.post("/tickets/{number:\\d+}/fields", pages.fields),
        web.get("/tickets/{number:\\d+}/trace/{index:\\d+}", pages.trace),
        web.get("/tickets/{number:\\d+}/attachments/{sha256:[0-9a-f]{64}}", pages.attachment),
        web.get("/tickets/{number:\\d+}/raw/{index:\\d+}", pages.raw),
    ]


class Pages:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.app = site.app

    async def home(self, request: web.Request) -> web.Response:
        self.site.agent(request)
        raise web.HTTPSeeOther("/tickets")

    def _query(self, request: web.Request, agent: str) -> tuple[str, TicketQuery]:
        asked = request.query
        view = asked.get("view", "support")
        view = view if view in VIEWS else "support"
        states = self.app.config.workflow.states
        groups = {
            "support": (Group.SUPPORT,),
            "customer": (Group.CUSTOMER,),
            "hold": (Group.HOLD,),
            "closed": (Group.CLOSED, Group.ARCHIVED),
        }
        statuses: tuple[str, ...] = ()
        if view in groups:
            statuses = tuple(s.name for s in states if s.group in groups[view])
        if asked.get("status"):
            state = self.app.config.workflow.find(asked["status"])
            statuses = (state.name,) if state else ("-",)
        assignee = {"mine": agent, "unassigned": "-"}.get(view, "")
        page = asked.get("page", "1")
        return view, TicketQuery(
            statuses=statuses,
            queue=asked.get("queue", ""),
            type=asked.get("type", ""),
            priority=asked.get("priority", ""),
            requester=asked.get("requester", ""),
            organisation=asked.get("organisation", ""),
            assignee=assignee,
            search=asked.get("q", "")[:200],
            sort=asked.get("sort", "priority"),
            page=int(page) if page.isdigit() else 1,
        )

    async def tickets(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        view, query = self._query(request, agent.agent)
        listed, more = await self.app.blocking.read(lambda conn: list_tickets(conn, query))
        kept = {k: request.query[k] for k in ("view", "sort", *_FILTERS) if request.query.get(k)}

        def link(**changes: Any) -> str:
            return "/tickets?" + urlencode({**kept, **{k: str(v) for k, v in changes.items()}})

        return self.site.page(
            "list.html",
            agent.language,
            session=agent,
            view=view,
            views=VIEWS,
            query=query,
            asked=request.query,
            listed=listed,
            more=more,
            link=link,
            sorts=SORTS,
            queues=[q.name for q in self.app.config.queues],
            back=request.path_qs,
        )

    async def changed(self, request: web.Request) -> web.Response:
        """A mark the list polls: when it differs from the page's, the page reloads."""
        self.site.agent(request)
        mark = await self.app.blocking.read(latest_change)
        return web.json_response({"mark": mark})

    async def _view(self, number: int) -> TicketView:
        async with session(self.app.engine) as s:
            view = await Repo(s).ticket_view(number)
        if view is None:
            raise web.HTTPNotFound(text=f"no ticket #{number}")
        return view

    async def ticket(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        number = int(request.match_info["number"])
        view = await self._view(number)

        def facts(conn: Any) -> tuple[Any, int]:
            return dues(conn, number), len(HistoryRepo(conn).held(number))

        (answer_due, solve_due), held = await self.app.blocking.read(facts)
        return self.site.page(
            "ticket.html",
            agent.language,
            session=agent,
            t=view,
            held=held,
            answer_due=answer_due,
            solve_due=solve_due,
            said=request.query.get("said", ""),
            refused=request.query.get("refused", ""),
            agents=sorted(self.app.config.agents.addresses),
            field_names=sorted(self.app.desk.field_names),
            back=request.path,
        )

    def _back(self, number: int, *, said: str = "", refused: str = "") -> web.HTTPSeeOther:
        query = urlencode({k: v for k, v in (("said", said), ("refused", refused)) if v})
        return web.HTTPSeeOther(f"/tickets/{number}" + (f"?{query}" if query else ""))

    async def _mail(self, request: web.Request, commands: list[str], text: str) -> web.HTTPSeeOther:
        """The agent's mail with ``commands`` over ``text``, taken in; back to the ticket,
        saying what happened (the refusal, when the commands were refused)."""
        agent = self.site.agent(request)
        number = int(request.match_info["number"])
        try:
            taken = await mail_as(
                self.app, number, agent.agent, text, source=WEB_SOURCE, commands=commands
            )
        except NotFound as exc:
            raise web.HTTPNotFound(text=str(exc)) from exc
        self.app.outbox_wake.set()
        reason = taken.outcome.reason if taken.outcome else ""
        _, _, refusal = reason.partition("commands refused: ")
        if refusal:
            return self._back(number, refused=refusal)
        return self._back(number, said=taken.action)

    async def answer(self, request: web.Request) -> web.Response:
        form = await self.site.form(request, self.site.agent(request))
        text = str(form.get("text", "")).replace("\r\n", "\n").strip()
        number = int(request.match_info["number"])
        if not text:
            raise self._back(number, refused="empty")
        # Commands at the top (``#status ...``) are read as in a mail: the same desk.
        note = form.get("kind") == "note"
        raise await self._mail(request, ["#internal"] if note else [], text)

    async def held(self, request: web.Request) -> web.Response:
        form = await self.site.form(request, self.site.agent(request))
        decision = "#release" if form.get("decision") == "release" else "#reject"
        raise await self._mail(request, [decision], "")

    async def merge(self, request: web.Request) -> web.Response:
        form = await self.site.form(request, self.site.agent(request))
        into = str(form.get("into", "")).strip().lstrip("#")
        if not into.isdigit():
            raise self._back(int(request.match_info["number"]), refused="not a ticket number")
        raise await self._mail(request, [f"#merge {into}"], "")

    async def quote(self, request: web.Request) -> web.Response:
        """Extra work for the customer to approve: ``#quote`` with its text, as by mail."""
        form = await self.site.form(request, self.site.agent(request))
        text = str(form.get("text", "")).replace("\r\n", "\n").strip()
        if not text:
            raise self._back(int(request.match_info["number"]), refused="empty")
        raise await self._mail(request, ["#quote"], text)

    async def fields(self, request: web.Request) -> web.Response:
        """The ticket's reference fields (``[[queues.fields]]``), each as ``#field``."""
        form = await self.site.form(request, self.site.agent(request))
        view = await self._view(int(request.match_info["number"]))
        known = dict(view.fields)
        commands = [
            f"#field {name} {value}"
            for name in self.app.desk.field_names
            if (value := " ".join(str(form.get(f"field_{name}", "")).split()))
            and value != known.get(name)
        ]
        if not commands:
            raise self._back(view.number)
        raise await self._mail(request, commands, "")

    async def trace(self, request: web.Request) -> web.Response:
        """How one received mail of the thread went through the intake (``mailgate trace``)."""
        agent = self.site.agent(request)
        number, index = int(request.match_info["number"]), int(request.match_info["index"])
        view = await self._view(number)
        if index >= len(view.messages) or not view.messages[index].message_id:
            raise web.HTTPNotFound()
        async with session(self.app.engine) as s:
            repo = Repo(s)
            ids = await repo.spool_by_message_id(str(view.messages[index].message_id))
            entries = [e for i in ids if (e := await repo.spool_get(i)) is not None]
        return self.site.page(
            "trace.html",
            agent.language,
            session=agent,
            t=view,
            message=view.messages[index],
            entries=entries,
            back=request.path,
        )

    async def set_fields(self, request: web.Request) -> web.Response:
        agent = self.site.agent(request)
        form = await self.site.form(request, agent)
        number = int(request.match_info["number"])
        view = await self._view(number)
        now = {"status": view.status, "priority": view.priority, "type": view.type}
        now["assignee"] = view.assignee or ""
        changes = [
            f"{name}={form[name]}"
            for name in ("status", "priority", "type", "assignee")
            if isinstance(form.get(name), str) and form[name] and form[name] != now[name]
        ]
        commands = field_commands(changes)
        if not changes or commands is None:
            raise self._back(number)
        plan = await change_fields(self.app, number, commands, actor=agent.agent, source="web")
        if isinstance(plan, Refusal):
            raise self._back(number, refused=plan.text(agent.language, self.app.desk.workflow))
        raise self._back(number, said="changed")

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        """An attachment of the ticket, always downloaded, never shown inside the desk."""
        self.site.agent(request)
        view = await self._view(int(request.match_info["number"]))
        sha = request.match_info["sha256"]
        found = next((a for m in view.messages for a in m.attachments if a.sha256 == sha), None)
        if found is None:
            raise web.HTTPNotFound()
        data = await self.site.attachment(sha)
        return download(data, found.content_type, found.filename)

    async def raw(self, request: web.Request) -> web.StreamResponse:
        """The raw mail of one message of the thread, as received (for agents)."""
        self.site.agent(request)
        number = int(request.match_info["number"])
        view = await self._view(number)
        index = int(request.match_info["index"])
        if index >= len(view.messages) or not view.messages[index].message_id:
            raise web.HTTPNotFound()
        async with session(self.app.engine) as s:
            repo = Repo(s)
            ids = await repo.spool_by_message_id(str(view.messages[index].message_id))
            entry = await repo.spool_get(ids[0]) if ids else None
        raw = await raw_mail(self.app, entry) if entry is not None else None
        if raw is None:
            raise web.HTTPNotFound(text="the raw mail is no longer kept")
        return download(raw, "message/rfc822", f"ticket-{number}-{index}.eml")


def download(data: bytes, content_type: str, filename: str) -> web.Response:
    """Bytes to save, never to render: attachment disposition, no sniffing, sandboxed."""
    safe = re.sub(r"[^\w.\- ]", "_", filename)[:120] or "attachment"
    kind = content_type if re.fullmatch(r"[\w.+-]+/[\w.+-]+", content_type) else ""
    return web.Response(
        body=data,
        headers={
            "Content-Type": kind or "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )
