from __future__ import annotations

from mailgate.core.address import AddressPolicy, QueueAddresses

POLICY = AddressPolicy(
    queues=(
        QueueAddresses("support", ("support@example.com", "help@example.com")),
        QueueAddresses("sitedown", ("sitedown@example.com",)),
    ),
    agent_domains=("example.com",),
    agent_addresses=("freelancer@contractor.nl",),
)


def test_own_addresses_match_case_insensitively() -> None:
    own = POLICY.match("Support@EXAMPLE.com")
    assert own is not None and own.queue == "support" and own.detail is None
    sitedown = POLICY.match("sitedown@example.com")
    assert sitedown is not None and sitedown.queue == "sitedown"


def test_plus_address_carries_detail() -> None:
    own = POLICY.match("support+1042-k7qf3m9t@example.com")
    assert own is not None and own.queue == "support" and own.detail == "1042-k7qf3m9t"


def test_foreign_and_lookalike_addresses_are_not_ours() -> None:
    assert POLICY.match("support@example.org") is None
    assert POLICY.match("supporter@example.com") is None
    assert POLICY.match("support+@example.com") is None
    assert POLICY.match("not an address") is None


def test_case_sensitive_local_part_when_configured() -> None:
    strict = AddressPolicy(queues=POLICY.queues, case_sensitive_local_part=True)
    assert strict.match("Support@example.com") is None
    assert strict.match("support@EXAMPLE.COM") is not None


def test_plus_addressing_can_be_off() -> None:
    off = AddressPolicy(queues=POLICY.queues, plus_addressing=False)
    assert off.match("support+1-abc@example.com") is None


def test_agents_are_team_domain_or_listed_but_never_our_own_address() -> None:
    assert POLICY.is_agent("bob@example.com")
    assert POLICY.is_agent("Freelancer@contractor.nl")
    assert not POLICY.is_agent("support@example.com")
    assert not POLICY.is_agent("alice@customer.nl")


def test_plus_address_is_built_with_lower_case_detail() -> None:
    assert POLICY.plus_address("support@example.com", "1-ABC") == "support+1-abc@example.com"
