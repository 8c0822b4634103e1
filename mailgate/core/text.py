"""Derive readable text from a mail: HTML to plain text, and the visible part of a reply.

The visible part is the text above the quoted history a mail client appends to
a reply, and above the signature. This cut is deliberately conservative: it
stops only at a line a client writes to introduce the quote (``On ... wrote:``,
``Op ... schreef``, an Outlook separator or header block), at a signature
delimiter or a mobile client's "Sent from my iPhone" line, or at a block of
``>``-quoted lines that runs to the end. The full text is always kept beside
it, so a wrong cut loses nothing. See docs/decisions/0003-quoted-text.md.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

from mailgate.core.model import ParsedMail

_BLOCK_TAGS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt"),
        *("footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li"),
        *("main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul"),
    }
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template"})


# Where mail clients put the quoted original in an HTML reply: elements dropped whole
# (Gmail, Yahoo, Thunderbird, Proton, Apple Mail's cite blockquote), and markers after which
# everything is history (Outlook's reply header and its "append on send" point).
QUOTE_CLASSES = frozenset(
    {
        "gmail_quote", "gmail_quote_container", "yahoo_quoted", "moz-cite-prefix",
        "protonmail_quote", "yandex_quote", "outlookmessageheader", "zmail_extra",
    }
)  # fmt: skip
HISTORY_MARKERS = frozenset(
    {"divrplyfwdmsg", "appendonsend", "stopspelling", "mail-editor-reference-message-container"}
)
# Outlook 2003-2010 and Word draw a rule above the quoted header block: a div with only a
# top border in one of these colours; everything from it on is history.
_OUTLOOK_RULE = re.compile(r"border-top:\s*solid\s+#(b5c4df|e1e1e1)", re.IGNORECASE)
_VOID_TAGS = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "col", "area"})


class _TextExtractor(HTMLParser):
    def __init__(self, *, drop_quotes: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self.drop_quotes = drop_quotes
        self._dropping: list[str] = []  # tag names opened inside a dropped quote
        self._done = False
        self.quoted = False  # a quote or the history was found (and left out)

    def _starts_quote(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        values = {name: (value or "") for name, value in attrs}
        classes = {c.lower() for c in values.get("class", "").split()}
        # Every blockquote: Apple's and Thunderbird's type=cite, and the bare ones of
        # Yandex, Mail.ru and Outlook.com; a reply's own text is not written in one.
        return bool(classes & QUOTE_CLASSES) or tag == "blockquote"

    def _starts_history(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        values = {name: (value or "") for name, value in attrs}
        if values.get("id", "").lower() in HISTORY_MARKERS:
            return True
        return tag == "div" and bool(_OUTLOOK_RULE.search(values.get("style", "")))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.drop_quotes:
            if self._done:
                return
            if self._starts_history(tag, attrs):
                self._done = self.quoted = True
                return
            if self._dropping:
                if tag not in _VOID_TAGS:
                    self._dropping.append(tag)
                return
            if tag not in _VOID_TAGS and self._starts_quote(tag, attrs):
                self._dropping.append(tag)
                self.quoted = True
                return
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "td":
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if self._dropping:
            if tag in self._dropping:  # close up to the matching open tag, forgiving bad nesting
                while self._dropping and self._dropping.pop() != tag:
                    pass
            return
        if self._done:
            return
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip and not self._dropping and not self._done:
            self.parts.append(data)


def html_to_text(html: str, *, drop_quotes: bool = False) -> str:
    """Plain text of an HTML body: tags dropped, blocks on their own lines, scripts removed.

    ``drop_quotes``: leave out the quoted original that mail clients mark in HTML.
    """
    return _html_text(html, drop_quotes=drop_quotes)[0]


def _html_text(html: str, *, drop_quotes: bool) -> tuple[str, bool]:
    """``html_to_text``, and whether a quote or the history was left out."""
    parser = _TextExtractor(drop_quotes=drop_quotes)
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # malformed markup: keep what was read so far
        pass
    text = "".join(parts for parts in parser.parts)
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip(), parser.quoted


# What stored HTML may keep: nh3's (Ammonia's) safe tags and attributes, and links and
# images by these schemes only; cid: is how an HTML body shows its inline images.
HTML_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel", "cid"})


def sanitize_html(html: str) -> str:
    """``html`` without scripts, event handlers, styles, forms or unsafe links (nh3)."""
    return nh3.clean(html, url_schemes=set(HTML_URL_SCHEMES))


# The verb of a "... wrote:" line, in the languages of the corpus and our customers.
_WROTE = (
    r"(wrote|schreef|het volgende geschreven|geschreven|schrieb|a\s+écrit|escreveu|escribió|"
    r"ha escrito|skrev|napisał(\(a\))?|pisze|написал(\(а\)|а)?|пише|scrisse|ha scritto|"
    r"kirjoitti|írta|yazdı|写道|寫道|작성)"
)
# A "... wrote:" line names its author or date: an address or a digit must be in it.
_WROTE_LINE = re.compile(
    rf"^(?=.*(@|\d)).{{0,400}}(\b|(?=写道|寫道|작성)){_WROTE}"
    r"(\s+am\s.{0,60}|\s+[^:]{0,80}[<@\"][^:]{0,80}|\s+het volgende geschreven)?"
    r"(\s*[:：]\s*|\s+-{2,}\s*)$",
    re.IGNORECASE,
)
# The intro of clients that write no verb (Gmail in Russian and Japanese, Yandex, Mail.ru):
# a date, then the author's address in brackets, then the colon.
_DATED_AUTHOR_LINE = re.compile(r"^(?=.*\d).{0,200}<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$")
# Lines that a mail client writes directly above the quoted original.
QUOTE_INTROS: tuple[re.Pattern[str], ...] = (
    _WROTE_LINE,
    _DATED_AUTHOR_LINE,
    re.compile(r"^.{0,200}\byou wrote:\s*$", re.IGNORECASE),  # "At 6/16/2016 08:32 PM, you wrote:"
    re.compile(r"^\s*\d{4}-\d{2}-\d{2} \d{1,2}:\d{2} GMT[+-]\d{2}:\d{2} .{1,200}$"),  # Gmail
    re.compile(r"^\s*\d{4}/\d{1,2}/\d{1,2} .{1,200}@.{1,200}$"),  # older Gmail: date, name, address
)
FORWARD_SEPARATOR = re.compile(
    r"^\s*[*_]?-{2,}\s*(Forwarded message|Doorgestuurd bericht|Weitergeleitete Nachricht|"
    r"Message transféré)\s*-{2,}[*_]?\s*$",
    re.IGNORECASE,
)
# The author line of a quoted header block: en, nl, de, fr/es/pt, it, sv, da/no, pl, ru, fi,
# ja, zh (simplified and traditional), ko.
_HEADER_WORDS = r"(From|Van|Von|De|Da|Från|Fra|Od|От|Lähettäjä|差出人|发件人|寄件者|보낸 사람)"
QUOTE_HEADERS: tuple[re.Pattern[str], ...] = (
    *QUOTE_INTROS,
    re.compile(
        r"^\s*[*_]?-{2,}\s*(Original Message|Oorspronkelijk bericht|Origineel bericht|"
        r"Ursprüngliche Nachricht|Message d'origine|Mensaje original|Messaggio originale|"
        r"Originalmeddelande)\s*-{2,}[*_]?\s*$",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's rule above its header block
    re.compile(r"^\s*-{25,}\s*$"),  # and the dashed one of Outlook on the web
    re.compile(rf"^\s*\*?{_HEADER_WORDS}\*?\s*[:：]\s*.+$", re.IGNORECASE),  # header block
)


# Lines that start a signature: everything from them on is not the reply's text.
SIGNATURE_STARTS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^-- $"),  # RFC 3676 signature delimiter
    # "Sent from my iPhone", "Verzonden vanaf mijn iPad", "Envoyé depuis mon iPhone", "Sendt
    # fra min iPad", "Sent with Airmail": a short line, or it is a sentence of the reply.
    re.compile(
        r"^\s*(Sent|Verzonden|Verstuurd|Envoy[ée]|Sendt|Skickat|Enviado|Inviato)\s+"
        r"(from|vanaf|van|met|de|depuis|fra|från|desde|da|via|with)\s+(\S+\s*){1,5}$",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*Von meinem \S+( \S+)? gesendet\.?\s*$", re.IGNORECASE),
    re.compile(r"^\s*(Sent from|Get) Outlook( for (iOS|Android)| Mobile)\b.*$", re.IGNORECASE),
)
_QUOTED = re.compile(r"^\s*([A-Za-z]{0,3}>|\|)")


def _is_signature(lines: list[str], index: int) -> bool:
    line = lines[index]
    if line.rstrip() == "--":  # a delimiter whose trailing space a client ate: only near the end
        return len(lines) - index <= 8
    return any(pattern.match(line) for pattern in SIGNATURE_STARTS)


# Every quote header has one of these (a colon, dashes, a rule, an address): a line without
# any is none, and most lines of a mail are let go after this one cheap search.
_HEADER_MARK = re.compile(r"[:：@_-]")
_OPENS_WITH_DATE_OR_ADDRESS = re.compile(r"^\s*(\d|.*@)")


def _is_quote_header(lines: list[str], index: int) -> bool:
    line = lines[index]
    if not _HEADER_MARK.search(line) or not any(p.match(line) for p in QUOTE_HEADERS):
        return False
    if re.match(rf"^\s*\*?{_HEADER_WORDS}\*?\s*[:：]", line, re.IGNORECASE):
        # An Outlook header block: From: followed within three lines by Sent/Date/To.
        following = " ".join(lines[index + 1 : index + 4])
        return bool(
            re.search(
                r"(\b(Sent|Verzonden|Gesendet|Envoy[ée]|Date|Datum|Data|Inviato|To|Aan|An|A|"
                r"Skickat|Till|Sendt|Til|Enviado|Fecha|Para|Wysłano|Do|Отправлено|Дата|Кому|"
                r"Lähetetty|Vastaanottaja|Päivämäärä)|送信日時|宛先|发送时间|收件人|寄件日期|"
                r"收件者|보낸 날짜|받는 사람)\*?\s*[:：]",
                following,
                re.IGNORECASE,
            )
        )
    return True


def forwarded_from(text: str) -> str | None:
    """The value of the author line (``From:``, ``Van:``, ``De:`` ...) of the first header
    block a client wrote above a forwarded or quoted mail in ``text``; None without one."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        found = _AUTHOR_LINE.match(line)
        if found and _is_quote_header(lines, index):
            return found.group(2).strip().strip("*").strip()
    return None


