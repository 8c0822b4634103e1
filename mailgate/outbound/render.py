"""Render notification templates with Jinja2 and compose them into safe MIME mails.

Templates live in ``templates/`` (and optionally a sysadmin's ``template_dir``
that overrides any of them by name). Each kind has ``KIND.LANG.txt`` (blocks
``subject`` and ``body``, never autoescaped) and ``KIND.LANG.html`` (block
``body``, always autoescaped). All are loaded and rendered against a sample at
start, with StrictUndefined, so a broken template is a startup error naming
file and line, not a failure at 3 a.m.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2

from mailgate.core.classify import LOOP_HEADER
from mailgate.core.model import Attachment
from mailgate.core.notify import LANGUAGES, Kind
from mailgate.errors import ConfigError
from mailgate.outbound import mime
from mailgate.outbound.mime import one_line

SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What a template may say about the ticket."""

    number: int
    ref: str
    tag: str
    title: str
    queue: str
    type: str
    priority: str
    status: str


@dataclass(frozen=True, slots=True)
class NoticeContext:
    """Everything a template may use; the same names for every kind."""

    ticket: TicketFacts
    language: str
    team_name: str
    customer_name: str
    customer_address: str
    author_name: str
    message_text: str
    signed: bool = False  # message_text ends with the author's own sign-off
    answer_target: str = ""
    old_status: str = ""
    new_status: str = ""
    action: str = ""  # the state in which the customer must act: waiting_customer, ...
    reason: str = ""
    type_label: str = ""
    priority_label: str = ""
    asked_priority: str = ""  # the priority asked for, when the submission rules lowered it
    quote: str = ""  # extra work awaiting the customer's approval
    commands: str = ""  # the command reference (#help)
    missing_fields: tuple[str, ...] = ()  # required reference fields the customer did not give
    link: str = ""  # the web desk's page of the ticket: the customer's own link, or the team's


_CONTEXT_NAMES = tuple(f.name for f in fields(NoticeContext))  # a template's variables


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


SAMPLE = NoticeContext(
    ticket=TicketFacts(
        1042, "#1042", "[#1042-K7QF3M9T]", "Printer brandt", "support", "bug", "high", "new"
    ),
    language="nl",
    team_name="Support",
    customer_name="Alice Jansen",
    customer_address="alice@customer.nl",
    author_name="Bob",
    message_text="Kunt u het opnieuw proberen?",
    answer_target="binnen 2 werkdagen",
    old_status="nieuw",
    new_status="in behandeling",
    action="waiting_customer",
    reason="onbekende opdracht #foo",
    type_label="error of bug",
    priority_label="hoog",
    asked_priority="kritiek",
    quote="4 uur à 95 euro",
    commands="#status <status>",
)


