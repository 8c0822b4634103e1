"""Abuse feedback reports and providers' notifications, filled in for one of our mails."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "feedback"


def feedback(name: str, rcpt: str, mid: str, *, drop: str = "") -> bytes:
    """The fixture ``name`` about our mail ``mid`` to ``rcpt``, as a raw mail; the
    JSON ones as the body of a provider's mail. ``drop``: a line to leave out."""
    text = (FIXTURES / name).read_text().replace("{rcpt}", rcpt).replace("{mid}", mid)
    if drop:
        text = "".join(line for line in text.splitlines(True) if not line.startswith(drop))
    if name.endswith(".json"):
        text = (
            "From: AWS Notifications <no-reply@sns.amazonaws.com>\n"
            "To: support@example.com\nSubject: AWS Notification Message\n"
            "Message-ID: <sns-" + str(abs(hash((name, mid)))) + "@sns.amazonaws.com>\n"
            "Content-Type: text/plain; charset=UTF-8\n\n" + text
        )
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
