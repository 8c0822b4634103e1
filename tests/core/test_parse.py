from __future__ import annotations

import base64
import re
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from mailgate.core.filenames import safe_filename
from mailgate.core.parse import _with_stdlib, parse_mail
from mailgate.core.subject import clean_subject
from tests.conftest import CORPUS, corpus_mails


def _raw(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def test_rfc2047_subject_and_names_are_decoded() -> None:
    raw = _raw(
        "From: =?ISO-8859-1?Q?Andr=E9_Pirard?= <andre@example.be>\n"
        "To: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <support@example.com>\n"
        "Subject: =?UTF-8?Q?Re:_Caf=C3=A9_=E2=82=AC5?= =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\n"
        "Message-ID: <a@b>\n",
        b"x\r\n",
    )
    mail = parse_mail(raw)
    assert mail.from_addr is not None
    assert mail.from_addr.name == "André Pirard"
    assert mail.to[0].name == "Jörg Müller"
    assert mail.subject == "Re: Café €5日本語"


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("iso-8859-1", "Één café, naïef"),
        ("iso-8859-15", "Prijs: 5 € œuvre"),
        ("windows-1252", "“Aanhalingstekens” – en €"),
        ("utf-8", "Zürich, 東京, Ελλάδα"),
        ("iso-2022-jp", "日本語のメールです"),
    ],
    ids=["latin1", "latin9", "cp1252", "utf8", "iso2022jp"],
)
@pytest.mark.parametrize("encoding", ["8bit", "quoted-printable", "base64"])
def test_body_charsets_decode(charset: str, text: str, encoding: str) -> None:
    payload = text.encode(charset)
    if encoding == "base64":
        body = base64.encodebytes(payload)
    elif encoding == "quoted-printable":
        import quopri

        body = quopri.encodestring(payload)
    else:
        body = payload
    if charset == "iso-2022-jp" and encoding == "8bit":
        encoding = "7bit"
    raw = _raw(
        "From: a@customer.nl\nSubject: x\nMIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {encoding}\n",
        body,
    )
    assert parse_mail(raw).text.strip() == text


def test_rfc2231_filename_is_decoded() -> None:
    raw = _raw(
        "From: a@customer.nl\nSubject: bijlage\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b"\n',
        b"--b\r\nContent-Type: text/plain\r\n\r\nzie bijlage\r\n--b\r\n"
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''Offerte%20%C3%A9t%C3%A9%202026.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"%PDF-1.4 test")
        + b"--b--\r\n",
    )
    mail = parse_mail(raw)
    assert [a.filename for a in mail.attachments] == ["Offerte été 2026.pdf"]
    assert mail.attachments[0].data == b"%PDF-1.4 test"
    assert mail.text.strip() == "zie bijlage"


def _multipart(*parts: tuple[str, bytes, str | None], text: str | None = "zie bijlagen") -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Alice <alice@customer.nl>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Bijlagen"
    if text is not None:
        msg.set_content(text)
    for ctype, data, name in parts:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def test_twenty_attachments_all_kept() -> None:
    parts = [("application/octet-stream", bytes([i]) * (i + 1), f"file{i}.bin") for i in range(20)]
    mail = parse_mail(_multipart(*parts))
    assert [a.filename for a in mail.attachments] == [f"file{i}.bin" for i in range(20)]
    assert [a.size for a in mail.attachments] == [i + 1 for i in range(20)]


@pytest.mark.parametrize(
    ("name", "safe"),
    [("../../etc/passwd", "passwd"), ("con.txt", "_con.txt"), ("bad\x00name.pdf", "bad_name.pdf")],
    ids=["traversal", "reserved", "nul"],
)
def test_hostile_attachment_names_are_made_safe(name: str, safe: str) -> None:
    raw = _raw(
        "From: a@customer.nl\nSubject: x\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b"\n',
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="' + name.encode() + b'"\r\n\r\n'
        b"data\r\n--b--\r\n",
    )
    mail = parse_mail(raw)
    assert [a.filename for a in mail.attachments] == [safe]


def test_ten_megabyte_attachment_is_kept_exactly() -> None:
    data = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    mail = parse_mail(_multipart(("application/zip", data, "big.zip")))
    assert mail.attachments[0].size == 10 * 1024 * 1024
    assert mail.attachments[0].data == data


