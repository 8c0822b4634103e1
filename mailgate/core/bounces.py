"""Read a delivery-status notification (RFC 3464): who failed, with what status, for good or not."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailgate.core.model import ParsedMail


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The failed recipient of a bounce, its status code, and whether it is permanent."""

    recipient: str | None
    status: str | None
    diagnostic: str | None
    permanent: bool


_FIELD = re.compile(
    r"^(Final-Recipient|Original-Recipient|Status|Action|Diagnostic-Code)\s*:\s*"
    r"(.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_STATUS_IN_TEXT = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def delivery_report(mail: ParsedMail) -> DeliveryReport:
    """The report of ``mail``: from its message/delivery-status part, else from its text."""
    fields: dict[str, str] = {}
    for name, value in _FIELD.findall(mail.delivery_status):
        fields.setdefault(name.lower(), value.strip())
    if not fields:
        for name, value in _FIELD.findall(mail.text):
            fields.setdefault(name.lower(), value.strip())
    recipient = fields.get("final-recipient") or fields.get("original-recipient")
    if recipient and ";" in recipient:
        recipient = recipient.split(";", 1)[1].strip()
    status = fields.get("status")
    if status is None:
        found = _STATUS_IN_TEXT.search(fields.get("diagnostic-code", "") or mail.text)
        status = ".".join(found.groups()) if found else None
    action = fields.get("action", "").lower()
    permanent = (status or "").startswith("5") or action == "failed"
    if (status or "").startswith("4") or action == "delayed":
        permanent = False
    return DeliveryReport(
        recipient.strip("<>") if recipient else None,
        status,
        fields.get("diagnostic-code"),
        permanent,
    )