_AUTHOR_LINE = re.compile(rf"^\s*[>]*\s*\*?{_HEADER_WORDS}\*?\s*[:：]\s*(.+)$", re.IGNORECASE)
_INTRO_START = re.compile(r"^\s*(On|Op|Am|Le|Em|El|Den|Dnia|Il)\b", re.IGNORECASE)


def _quote_header_span(lines: list[str], index: int) -> int:
    """How many lines a quote header starting here takes (0: none). An intro may be folded
    over up to six lines, blank ones included, as some clients wrap a long author."""
    if _is_quote_header(lines, index):
        return 1
    line = lines[index]
    if not line.strip():
        return 0
    # Joined, the lines open as the first does: a line that opens no intro starts none.
    starts = _INTRO_START.match(line)
    if not starts and not _OPENS_WITH_DATE_OR_ADDRESS.match(line):
        return 0
    for span in range(2, 7):
        if index + span > len(lines):
            break
        joined = " ".join(part.strip() for part in lines[index : index + span])
        if any(p.match(joined) for p in QUOTE_INTROS):
            return span
        if span >= 3 and not starts:
            break
    return 0


def _after_quote_block(lines: list[str], start: int) -> int:
    """The index after the ``>``-quoted lines (and blanks) from ``start``."""
    index = start
    while index < len(lines) and (_QUOTED.match(lines[index]) or not lines[index].strip()):
        index += 1
    return index