class Templates:
    """The loaded template set: shipped ones, overridden by name from ``override``."""

    def __init__(self, override: Path | None = None, shipped: Path = SHIPPED_TEMPLATES) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override is not None:
            loaders.append(jinja2.FileSystemLoader(str(override)))
        loaders.append(jinja2.FileSystemLoader(str(shipped)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            keep_trailing_newline=True,
            # Loaded once: SIGHUP builds a new Templates (App.reload_templates); no stat()
            # of every template file on every notice.
            auto_reload=False,
        )
        # by name: no loader lookup per notice; with the template's globals in one dict
        self._loaded: dict[str, tuple[jinja2.Template, dict[str, Any]]] = {}

    def _template(self, name: str) -> tuple[jinja2.Template, dict[str, Any]]:
        found = self._loaded.get(name)
        if found is None:
            template = self.env.get_template(name)
            found = self._loaded[name] = (template, dict(template.globals))
        return found

    def _fill(self, name: str, values: dict[str, Any], block: str | None = None) -> str:
        """The template ``name`` (or one ``block`` of it) rendered with ``values``, as
        ``Template.render`` renders it, but on a context whose globals were merged once:
        Jinja merges them from a ``ChainMap`` into every new context (a tenth of a
        notice's rendering)."""
        template, flat = self._template(name)
        if block is None:
            render = template.root_render_func
        elif block in template.blocks:
            render = template.blocks[block]
        else:
            raise jinja2.TemplateSyntaxError(f"block {block!r} missing", 1, name, template.filename)
        try:
            return "".join(render(template.new_context({**flat, **values}, shared=True)))
        except Exception:  # as Template.render: raised again, naming the template's line
            template.environment.handle_exception()

    def check(self) -> None:
        """Load and render every template once; raise ConfigError naming file and line."""
        problems = []
        for kind in Kind:
            for language in LANGUAGES:
                try:
                    self.render(kind, language, SAMPLE)
                except jinja2.TemplateSyntaxError as exc:
                    problems.append(f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}")
                except jinja2.TemplateNotFound as exc:
                    problems.append(f"template missing: {exc.name}")
                except jinja2.UndefinedError as exc:
                    problems.append(f"{kind.value}.{language}: {exc.message}")
        if problems:
            raise ConfigError(problems)

    def subject_prefixes(self) -> tuple[str, ...]:
        """What each notice's subject puts before the ticket's title, in every language
        ("Status gewijzigd:", "Received:"): an answer to a notice must not make it a title."""
        marker = "mailgate-title-marker"
        context = replace(SAMPLE, ticket=replace(SAMPLE.ticket, title=marker))
        found: dict[str, None] = {}
        for kind in Kind:
            for language in LANGUAGES:
                try:
                    subject = self.render(kind, language, context).subject
                except (jinja2.TemplateError, ConfigError):
                    continue
                prefix = subject.partition(marker)[0].strip()
                if marker in subject and prefix and SAMPLE.ticket.ref not in prefix:
                    found[prefix] = None
        return tuple(found)

    def render(self, kind: Kind, language: str, context: NoticeContext) -> Rendered:
        values = {name: getattr(context, name) for name in _CONTEXT_NAMES}
        txt, html = f"{kind.value}.{language}.txt", f"{kind.value}.{language}.html"
        subject = one_line(self._fill(txt, values, "subject"))
        if context.ticket.tag not in subject:
            subject = f"{subject} {context.ticket.tag}"
        return Rendered(
            subject=subject,
            text=self._fill(txt, values).strip() + "\n",
            html=self._fill(html, values),
        )


@dataclass(frozen=True, slots=True)
class MailHeaders:
    """The headers of one outgoing mail besides its content."""

    from_name: str
    from_address: str
    to: tuple[str, ...]
    reply_to: str
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    auto_submitted: str
    language: str
    date: datetime
    loop_id: str = ""
    attachments: tuple[Attachment, ...] = ()  # an agent's files, relayed with the answer


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib registry builds a new header class on every lookup; build each once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


# The modern SMTP policy (CRLF, RFC 2047/2231 as needed, no raw CR/LF in headers).
POLICY = SMTP.clone(header_factory=_CachedHeaderRegistry())


def date_header(moment: datetime) -> str:
    """The Date header's value of ``moment`` (to the second, as RFC 5322 writes it)."""
    return _date_header(moment.replace(microsecond=0))


@functools.lru_cache(maxsize=16)  # a batch's notices share their second
def _date_header(moment: datetime) -> str:
    return format_datetime(moment)


def compose(rendered: Rendered, head: MailHeaders) -> bytes:
    """The notification as a multipart/alternative mail: composed by hand (``mime``), or by
    the stdlib's ``EmailMessage`` when it carries an agent's attachments or a value the
    hand composer does not encode. Either way no header can be injected."""
    if not head.attachments:
        try:
            return _by_hand(rendered, head)
        except mime.NotPlain:
            pass
    return compose_with_stdlib(rendered, head)


def _by_hand(rendered: Rendered, head: MailHeaders) -> bytes:
    headers = [
        mime.mailbox_header("From", head.from_name, head.from_address),
        mime.ascii_header("To", ", ".join(head.to), separator=", "),
        mime.ascii_header("Reply-To", head.reply_to),
        # "=?" would be read back as the start of an RFC 2047 encoded word; never let text be.
        mime.text_header("Subject", one_line(rendered.subject).replace("=?", "= ?")),
        mime.ascii_header("Date", date_header(head.date)),
        mime.ascii_header("Message-ID", f"<{head.message_id}>"),
    ]
    if head.in_reply_to:
        headers.append(mime.ascii_header("In-Reply-To", f"<{head.in_reply_to}>"))
    if head.references:
        refs = " ".join(f"<{r}>" for r in head.references[-20:])
        headers.append(mime.ascii_header("References", refs))
    if head.auto_submitted:
        precedence = "bulk" if head.auto_submitted == "auto-generated" else "auto_reply"
        headers += [
            mime.ascii_header("Auto-Submitted", head.auto_submitted),
            "X-Auto-Response-Suppress: All",
            f"Precedence: {precedence}",
        ]
    headers.append(mime.ascii_header("Content-Language", head.language))
    if head.loop_id:
        headers.append(mime.ascii_header(LOOP_HEADER, head.loop_id))
    return mime.alternative(headers, rendered.text, rendered.html)


def compose_with_stdlib(rendered: Rendered, head: MailHeaders) -> bytes:
    """``compose`` through ``EmailMessage`` and the modern email policy."""
    msg = EmailMessage(policy=POLICY)
    local, _, domain = head.from_address.rpartition("@")
    msg["From"] = Address(one_line(head.from_name), local, domain)
    msg["To"] = ", ".join(head.to)
    msg["Reply-To"] = head.reply_to
    # "=?" would be read back as the start of an RFC 2047 encoded word; never let text be.
    msg["Subject"] = one_line(rendered.subject).replace("=?", "= ?")
    msg["Date"] = date_header(head.date)
    msg["Message-ID"] = f"<{head.message_id}>"
    if head.in_reply_to:
        msg["In-Reply-To"] = f"<{head.in_reply_to}>"
    if head.references:
        msg["References"] = " ".join(f"<{r}>" for r in head.references[-20:])
    if head.auto_submitted:
        msg["Auto-Submitted"] = head.auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "bulk" if head.auto_submitted == "auto-generated" else "auto_reply"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    for item in head.attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(
            item.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=item.filename,
        )
    msg["Content-Language"] = head.language  # after set_content, which clears Content-*
    if head.loop_id:
        msg[LOOP_HEADER] = head.loop_id
    return msg.as_bytes()
