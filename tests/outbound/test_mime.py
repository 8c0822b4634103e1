"""The hand-built notification MIME reads back exactly as the stdlib's composer's does:
the same decoded headers and bodies, on notifications of every shape."""

from __future__ import annotations

import email
import itertools
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default

import pytest

from mailgate.core.model import Attachment
from mailgate.outbound import mime
from mailgate.outbound.render import MailHeaders, Rendered, compose, compose_with_stdlib

SUBJECTS = [
    "Ontvangen: printer brandt [#12-ab3]",
    "Uw aanvraag — ‘ontvangen’ ✓ [#7-x]",
    "Re: " + "heel lang onderwerp " * 12 + "[#1-a]",
    "Ünïcödé " * 20,
    "=?utf-8?q?looks_encoded?= but is not",
    "emoji 🙂🙂🙂 and 中文标题 and Ελληνικά",
    "tabs\tand\r\nline breaks\nBcc: injected@evil.example",
    "",
]
NAMES = ["Support", 'Support, Team "A"', "Ondersteuning Ünïcödé", "Zoë O'Brien (helpdesk)", ""]
TEXTS = [
    "Beste klant,\n\nWe hebben uw melding ontvangen.\n",
    "Regel met een heel lange zin " * 10 + "\nnog een\n",
    "Café — crème brûlée, ijs €5\n  ingesprongen\ntrailing space   \n.\nFrom the start\n",
    "🙂 " * 80,
    "no newline at the end",
]
HTML = ['<p>Beste klant,</p>\n<p>&euro; 5 — "quote"</p>', "<p>" + "x" * 300 + "</p>", "<p>é</p>"]


def headings() -> list[MailHeaders]:
    found = []
    for n, (name, refs, to, auto) in enumerate(
        itertools.product(
            NAMES,
            [(), ("a@b.example",), tuple(f"ref{i}.{'x' * 30}@host.example" for i in range(25))],
            [
                ("alice@customer.nl",),
                tuple(f"person{i}@some-long-domain.example" for i in range(9)),
            ],
            ["", "auto-replied", "auto-generated"],
        )
    ):
        found.append(
            MailHeaders(
                from_name=name,
                from_address="support@example.com",
                to=to,
                reply_to="support+abc123def@example.com",
                message_id=f"{n}.177@example.com",
                in_reply_to=refs[-1] if refs else None,
                references=refs,
                auto_submitted=auto,
                language="nl",
                date=datetime(2026, 3, 2, 10, n % 60, tzinfo=UTC),
                loop_id="inst-1234" if n % 2 else "",
            )
        )
    return found


def read(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body((subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


CASES = [
    (Rendered(subject, text, html), head)
    for (subject, text, html), head in zip(
        itertools.cycle(itertools.product(SUBJECTS, TEXTS, HTML)), headings(), strict=False
    )
]


@pytest.mark.parametrize(("rendered", "head"), CASES)
def test_a_hand_built_notice_reads_back_as_the_stdlibs(
    rendered: Rendered, head: MailHeaders
) -> None:
    ours, theirs = read(compose(rendered, head)), read(compose_with_stdlib(rendered, head))
    names = {k.lower() for k in theirs} - {"content-transfer-encoding"}
    assert {k.lower() for k in ours} - {"content-transfer-encoding"} == names
    for name in names - {"content-type"}:
        assert str(ours[name]) == str(theirs[name]), name
    assert ours.get_content_type() == theirs.get_content_type() == "multipart/alternative"
    assert body(ours, "plain") == body(theirs, "plain")
    assert body(ours, "html") == body(theirs, "html")


@pytest.mark.parametrize(("rendered", "head"), CASES[:40])
def test_lines_stay_short_and_nothing_is_injected(rendered: Rendered, head: MailHeaders) -> None:
    raw = compose(rendered, head)
    head, _, _body = raw.partition(b"\r\n\r\n")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998 and b"\n" not in line and b"\r" not in line
    for line in head.split(b"\r\n"):  # a longer header line is one word that cannot fold
        assert len(line) <= mime.LIMIT or b" " not in line.strip(), line
    assert raw.isascii()
    assert "bcc" not in {k.lower() for k in read(raw)}


def test_a_mail_with_attachments_goes_through_the_stdlib() -> None:
    head = headings()[0]
    files = (Attachment("f.pdf", "f.pdf", "application/pdf", b"%PDF", "0" * 64),)
    raw = compose(Rendered("Antwoord", "tekst\n", "<p>tekst</p>"), replace(head, attachments=files))
    parsed = read(raw)
    assert parsed.get_content_type() == "multipart/mixed"
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["f.pdf"]


def test_a_non_ascii_address_falls_back_to_the_stdlib() -> None:
    with pytest.raises(mime.NotPlain):
        mime.ascii_header("To", "jürgen@müller.example")
    odd = replace(headings()[0], to=("jürgen@müller.example",))
    rendered = Rendered("x", "y\n", "<p>y</p>")
    assert (
        compose(rendered, odd) == compose_with_stdlib(rendered, odd)
        or read(compose(rendered, odd))["To"]
    )
