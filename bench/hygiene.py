"""How well mailgate reads machine mail, senders, attachments and replies.

Prints, for the shared corpus's bounces with known addresses: how many the classifier
calls a bounce, how many the standard report alone (the baseline) and the combined
reader name the expected address in, and how often permanence is right; the abuse
reports and provider notifications of ``tests/fixtures/feedback`` recognised; the
senders and titles, and the attachment names, the corpus's source projects record;
the visible reply texts that match exactly, on the corpus and on mailgate's own
replies of each client family (``tests/replies.py``: Outlook's header block in 14
languages, Gmail's, Apple Mail's, Yandex's and Mail.ru's intro lines, and the HTML
quote elements of Hotmail, Outlook 2003 and new Outlook, Gmail, Yandex and Mail.ru).
Accuracy, not speed: the figures are the same on any machine.

    .venv/bin/python bench/hygiene.py [--corpus DIR] [--show-misses]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailgate.core.bounces import delivery_report
from mailgate.core.classify import Category, classify, confirm_bounce
from mailgate.core.parse import parse_mail
from mailgate.core.subject import clean_subject
from mailgate.core.text import visible_reply, visible_text
from tests.feedback import feedback
from tests.replies import client_replies


def _entries(corpus: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]


def bounces(corpus: Path, show: bool) -> None:
    total = classified = standard = combined = permanence = with_permanence = 0
    for entry in _entries(corpus):
        expect = entry.get("expect") or {}
        assert isinstance(expect, dict)
        permanent = {a.lower() for a in expect.get("bounced_addresses_permanent") or []}
        temporary = {a.lower() for a in expect.get("bounced_addresses_temporary") or []}
        if not (permanent or temporary) or not str(entry["format"]).startswith("rfc822"):
            continue
        total += 1
        raw = (corpus / str(entry["path"])).read_bytes()
        mail = parse_mail(raw)
        report = delivery_report(mail, raw)
        kind = confirm_bounce(classify(mail), mail, report.recipients)
        classified += kind.category is Category.BOUNCE
        rfc3464 = delivery_report(mail, b"")  # no bytes: the detectors see an empty mail
        standard += bool(set(rfc3464.recipients) & (permanent | temporary))
        hit = bool(set(report.recipients) & (permanent | temporary))
        combined += hit
        if hit and bool(permanent) != bool(temporary):
            with_permanence += 1
            permanence += report.permanent is bool(permanent)
        if show and not hit:
            print(f"  miss: {entry['id']} found {report.recipients}")
    print(f"bounces: {total} with expected addresses")
    print(f"  classified as bounce:        {classified}/{total} ({classified / total:.0%})")
    print(f"  address, standard report:    {standard}/{total} ({standard / total:.0%}) baseline")
    print(f"  address, combined reader:    {combined}/{total} ({combined / total:.0%})")
    print(f"  ratio combined/baseline:     {combined / max(standard, 1):.1f}x")
    print(f"  permanence right:            {permanence}/{with_permanence}")


def replies(corpus: Path, show: bool) -> None:
    total = exact = loose = 0
    for entry in _entries(corpus):
        expect = entry.get("expect") or {}
        assert isinstance(expect, dict)
        if "visible_reply_text" not in expect:
            continue
        total += 1
        raw = (corpus / str(entry["path"])).read_bytes()
        text = (
            raw.decode("utf-8", "replace")
            if entry["format"] == "text_body"
            else parse_mail(raw).text
        )
        got = visible_text(text.replace("\r\n", "\n")).strip()
        wanted = str(expect["visible_reply_text"]).strip()
        ok = got == wanted
        exact += ok
        loose += " ".join(got.split()) == " ".join(wanted.split())
        if show and not ok:
            print(f"  miss: {entry['id']}")
    print(
        f"replies: {exact}/{total} visible texts exact ({exact / total:.0%}), "
        f"{loose}/{total} equal but for white space ({loose / total:.0%})"
    )


def feedback_reports() -> None:
    """The abuse reports and provider notifications of tests/fixtures/feedback."""
    names = ["arf-abuse.eml", "ses-complaint-sns.json", "ses-bounce.json"]
    found = 0
    for name in names:
        raw = feedback(name, "alice@customer.nl", "ack-1@example.com")
        mail = parse_mail(raw)
        report = delivery_report(mail, raw)
        found += classify(mail).category is Category.BOUNCE and report.recipients == (
            "alice@customer.nl",
        )
    print(f"feedback reports and provider notices: {found}/{len(names)} recognised, address found")


def senders_and_titles(corpus: Path, show: bool) -> None:
    total = right = 0
    for entry in _entries(corpus):
        expect = entry.get("expect") or {}
        assert isinstance(expect, dict)
        if not str(entry["format"]).startswith("rfc822"):
            continue
        checks = []
        mail = None
        for key in ("from", "from_address", "subject", "ticket_subject"):
            if key not in expect:
                continue
            mail = mail or parse_mail((corpus / str(entry["path"])).read_bytes())
            value = expect[key]
            author = mail.from_addr.email.lower() if mail.from_addr else None
            if key == "from" and isinstance(value, list) and value:
                checks.append(author == str(value[0][1]).lower())
            elif key == "from_address":
                checks.append(author == str(value).lower())
            elif key == "subject":
                checks.append(mail.subject == value)
            else:
                checks.append(clean_subject(mail.subject) == value)
        total += len(checks)
        right += sum(checks)
        if show and not all(checks):
            print(f"  miss: {entry['id']}")
    print(f"senders and titles: {right}/{total} as recorded ({right / max(total, 1):.0%})")


def attachment_names(corpus: Path, show: bool) -> None:
    total = found = 0
    for entry in _entries(corpus):
        expect = entry.get("expect") or {}
        assert isinstance(expect, dict)
        wanted = list(expect.get("attachment_filenames") or [])
        if "rfc822_attachment_filename" in expect:
            wanted.append(expect["rfc822_attachment_filename"])
        if not wanted or not str(entry["format"]).startswith("rfc822"):
            continue
        mail = parse_mail((corpus / str(entry["path"])).read_bytes())
        names = {n for a in mail.attachments for n in (a.filename, a.original_filename)}
        hits = sum(str(name) in names for name in wanted)
        total += len(wanted)
        found += hits
        if show and hits < len(wanted):
            print(f"  miss: {entry['id']} wanted {wanted} found {sorted(names)}")
    print(f"attachment names: {found}/{total} found ({found / max(total, 1):.0%})")


def own_replies(show: bool) -> None:
    cases = client_replies()
    exact = 0
    for client, raw, expected in cases:
        ok = visible_reply(parse_mail(raw)) == expected
        exact += ok
        if show and not ok:
            print(f"  miss: {client}")
    print(f"replies, each client family: {exact}/{len(cases)} visible texts exact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("MAILGATE_CORPUS", str(Path(__file__).parent / "../../shared/corpus"))
    parser.add_argument("--corpus", default=default)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # flufl.bounce logs its detectors' stumbles
    corpus = Path(args.corpus).resolve()
    bounces(corpus, args.show_misses)
    feedback_reports()
    senders_and_titles(corpus, args.show_misses)
    attachment_names(corpus, args.show_misses)
    replies(corpus, args.show_misses)
    own_replies(args.show_misses)


if __name__ == "__main__":
    main()
