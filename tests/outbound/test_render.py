from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from mailgate.core.notify import AUTO_SUBMITTED, LANGUAGES, Kind
from mailgate.errors import ConfigError
from mailgate.outbound.render import SAMPLE, MailHeaders, Templates, TicketFacts, compose

TEMPLATES = Templates()
CASES = [(kind, lang) for kind in Kind for lang in LANGUAGES]


def headers_for(kind: Kind, language: str) -> MailHeaders:
    return MailHeaders(
        from_name="Support Desk",
        from_address="support@example.com",
        to=("alice@customer.nl",),
        reply_to="support+1042-k7qf3m9t@example.com",
        message_id="abc.123@example.com",
        in_reply_to="orig@customer.nl",
        references=("first@customer.nl", "orig@customer.nl"),
        auto_submitted=AUTO_SUBMITTED.get(kind, ""),
        language=language,
        date=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
    )


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(("kind", "lang"), CASES, ids=[f"{k.value}-{lang}" for k, lang in CASES])
def test_every_template_renders_and_parses_back_with_its_headers(kind: Kind, lang: str) -> None:
    rendered = TEMPLATES.render(kind, lang, replace(SAMPLE, language=lang))
    message = parsed(compose(rendered, headers_for(kind, lang)))
    assert message["From"] == "Support Desk <support@example.com>"
    assert message["To"] == "alice@customer.nl"
    assert message["Reply-To"] == "support+1042-k7qf3m9t@example.com"
    assert "[#1042-K7QF3M9T]" in message["Subject"]
    assert message["Message-ID"] == "<abc.123@example.com>"
    assert message["In-Reply-To"] == "<orig@customer.nl>"
    assert message["References"] == "<first@customer.nl> <orig@customer.nl>"
    assert message["Date"] and message["Content-Language"] == lang
    expected_auto = {Kind.ACK: "auto-replied", Kind.AGENT_REPLY: None}.get(kind, "auto-generated")
    assert message["Auto-Submitted"] == expected_auto
    assert (message["X-Auto-Response-Suppress"] == "All") == (expected_auto is not None)
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "#1042" in text.get_content() or kind is Kind.AGENT_REPLY
    assert html.get_content().lstrip().startswith("<!DOCTYPE html>")


def test_languages_differ() -> None:
    nl = TEMPLATES.render(Kind.ACK, "nl", SAMPLE)
    en = TEMPLATES.render(Kind.ACK, "en", replace(SAMPLE, language="en"))
    assert "Bedankt voor uw bericht" in nl.text and "Thank you for your message" in en.text
    assert "binnen 2 werkdagen" in nl.text


def test_html_is_escaped_and_text_is_not() -> None:
    hostile = replace(
        SAMPLE,
        ticket=replace(SAMPLE.ticket, title="<script>alert('t')</script>"),
        message_text="<script>alert('b')</script> & co",
    )
    rendered = TEMPLATES.render(Kind.TEAM_NEW_TICKET, "nl", hostile)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#39;b&#39;)&lt;/script&gt; &amp; co" in rendered.html
    assert "<script>alert('b')</script> & co" in rendered.text
    message = parsed(compose(rendered, headers_for(Kind.TEAM_NEW_TICKET, "nl")))
    assert "<script>alert('t')</script>" in message["Subject"]


def test_header_injection_through_the_subject_is_impossible() -> None:
    evil = replace(
        SAMPLE,
        ticket=TicketFacts(
            7,
            "#7",
            "[#7-AAAAAAAA]",
            "Hallo\r\nBcc: victim@example.org",
            "support",
            "question",
            "low",
            "new",
        ),
    )
    rendered = TEMPLATES.render(Kind.ACK, "en", evil)
    env = replace(headers_for(Kind.ACK, "en"), from_name="Evil\r\nBcc: victim@example.org")
    raw = compose(rendered, env)
    message = parsed(raw)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in raw.split(b"\r\n\r\n", 1)[0]  # the header block
    assert len(message.get_all("Subject") or []) == 1


def test_override_directory_wins_by_name(tmp_path: Path) -> None:
    (tmp_path / "ack.en.txt").write_text(
        '{% extends "layout.en.txt" %}{% block subject %}Got it{% endblock %}'
        "{% block body %}Custom {{ ticket.ref }}{% endblock %}"
    )
    templates = Templates(tmp_path)
    templates.check()
    rendered = templates.render(Kind.ACK, "en", SAMPLE)
    assert rendered.subject == "Got it [#1042-K7QF3M9T]"
    assert rendered.text.startswith("Custom #1042")


def test_broken_templates_are_startup_errors_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ack.nl.txt").write_text("{% block subject %}x{% endblock %}\n{% if %}\n")
    (tmp_path / "reminder.en.html").write_text("<p>{{ no_such_variable }}</p>")
    with pytest.raises(ConfigError) as raised:
        Templates(tmp_path).check()
    problems = "\n".join(raised.value.problems)
    assert "ack.nl.txt:2:" in problems
    assert "reminder.en: 'no_such_variable' is undefined" in problems
