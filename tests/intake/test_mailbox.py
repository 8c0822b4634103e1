"""The IMAP connection's pure parts; its talk with a real Dovecot is in ``test_imap`` and
``test_oauth``."""

from __future__ import annotations

import base64
import json

import pytest

from mailgate.intake.mailbox import Bearer

REFUSAL = json.dumps({"status": "invalid_token", "schemes": "bearer"}).encode()


def test_oauthbearer_sends_the_token_once_and_answers_a_refusal_with_the_dummy() -> None:
    bearer = Bearer("OAUTHBEARER", "desk=1,nl@example.com", "tok-1")
    first = bearer(b"")
    gs2, auth, empty, end = first.split(b"\x01")
    assert gs2 == b"n,a=desk=3D1=2Cnl@example.com,"  # RFC 5801's saslname escapes
    assert (auth, empty, end) == (b"auth=Bearer tok-1", b"", b"")
    assert bearer(REFUSAL) == b"\x01"  # RFC 7628 3.2.3, not the token again
    assert bearer.status == "invalid_token"


def test_xoauth2_answers_a_refusal_with_an_empty_line() -> None:
    bearer = Bearer("XOAUTH2", "desk@example.com", "tok-2")
    assert bearer(b"") == b"user=desk@example.com\x01auth=Bearer tok-2\x01\x01"
    assert bearer(base64.b64decode(base64.b64encode(REFUSAL))) == b""
    assert bearer.status == "invalid_token"


@pytest.mark.parametrize("challenge", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_refusal_that_is_not_a_json_object_leaves_the_status_empty(challenge: bytes) -> None:
    bearer = Bearer("OAUTHBEARER", "desk@example.com", "tok")
    bearer(b"")
    assert bearer(challenge) == b"\x01"
    assert bearer.status == ""