def test_html_only_mail_gets_text_from_html() -> None:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "a@customer.nl"
    msg["Subject"] = "html"
    msg.set_content(
        "<html><body><p>Hallo <b>team</b></p><p>Groet</p></body></html>", subtype="html"
    )
    mail = parse_mail(msg.as_bytes())
    assert mail.text == "Hallo team\n\nGroet"
    assert mail.html is not None and "<b>team</b>" in mail.html


def test_no_text_body_at_all() -> None:
    mail = parse_mail(_multipart(("image/png", b"\x89PNG fake", "scan.png"), text=None))
    assert mail.text == ""
    assert [a.filename for a in mail.attachments] == ["scan.png"]


def test_missing_headers_give_none_not_errors() -> None:
    mail = parse_mail(b"Subject: only a subject\r\n\r\nbody\r\n")
    assert mail.from_addr is None
    assert mail.message_id is None
    assert mail.date is None
    assert mail.text.strip() == "body"


def test_bad_date_is_a_defect() -> None:
    mail = parse_mail(b"From: a@b.nl\r\nDate: yesterday-ish\r\n\r\nbody\r\n")
    assert mail.date is None
    assert "invalid Date header" in mail.defects


def test_nested_rfc822_is_kept_as_attachment() -> None:
    inner = EmailMessage(policy=SMTP)
    inner["From"] = "bob@other.nl"
    inner["Subject"] = "Origineel"
    inner.set_content("originele tekst")
    outer = EmailMessage(policy=SMTP)
    outer["From"] = "alice@customer.nl"
    outer["Subject"] = "Fwd: Origineel"
    outer.set_content("zie doorgestuurd bericht")
    outer.add_attachment(inner, filename="origineel.eml")
    mail = parse_mail(outer.as_bytes())
    assert "zie doorgestuurd bericht" in mail.text
    eml = [a for a in mail.attachments if a.content_type == "message/rfc822"]
    assert len(eml) == 1 and eml[0].filename == "origineel.eml"
    assert b"originele tekst" in eml[0].data


def test_nameless_inline_image_is_not_lost() -> None:
    raw = _raw(
        "From: a@customer.nl\nSubject: x\nMIME-Version: 1.0\n"
        'Content-Type: multipart/related; boundary="b"\n',
        b"--b\r\nContent-Type: text/plain\r\n\r\nscreenshot:\r\n--b\r\n"
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x89PNGdata")
        + b"--b--\r\n",
    )
    mail = parse_mail(raw)
    assert [(a.filename, a.data) for a in mail.attachments] == [
        ("attachment-1.png", b"\x89PNGdata")
    ]


def test_threading_headers_are_read_in_order() -> None:
    raw = (
        b"From: a@b.nl\r\nMessage-ID: <m3@x>\r\nIn-Reply-To: <m2@x>\r\n"
        b"References: <m1@x>\r\n <m2@x>\r\n\r\nbody\r\n"
    )
    mail = parse_mail(raw)
    assert mail.message_id == "m3@x"
    assert mail.in_reply_to == ("m2@x",)
    assert mail.references == ("m1@x", "m2@x")


def test_garbage_never_raises() -> None:
    for raw in (
        b"\x00\xff\xfe" * 100,
        b"Content-Type: multipart/mixed\r\n\r\n--x",
        b"::::\n\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--a\r\n" * 5000,
    ):
        mail = parse_mail(raw)
        assert isinstance(mail.text, str)


CORPUS_MAILS = corpus_mails()


@pytest.mark.parametrize("entry", CORPUS_MAILS, ids=[str(e["id"]) for e in CORPUS_MAILS])
def test_corpus_mail_parses_and_keeps_its_attachments(entry: dict[str, object]) -> None:
    raw = (CORPUS / str(entry["path"])).read_bytes()
    expect_any = entry.get("expect") or {}
    notes = str(expect_any.get("notes_from_test", "")) if isinstance(expect_any, dict) else ""
    # Where the source project's test configured extra input charsets, so do we.
    fallbacks = (
        ("utf-8", "koi8-r") if "EmailInputEncodings=koi8-r" in notes else ("utf-8", "windows-1252")
    )
    mail = parse_mail(raw, fallbacks)
    assert isinstance(mail.text, str)
    expect = entry.get("expect") or {}
    assert isinstance(expect, dict)
    if "subject" in expect:
        assert mail.subject == expect["subject"]
    if "ticket_subject" in expect:
        assert clean_subject(mail.subject) == expect["ticket_subject"]
    if "attachment_count" in expect:
        assert len(mail.attachments) == expect["attachment_count"]
    if "attachment_filenames" in expect:
        names = [safe_filename(n, "", 0) for n in expect["attachment_filenames"]]
        assert sorted(a.filename for a in mail.attachments) == sorted(names)


