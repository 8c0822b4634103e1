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

_BLOCK_TAGS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt"),
        *("footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li"),
        *("main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul"),
    }
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "td":
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML body: tags dropped, blocks on their own lines, scripts removed."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # malformed markup: keep what was read so far
        pass
    text = "".join(parts for parts in parser.parts)
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Lines that a mail client writes directly above the quoted original.
# "... wrote:" lines, which clients may fold over two or three lines.
QUOTE_INTROS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE),  # English (Gmail, Apple)
    re.compile(r"^.{0,200}\byou wrote:\s*$", re.IGNORECASE),  # "At 6/16/2016 08:32 PM, you wrote:"
    re.compile(r"^\s*\d{4}-\d{2}-\d{2} \d{1,2}:\d{2} GMT[+-]\d{2}:\d{2} .{1,200}$"),  # Gmail
    re.compile(r"^\s*Op\b.{0,300}\b(schreef|geschreven)\b.{0,80}:\s*$", re.IGNORECASE),  # Dutch
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,80}:\s*$", re.IGNORECASE),  # German
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.IGNORECASE),  # French
)
QUOTE_HEADERS: tuple[re.Pattern[str], ...] = (
    *QUOTE_INTROS,
    re.compile(
        r"^\s*-{2,}\s*(Original Message|Oorspronkelijk bericht|Origineel bericht|"
        r"Ursprüngliche Nachricht|Message d'origine|Forwarded message|"
        r"Doorgestuurd bericht)\s*-{2,}\s*$",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's rule above its header block
    re.compile(r"^\s*\*?(From|Van|Von|De|Da)\*?\s*:\s*.+$", re.IGNORECASE),  # header block
)


# Lines that start a signature: everything from them on is not the reply's text.
SIGNATURE_STARTS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^-- $"),  # RFC 3676 signature delimiter
    re.compile(
        r"^\s*(Sent|Verzonden|Verstuurd|Envoy[ée]) (from|vanaf|van|de) (my|mijn|mon) "
        r"(iPhone|iPad|Android|Samsung|smartphone|mobiel|mobile)\b.*$",
        re.IGNORECASE,
    ),
    re.compile(
        r"^\s*Von meinem (iPhone|iPad|Android|Smartphone|Handy) gesendet\s*$", re.IGNORECASE
    ),
    re.compile(r"^\s*(Sent from|Get) Outlook( for (iOS|Android)| Mobile)\b.*$", re.IGNORECASE),
)


def _is_signature(lines: list[str], index: int) -> bool:
    line = lines[index]
    if line.rstrip() == "--":  # a delimiter whose trailing space a client ate: only near the end
        return len(lines) - index <= 8
    return any(pattern.match(line) for pattern in SIGNATURE_STARTS)


def _is_quote_header(lines: list[str], index: int) -> bool:
    line = lines[index]
    if not any(pattern.match(line) for pattern in QUOTE_HEADERS):
        return False
    if re.match(r"^\s*\*?(From|Van|Von|De|Da)\*?\s*:", line, re.IGNORECASE):
        # An Outlook header block: From: followed within three lines by Sent/Date/To.
        following = " ".join(lines[index + 1 : index + 4])
        return bool(
            re.search(
                r"\b(Sent|Verzonden|Gesendet|Envoy[ée]|Date|Datum|Data|Inviato|To|Aan|An|A)"
                r"\*?\s*:",
                following,
                re.IGNORECASE,
            )
        )
    return True


_FOLDED_END = re.compile(r"\b(wrote|schreef|schrieb|a écrit)\s*:\s*$", re.IGNORECASE)


def _quote_header_at(lines: list[str], index: int) -> bool:
    """A quote header on this line, or folded over it and the next one or two lines."""
    if _is_quote_header(lines, index):
        return True
    for span in (2, 3):
        if index + span > len(lines):
            break
        joined = " ".join(part.strip() for part in lines[index : index + span])
        if _FOLDED_END.search(joined) and any(p.match(joined) for p in QUOTE_INTROS):
            return True
    return False


def visible_text(text: str) -> str:
    """The new text of a reply, without the quoted history below it."""
    lines = text.splitlines()
    cut = len(lines)
    for index in range(len(lines)):
        if index > 0 and (_quote_header_at(lines, index) or _is_signature(lines, index)):
            cut = index
            break
    kept = lines[:cut]
    # A trailing run of >-quoted lines (and blanks) is history too.
    end = len(kept)
    while end > 0 and (kept[end - 1].startswith(">") or not kept[end - 1].strip()):
        end -= 1
    if end > 0 and end < len(kept) and any(line.startswith(">") for line in kept[end:]):
        kept = kept[:end]
    result = "\n".join(kept).strip()
    return result or text.strip()
