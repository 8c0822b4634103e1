from __future__ import annotations

import json

import pytest

from mailgate.core.bounces import delivery_report
from mailgate.core.parse import parse_mail
from tests.conftest import CORPUS


def dsn(status: str, action: str = "failed") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.customer.nl\r\nTo: bounces+1-abc@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.nl\r\n\r\n"
        f"Final-Recipient: rfc822; alice@customer.nl\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} User unknown\r\n"
        "--b--\r\n"
    ).encode()


def test_permanent_failure_names_recipient_and_status() -> None:
    report = delivery_report(parse_mail(dsn("5.1.1")))
    assert (report.recipient, report.status, report.permanent) == (
        "alice@customer.nl",
        "5.1.1",
        True,
    )
    assert report.diagnostic == "smtp; 550 5.1.1 User unknown"


def test_delay_is_temporary() -> None:
    assert not delivery_report(parse_mail(dsn("4.4.7", action="delayed"))).permanent


def _expected(entry: dict[str, object]) -> set[str]:
    expect = entry.get("expect") or {}
    assert isinstance(expect, dict)
    return {
        str(a).lower()
        for key, value in expect.items()
        if key.startswith("bounced_addresses") and isinstance(value, list)
        for a in value
    }


def _corpus_bounces() -> list[dict[str, object]]:
    entries = [json.loads(line) for line in (CORPUS / "manifest.jsonl").read_text().splitlines()]
    return [e for e in entries if str(e["format"]).startswith("rfc822") and _expected(e)]


BOUNCES = _corpus_bounces()


@pytest.mark.parametrize("entry", BOUNCES, ids=[str(e["id"]) for e in BOUNCES])
def test_corpus_bounces_parse_without_error(entry: dict[str, object]) -> None:
    report = delivery_report(parse_mail((CORPUS / str(entry["path"])).read_bytes()))
    assert report.status is None or report.status[0] in "245"


def test_standard_dsns_of_the_corpus_name_the_expected_address() -> None:
    hits = 0
    for entry in BOUNCES:
        report = delivery_report(parse_mail((CORPUS / str(entry["path"])).read_bytes()))
        hits += (report.recipient or "").lower() in _expected(entry)
    assert len(BOUNCES) >= 100
    # Measured: 12 of 101. Only RFC 3464 reports are read so far; a floor, not the goal.
    assert hits >= 12