def test_corpus_is_present() -> None:
    assert len(CORPUS_MAILS) > 200


def test_inline_images_keep_their_content_id_for_the_html() -> None:
    msg = EmailMessage()
    msg["From"] = "alice@customer.nl"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Schermafdruk"
    msg.set_content("Zie de afbeelding.")
    msg.add_alternative('<p>Zie <img src="cid:scherm.1@customer.nl"></p>', subtype="html")
    html_part = msg.get_payload()[1]
    html_part.add_related(b"\x89PNG\r\n\x1a\nfake", "image", "png", cid="<scherm.1@customer.nl>")
    for mail in (parse_mail(msg.as_bytes()), _with_stdlib(msg.as_bytes(), (), ())):
        (image,) = mail.attachments
        assert image.content_id == "scherm.1@customer.nl", mail.parser
        assert image.content_type == "image/png"
        assert mail.html is not None and "cid:scherm.1@customer.nl" in mail.html


@pytest.mark.parametrize(
    ("headers", "author", "header"),
    [
        ("From: Jan <jan@klant.nl>", "jan@klant.nl", "From"),
        ('From: "Jan" <jan@klant.nl.>', "jan@klant.nl", "From"),
        ('From: "Jan <jan@klant.nl>', "jan@klant.nl", "From"),
        ("From: \nFrom: Jan <jan@klant.nl>", "jan@klant.nl", "From"),
        ("From: undisclosed\nSender: Piet <piet@klant.nl>", "piet@klant.nl", "Sender"),
        ("Reply-To: Kees <kees@klant.nl>", "kees@klant.nl", "Reply-To"),
        ("From: <>\nReply-To: kees@klant.nl", "kees@klant.nl", "Reply-To"),
        ("Return-Path: <rp@klant.nl>", "rp@klant.nl", "Return-Path"),
    ],
)
def test_the_author_falls_back_from_header_to_header_and_survives_malformed_ones(
    headers: str, author: str, header: str
) -> None:
    mail = parse_mail(_raw(f"{headers}\nSubject: Vraag\nMessage-ID: <a1@klant.nl>\n", b"Hoi\r\n"))
    assert mail.from_addr is not None
    assert (mail.from_addr.email, mail.from_header) == (author, header)


def test_without_any_author_header_the_envelope_sender_is_the_author() -> None:
    from mailgate.core.header_addresses import with_envelope_sender

    mail = parse_mail(_raw("Subject: Vraag\n", b"Hoi\r\n"))
    assert mail.from_addr is None
    found = with_envelope_sender(mail, "jan@klant.nl")
    assert found.from_addr is not None and found.from_header == "envelope"
    assert with_envelope_sender(mail, "").from_addr is None  # a bounce's null sender
    assert with_envelope_sender(mail, "no address").from_addr is None


@pytest.mark.parametrize(
    ("charset", "subject", "name"),
    [
        ("gb2312", "关于发票的问题", "张伟"),
        ("big5", "關於發票的問題", "陳大文"),
        ("shift_jis", "請求書について", "山田太郎"),
        ("euc-kr", "청구서 문의", "김철수"),
    ],
)
def test_raw_8bit_subjects_and_names_are_read_in_the_mails_own_charset(
    charset: str, subject: str, name: str
) -> None:
    raw = (
        b"From: " + name.encode(charset) + b" <a@klant.example>\r\nSubject: "
        + subject.encode(charset) + b"\r\nMIME-Version: 1.0\r\n"
        + f"Content-Type: text/plain; charset={charset}\r\n\r\n".encode()
        + "本文".encode(charset, "replace") + b"\r\n"
    )  # fmt: skip
    mail = parse_mail(raw)
    assert mail.subject == subject
    assert mail.from_addr is not None and mail.from_addr.name == name


