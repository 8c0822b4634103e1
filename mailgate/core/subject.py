"""Clean a mail subject into a ticket title by removing reply, forward and tag prefixes.

The prefixes are a table: every mail client's word for "reply" and "forward"
that mailgate's users meet (English, Dutch, German, Scandinavian, French,
Italian, Polish, Chinese...). They are removed in any case, any number and any
nesting, with or without a counter (``Re[3]:``, ``Re(2):``, ``Re^2:``), and
interleaved with tags that mail gateways put in front (``[EXTERNAL]``).
Nothing is removed from the middle of a subject: "Re: Fwd: Re vs Fwd" keeps its
own words.
"""

from __future__ import annotations

import re

NO_SUBJECT = "(no subject)"
MAX_TITLE = 200  # characters; longer subjects are cut at a word where one is near

# Words a mail client puts before the colon of a reply or forward subject.
REPLY_FORWARD_PREFIXES: tuple[str, ...] = (
    "re",  # English and most languages
    "fw",  # Outlook
    "fwd",  # Gmail, Thunderbird
    "aw",  # German: Antwort
    "wg",  # German: Weitergeleitet
    "sv",  # Swedish/Danish/Norwegian: Svar
    "vs",  # Finnish: Vastaus
    "vb",  # Danish: Videresendt
    "antw",  # Dutch: Antwoord
    "antwoord",  # Dutch
    "doorst",  # Dutch: Doorsturen (Outlook)
    "ref",  # French/Spanish
    "réf",  # French
    "rif",  # Italian: Riferimento
    "r",  # Italian short form
    "i",  # Italian: Inoltrato
    "odp",  # Polish: Odpowiedź
    "pd",  # Polish: Prześlij dalej
    "tr",  # French: Transféré
    "enc",  # Portuguese: Encaminhado
    "rv",  # Spanish: Reenviado
    "res",  # Portuguese: Resposta
    "ynt",  # Turkish: Yanıt
    "ilt",  # Turkish: İlet
    "回复",  # Chinese (simplified): reply
    "回覆",  # Chinese (traditional): reply
    "答复",  # Chinese: answer
    "转发",  # Chinese (simplified): forward
    "轉寄",  # Chinese (traditional): forward
)

# Tags that mail gateways and filters put in front of a subject.
GATEWAY_TAGS: tuple[str, ...] = (
    "external",
    "ext",
    "extern",
    "externe",
    "externo",
    "caution",
    "warning",
    "spam",
    "suspected spam",
    "possible spam",
    "bulk",
    "phish alert",
    "secure",
    "encrypt",
)

_PREFIX_ALTERNATION = "|".join(
    re.escape(p) for p in sorted(REPLY_FORWARD_PREFIXES, key=len, reverse=True)
)
_COUNTER = r"(?:\s*\[\s*\d+\s*\]|\s*\(\s*\d+\s*\)|\^\d+)?"
_PREFIX_RE = re.compile(
    rf"^\s*(?:{_PREFIX_ALTERNATION}){_COUNTER}\s*\.?\s*[:：]\s*",
    re.IGNORECASE,
)
_TAG_ALTERNATION = "|".join(re.escape(t) for t in sorted(GATEWAY_TAGS, key=len, reverse=True))
_TAG_RE = re.compile(
    rf"^\s*(?:\[\s*(?:{_TAG_ALTERNATION})\s*\]|\*\*\*\s*(?:{_TAG_ALTERNATION})\s*\*\*\*)\s*:?\s*",
    re.IGNORECASE,
)
_SPACE_RE = re.compile(r"\s+")


def strip_prefixes(subject: str) -> str:
    """Remove leading reply/forward prefixes and gateway tags, as often as they occur."""
    text = subject
    while True:
        stripped = _PREFIX_RE.sub("", text, count=1)
        stripped = _TAG_RE.sub("", stripped, count=1)
        if stripped == text:
            return text
        text = stripped


def clean_subject(
    subject: str | None, *, remove: tuple[str, ...] = (), own: tuple[str, ...] = ()
) -> str:
    """The ticket title for ``subject``: prefixes, tags and the ``remove`` spans dropped.

    ``remove`` holds literal substrings (our own ticket tags) to cut out wherever
    they stand; the prefixes are stripped again afterwards, since a tag may have
    stood between two of them. ``own``: the words our notices put before a title
    ("Status gewijzigd:"), dropped from the start of an answer to one of them (a
    subject that carried our tag or a reply prefix), so that it is not a new title.
    """
    text = _SPACE_RE.sub(" ", subject or "")
    answered = any(span in text for span in remove) or bool(_PREFIX_RE.match(text))
    for span in remove:
        text = text.replace(span, " ")
    text = strip_prefixes(_SPACE_RE.sub(" ", text)).strip(" -:")
    if answered:
        folded = text.casefold()
        for prefix in sorted(own, key=len, reverse=True):
            if prefix and folded.startswith(prefix.casefold()):
                text = strip_prefixes(text[len(prefix) :].strip(" -:"))
                break
    text = _SPACE_RE.sub(" ", text).strip()
    return _shorten(text) or NO_SUBJECT


def _shorten(text: str) -> str:
    if len(text) <= MAX_TITLE:
        return text
    cut = text[:MAX_TITLE]
    space = cut.rfind(" ")
    return (cut[:space] if space > MAX_TITLE - 30 else cut).rstrip()
