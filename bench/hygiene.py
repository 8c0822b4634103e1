"""How well mailgate reads machine mail and replies, on the shared corpus.

Prints, for the corpus's bounces with known addresses: how many the classifier
calls a bounce, how many the standard report alone (the baseline) and the
combined reader name the expected address in, and how often permanence is
right; for its reply cases: how many visible texts match exactly. Accuracy,
not speed: the figures are the same on any machine.

    .venv/bin/python bench/hygiene.py [--corpus DIR] [--show-misses]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from mailgate.core.bounces import delivery_report
from mailgate.core.classify import Category, classify, confirm_bounce
from mailgate.core.parse import parse_mail
from mailgate.core.text import visible_text


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
    total = exact = 0
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
        ok = got == str(expect["visible_reply_text"]).strip()
        exact += ok
        if show and not ok:
            print(f"  miss: {entry['id']}")
    print(f"replies: {exact}/{total} visible texts exact ({exact / total:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("MAILGATE_CORPUS", str(Path(__file__).parent / "../../shared/corpus"))
    parser.add_argument("--corpus", default=default)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # flufl.bounce logs its detectors' stumbles
    corpus = Path(args.corpus).resolve()
    bounces(corpus, args.show_misses)
    replies(corpus, args.show_misses)


if __name__ == "__main__":
    main()