def test_iso_2022_jp_is_read_undeclared_and_declared_as_something_else() -> None:
    import base64

    jis = "お問い合わせ".encode("iso2022_jp")
    wrong = base64.b64encode(jis).decode()
    raw = b"From: a@klant.example\r\nSubject: =?us-ascii?B?" + wrong.encode() + b"?=\r\n\r\nx\r\n"
    assert parse_mail(raw).subject == "お問い合わせ"
    bare = b"From: a@klant.example\r\nSubject: " + jis + b"\r\n\r\nx\r\n"
    assert parse_mail(bare).subject == "お問い合わせ"


def _with_parts(*parts: bytes) -> bytes:
    body = (
        b"From: a@klant.nl\r\nTo: support@example.com\r\nSubject: Bijlagen\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\n"
        b"Zie bijlagen.\r\n"
    )
    return body + b"".join(b"--X\r\n" + part + b"\r\n" for part in parts) + b"--X--\r\n"


PDF = base64.b64encode(b"%PDF-1.4 x").decode()


def _b64(text: str, charset: str = "utf-8") -> str:
    return base64.b64encode(text.encode(charset)).decode()


@pytest.mark.parametrize(
    ("part", "name"),
    [
        (
            b"Content-Type: message/rfc822\r\n\r\nFrom: c@klant.nl\r\nSubject: Oude vraag\r\n"
            b"\r\nTekst\r\n",
            "Oude vraag.eml",
        ),
        (f'Content-Type: application/pdf; name="factuur.pdf"\r\n'
         f"Content-Transfer-Encoding: base64\r\n\r\n{PDF}\r\n".encode(), "factuur.pdf"),
        (f'Content-Type: image/png; name="logo.png"\r\nContent-ID: <logo1>\r\n'
         f"Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n{PDF}\r\n"
         .encode(), "logo.png"),
        (b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''"
         b"%E5%8F%91%E7%A5%A8%E6%B8%85%E5%8D%95.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         + PDF.encode() + b"\r\n", "发票清单.pdf"),
        (f'Content-Type: application/pdf; name="=?UTF-8?B?{_b64("請求書.pdf")}?="\r\n'
         f"Content-Transfer-Encoding: base64\r\n\r\n{PDF}\r\n".encode(), "請求書.pdf"),
        (f'Content-Type: application/pdf; name="=?euc-kr?B?{_b64("청구서.pdf", "euc-kr")}?="\r\n'
         f"Content-Transfer-Encoding: base64\r\n\r\n{PDF}\r\n".encode(), "청구서.pdf"),
        (b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename*0*="
         b"UTF-8''%D0%A0%D0%B0%D1%85%D1%83%D0%BD%D0%BE%D0%BA;\r\n filename*1*=%20%D0%B7%D0%B0"
         b"%20%D1%81%D1%96%D1%87%D0%B5%D0%BD%D1%8C.pdf\r\nContent-Transfer-Encoding: base64\r\n"
         b"\r\n" + PDF.encode() + b"\r\n", "Рахунок за січень.pdf"),
    ],
)  # fmt: skip
def test_attachment_names_as_other_mail_systems_record_them(part: bytes, name: str) -> None:
    assert [a.filename for a in parse_mail(_with_parts(part)).attachments] == [name]


def test_two_attachments_of_one_name_are_told_apart_like_mail_clients_do() -> None:
    same = (
        f'Content-Type: application/pdf; name="a.pdf"\r\nContent-Disposition: attachment; '
        f'filename="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n{PDF}\r\n'
    ).encode()
    found = parse_mail(_with_parts(same, same, same)).attachments
    assert [a.filename for a in found] == ["a.pdf", "a (1).pdf", "a (2).pdf"]
    assert {a.original_filename for a in found} == {"a.pdf"}


def test_a_part_without_a_name_gets_the_same_name_each_time_the_mail_is_parsed() -> None:
    """mail-parser names such a part with random letters; the ticket's attachment must
    not be named differently when the same mail is parsed again (a retry, a worker
    process, a re-import)."""
    raw = (
        b"From: a@example.nl\r\nTo: support@example.com\r\nSubject: log\r\n"
        b"Message-ID: <log@example.nl>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nZie bijlage.\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nregel 1\r\n"
        b"--b\r\nContent-Type: application/rtf\r\n\r\n{\\rtf1 tekst}\r\n--b--\r\n"
    )
    names = {tuple(a.filename for a in parse_mail(raw).attachments) for _ in range(5)}
    assert len(names) == 1
    (found,) = names
    assert len(found) == 2 and all(not re.fullmatch(r"[a-z]{10}\.(txt|rtf)", n) for n in found)
