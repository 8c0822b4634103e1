"""Keep personal numbers out of what the desk shows and sends: Dutch BSN numbers are masked.

A BSN (burgerservicenummer) is nine digits that pass the "11-test":
9·d1 + 8·d2 + … + 2·d8 − 1·d9 is a multiple of 11 (and not zero). Written
together or grouped (``1234.56.782``, ``123 456 782``). The raw mail is kept
as received (retention is a separate policy); the text shown to agents and
every notification carry the mask instead.
"""

from __future__ import annotations

import re
from dataclasses import replace

from mailgate.core.model import ParsedMail
from mailgate.core.text import sanitize_html

MASK = "[BSN verwijderd]"
_GROUPINGS = (
    r"\d{9}|\d{4}[ .]\d{2}[ .]\d{3}|\d{3}[ .]\d{3}[ .]\d{3}|\d{2}[ .]\d{3}[ .]\d{2}[ .]\d{2}"
)
_CANDIDATE = re.compile(rf"(?<![\d.\-])({_GROUPINGS})(?![\d\-]|\.\d)")
# Every candidate above is nine digits in at most twelve characters of digits, spaces and
# dots. This looser pattern starts with a digit, so the regex engine skips ahead to digits
# instead of trying the lookbehind at every character: a text without one is done ten
# times sooner, and most texts have none.
_MAYBE = re.compile(r"\d[\d .]{7,10}\d")


def passes_eleven_test(digits: str) -> bool:
    """Whether nine digits form a valid BSN."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    total = sum(int(d) * w for d, w in zip(digits, weights, strict=True))
    return total != 0 and total % 11 == 0


def mask_bsn(text: str) -> tuple[str, int]:
    """``text`` with every valid BSN replaced by ``MASK``, and how many were replaced."""
    if _MAYBE.search(text) is None:
        return text, 0
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if passes_eleven_test(re.sub(r"[ .]", "", match.group(1))):
            count += 1
            return MASK
        return match.group(0)

    return _CANDIDATE.sub(replace, text), count


def for_display(mail: ParsedMail) -> tuple[ParsedMail, int]:
    """The mail as it is stored for display: BSN numbers masked in its subject, text and
    HTML, the HTML sanitised; and how many BSN numbers there were."""
    subject, in_subject = mask_bsn(mail.subject)
    text, in_text = mask_bsn(mail.text)
    html, in_html = mask_bsn(mail.html) if mail.html is not None else (None, 0)
    count = max(in_text, in_html) + in_subject
    cleaned = sanitize_html(html) if html is not None else None
    return replace(mail, subject=subject, text=text, html=cleaned), count