def _forwarded_body(lines: list[str], start: int) -> int:
    """The index of a forwarded mail's body: after its separator and header block."""
    index = start + 1
    while index < len(lines) and lines[index].strip():
        index += 1
    return index


def _cut_signature(lines: list[str]) -> list[str]:
    for index in range(1, len(lines)):
        if _is_signature(lines, index):
            return lines[:index]
    return lines


def _without_trailing_quote(lines: list[str]) -> list[str]:
    """A trailing run of quoted lines (and blanks) is history too."""
    end = len(lines)
    while end > 0 and (_QUOTED.match(lines[end - 1]) or not lines[end - 1].strip()):
        end -= 1
    if 0 < end < len(lines) and any(_QUOTED.match(line) for line in lines[end:]):
        return lines[:end]
    return lines


def visible_text(text: str) -> str:
    """The new text of a reply, without the quoted history and the signature below it.

    A quote at the top (the author answered below it) is skipped; a forwarded mail at
    the top is shown from its body; an answer interleaved with the quote is kept whole.
    """
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    start = first
    if first < len(lines) and FORWARD_SEPARATOR.match(lines[first]):
        start = _forwarded_body(lines, first)
    elif first < len(lines) and (span := _quote_header_span(lines, first)):
        start = _after_quote_block(lines, first + span)  # the answer is below the quote
    kept: list[str] = []
    index = start
    while index < len(lines):
        if index > start and FORWARD_SEPARATOR.match(lines[index]):
            kept.extend(lines[index:])  # what a customer forwards is part of their message
            break
        span = _quote_header_span(lines, index) if index > start else 0
        if span:
            after = _after_quote_block(lines, index + span)
            rest = [line for line in lines[after:] if line.strip()]
            interleaved = (
                any(_QUOTED.match(line) for line in lines[index + span : after])
                and rest
                and not _quote_header_span(lines, after)
                and not _is_signature(lines, after)
                and any(p.match(lines[index]) for p in QUOTE_INTROS)
            )
            if not interleaved:
                break
            kept.extend(lines[index + span : after])  # keep the quote the answer refers to
            index = after
            continue
        kept.append(lines[index])
        index += 1
    kept = _without_trailing_quote(_cut_signature(kept))
    result = "\n".join(kept).strip()
    return result or text.strip()


