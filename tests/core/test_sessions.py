"""Sessions, form tokens and customers' links: signed, purpose-bound, expiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailgate.core.sessions import Signer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SIGNER = Signer(b"an installation's token secret, 32b")


def test_a_session_reads_back_until_it_expires() -> None:
    value = SIGNER.session("Anna@Example.com", NOW, HOUR, "nl", "nonce1")
    found = SIGNER.read_session(value, NOW + timedelta(minutes=59))
    assert found is not None
    assert (found.agent, found.language, found.nonce) == ("anna@example.com", "nl", "nonce1")
    assert SIGNER.read_session(value, NOW + HOUR) is None


def test_a_changed_or_foreign_session_is_none() -> None:
    value = SIGNER.session("anna@example.com", NOW, HOUR, "en", "n")
    assert SIGNER.read_session(value.replace("anna@", "boss@"), NOW) is None
    body, _, mac = value.rpartition("|")
    later = body.replace(body.split("|")[1], str(int(body.split("|")[1]) + 86400))
    assert SIGNER.read_session(f"{later}|{mac}", NOW) is None
    other = Signer(b"another installation's secret....")
    assert other.read_session(value, NOW) is None
    assert SIGNER.read_session("garbage", NOW) is None
    assert SIGNER.read_session("", NOW) is None


def test_the_csrf_token_belongs_to_its_session() -> None:
    one = SIGNER.read_session(SIGNER.session("a@example.com", NOW, HOUR, "en", "x"), NOW)
    two = SIGNER.read_session(SIGNER.session("a@example.com", NOW, HOUR, "en", "y"), NOW)
    assert one is not None and two is not None
    assert SIGNER.csrf_ok(one, SIGNER.csrf(one))
    assert not SIGNER.csrf_ok(two, SIGNER.csrf(one))
    assert not SIGNER.csrf_ok(one, "")


def test_a_link_is_one_customers_of_one_ticket_and_never_a_session() -> None:
    key = SIGNER.link_key(7, "Alice@Customer.nl")
    assert len(key) == 22  # 128 bits, base64url without padding
    assert SIGNER.link_owner(7, key, ["bob@customer.nl", "alice@customer.nl"]) == (
        "alice@customer.nl"
    )
    assert SIGNER.link_owner(8, key, ["alice@customer.nl"]) is None  # another ticket
    assert SIGNER.link_owner(7, key, ["bob@customer.nl"]) is None  # no longer on it
    assert SIGNER.read_session(key, NOW) is None
    assert SIGNER.link_path(7, "alice@customer.nl") == f"/c/7/{key}"
    assert SIGNER.form_check("n") != SIGNER.link_key(7, "n")


def test_a_sign_in_link_names_its_agent_until_it_expires() -> None:
    token = SIGNER.sign_in_link("Anna@Example.com", NOW, timedelta(minutes=15), "n1")
    assert SIGNER.read_sign_in_link(token, NOW) == ("anna@example.com", "n1")
    assert SIGNER.read_sign_in_link(token, NOW + timedelta(minutes=15)) is None
    assert SIGNER.read_sign_in_link(token[:-2] + "xx", NOW) is None
    assert SIGNER.read_sign_in_link("%%%", NOW) is None
    # a session cookie is not a sign-in link, nor the other way round
    cookie = SIGNER.session("anna@example.com", NOW, HOUR, "en", "n1")
    assert SIGNER.read_sign_in_link(cookie, NOW) is None
    assert SIGNER.read_session(token, NOW) is None
