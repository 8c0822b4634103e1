from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailgate.core.identity import identify

MAIL = b"Message-ID: <x@y>\r\nSubject: hi\r\n\r\nbody\r\n"


def test_redelivery_with_extra_received_header_has_the_same_key() -> None:
    again = b"Received: from mx2 by mx1; Mon, 5 Jan 2026 10:00:00 +0000\r\n" + MAIL
    assert identify(again).dedupe_key == identify(MAIL).dedupe_key
    assert identify(again).raw_sha256 != identify(MAIL).raw_sha256


def test_same_message_id_with_another_body_is_another_mail() -> None:
    other = MAIL.replace(b"body", b"different body")
    assert identify(other).dedupe_key != identify(MAIL).dedupe_key


def test_without_message_id_the_raw_bytes_decide() -> None:
    plain = b"Subject: hi\n\nbody\n"
    assert identify(plain).message_id is None
    assert identify(plain).dedupe_key == identify(plain).dedupe_key
    assert identify(plain).dedupe_key.startswith("raw:")
    assert identify(b"Received: x\n" + plain).dedupe_key != identify(plain).dedupe_key


def test_line_endings_do_not_change_the_body_hash() -> None:
    assert identify(MAIL).body_sha256 == identify(MAIL.replace(b"\r\n", b"\n")).body_sha256


def test_a_folded_message_id_and_one_in_the_body_are_told_apart() -> None:
    folded = b"From: a@b.nl\r\nMessage-ID:\r\n <folded@customer.nl>\r\nSubject: x\r\n\r\nbody\r\n"
    assert identify(folded).message_id == "folded@customer.nl"
    in_body = b"From: a@b.nl\r\nSubject: x\r\n\r\nMessage-ID: <quoted@elsewhere.nl>\r\n"
    assert identify(in_body).message_id is None
    lower = b"message-id: <lower@customer.nl>\n\nbody"
    assert identify(lower).message_id == "lower@customer.nl"


@given(st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"")), st.integers(1, 9))
def test_the_chunked_body_hash_is_the_hash_of_the_normalised_body(body: bytes, chunk: int) -> None:
    """Hashing a large body a chunk at a time (no copy of the mail) gives the same key as
    hashing it whole, wherever a chunk ends (between CR and LF too); from a view as well."""
    import hashlib

    from mailgate.core import identity

    raw = b"Message-ID: <x@y>\r\n\r\n" + body
    expected = hashlib.sha256(body.replace(b"\r\n", b"\n").rstrip()).hexdigest()
    saved, identity._CHUNK = identity._CHUNK, chunk
    try:
        assert identify(raw).body_sha256 == expected
        assert identify(memoryview(b"XX" + raw)[2:]).body_sha256 == expected
    finally:
        identity._CHUNK = saved


def test_a_mails_thread_is_the_message_id_that_started_it() -> None:
    head = b"From: a@b.nl\r\nSubject: x\r\n"
    root = identify(head + b"Message-ID: <root@b.nl>\r\n\r\nvraag\r\n")
    assert root.thread == "root@b.nl" == root.message_id
    reply = identify(head + b"Message-ID: <r1@b.nl>\r\nIn-Reply-To: <root@b.nl>\r\n\r\nja\r\n")
    assert reply.thread == "root@b.nl"
    deeper = identify(
        head + b"Message-ID: <r2@b.nl>\r\nIn-Reply-To: <r1@b.nl>\r\n"
        b"References: <root@b.nl>\r\n <r1@b.nl>\r\n\r\nnee\r\n"
    )
    assert deeper.thread == "root@b.nl"  # References name the start; In-Reply-To the parent
    assert identify(head + b"\r\nzonder id\r\n").thread is None
    quoted = identify(head + b"Message-ID: <own@b.nl>\r\n\r\nReferences: <other@b.nl>\r\n")
    assert quoted.thread == "own@b.nl"  # a header line in the body is no header


def test_the_sender_is_the_first_address_of_the_from_header() -> None:
    named = b"From k@org.nl Mon Jan 5\r\nFrom: =?utf-8?q?K=C3=A9?= <Klant@Org.NL>, b@c.nl\r\n\r\nx"
    assert identify(named).sender == "klant@org.nl"  # the mbox line is no header
    folded = b"Subject: x\r\nfrom:\r\n Piet <piet@org.nl>\r\n\r\nFrom: quoted@elsewhere.nl\r\n"
    assert identify(folded).sender == "piet@org.nl"
    assert identify(b"Subject: x\r\n\r\nFrom: in@body.nl\r\n").sender is None
    assert identify(b"From: undisclosed-recipients:;\r\n\r\nx").sender is None
    assert identify(b"From: <a\xae@b.nl>\r\n\r\nx").sender is None  # not UTF-8
    assert identify(b"From: a\x01b@c.nl\r\n\r\nx").sender is None  # a control character