def visible_reply(mail: ParsedMail) -> str:
    """The visible text of a mail, the HTML's structure first: without the elements its
    client marked as the quote (``QUOTE_CLASSES``, blockquotes, the history markers).
    From the HTML when the mail had no plain-text part; else from its text, cut where the
    HTML's reply ends when the text's own quote header was not recognised."""
    plain = visible_text(mail.text)
    if mail.html is None or (not mail.text_from_html and not _may_mark_quote(mail.html)):
        return plain  # no HTML quote element to find: the HTML need not be parsed
    text, quoted = _html_text(mail.html, drop_quotes=True)
    from_html = visible_text(text) if text else ""
    if mail.text_from_html:
        return from_html or plain
    if quoted and from_html and len(from_html) < len(plain):
        return _cut_where(plain, from_html)
    return plain


# Every quote element ``_TextExtractor`` drops names one of these, in any case.
_QUOTE_WORDS = re.compile(
    "|".join(
        [
            "blockquote",
            *map(re.escape, QUOTE_CLASSES),
            *map(re.escape, HISTORY_MARKERS),
            _OUTLOOK_RULE.pattern,
        ]
    ),
    re.IGNORECASE,
)


def _may_mark_quote(html: str) -> bool:
    return _QUOTE_WORDS.search(html) is not None


def _cut_where(plain: str, reply: str) -> str:
    """``plain`` up to the line where the words of ``reply`` end; ``plain`` whole when
    its words do not start with them (the two parts say different things)."""
    words = reply.split()
    seen: list[str] = []
    lines = plain.splitlines()
    for index, line in enumerate(lines):
        seen.extend(line.split())
        if seen[: len(words)] != words[: len(seen)]:
            return plain
        if len(seen) >= len(words):
            return "\n".join(lines[: index + 1]).strip() if len(seen) == len(words) else plain
    return plain
