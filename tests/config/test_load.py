from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config import load_config, parse_config, resolve_config_path
from mailgate.errors import ConfigError

MINIMAL = {
    "queues": [
        {
            "name": "support",
            "addresses": ["support@example.com"],
            "team_address": "team@example.com",
        }
    ]
}


def test_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, name="config.toml", base=tmp_path, environ={})
    assert config.general.data_dir == tmp_path / "var"
    assert config.database.url == f"sqlite+aiosqlite:///{tmp_path}/var/mailgate.db"


def test_database_url_from_environment_wins(tmp_path: Path) -> None:
    config = parse_config(
        MINIMAL,
        name="config.toml",
        base=tmp_path,
        environ={"MAILGATE_DATABASE_URL": "postgresql://u@db/mailgate"},
    )
    assert config.database.url == "postgresql+asyncpg://u@db/mailgate"


def test_secret_from_environment_and_too_short_secret(tmp_path: Path) -> None:
    config = parse_config(
        MINIMAL, name="c.toml", base=tmp_path, environ={"MAILGATE_SECRET": "x" * 20}
    )
    assert config.tokens.secret == b"x" * 20
    with pytest.raises(ConfigError, match="MAILGATE_SECRET: must be at least 16"):
        parse_config(MINIMAL, name="c.toml", base=tmp_path, environ={"MAILGATE_SECRET": "short"})


def test_all_problems_reported_together(tmp_path: Path) -> None:
    document = {
        "smpt": {},
        "database": {"url": "mysql://x/y"},
        "intake": {"fallback_charsets": ["klingon-8"]},
        "queues": [
            {"name": "a", "addresses": ["a@example.com"], "team_address": "t@example.com"},
            {
                "name": "a",
                "addresses": ["a@example.com"],
                "team_address": "t@example.com",
                "default_type": "rant",
            },
        ],
    }
    with pytest.raises(ConfigError) as raised:
        parse_config(document, name="config.toml", base=tmp_path, environ={})
    assert raised.value.problems == (
        "config.toml: [smpt]: unknown section",
        'config.toml: [database] url: expected a sqlite or postgresql URL, got "mysql"',
        'config.toml: [intake] fallback_charsets: unknown charset "klingon-8"',
        "config.toml: [[queues]] #2 default_type: expected one of question, bug, "
        'configuration_change, feedback, extra_request, got "rant"',
        'config.toml: [[queues]] #2 name: duplicate queue name "a"',
        'config.toml: [[queues]] #2 addresses: "a@example.com" belongs to another queue too',
    )


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", {})
    broken = tmp_path / "config.toml"
    broken.write_text("[general\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, {})


def test_config_path_selection(tmp_path: Path) -> None:
    assert resolve_config_path(str(tmp_path / "a.toml"), {}) == tmp_path / "a.toml"
    assert (
        resolve_config_path(None, {"MAILGATE_CONFIG": str(tmp_path / "b.toml")})
        == tmp_path / "b.toml"
    )
    assert resolve_config_path(None, {}).name == "config.toml"


def test_the_shipped_config_spells_out_the_default_workflow() -> None:
    from mailgate.core.workflow import DEFAULT_WORKFLOW

    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    config = load_config(shipped, environ={})
    assert config.workflow == DEFAULT_WORKFLOW
    assert config.calendar.timezone == "Europe/Amsterdam" and config.calendar.workdays == (
        0,
        1,
        2,
        3,
        4,
    )
    assert config.submission[0].type == "bug" and "werkt niet" in config.submission[0].phrases


def test_a_partial_workflow_keeps_the_default_for_the_rest(tmp_path: Path) -> None:
    from mailgate.core.workflow import DEFAULT_WORKFLOW, ClosedReply

    document = {**MINIMAL, "workflow": {"reply_to_closed": "new_ticket"}}
    config = parse_config(document, name="config.toml", base=tmp_path, environ={})
    assert config.workflow.reply_to_closed is ClosedReply.NEW_TICKET
    assert config.workflow.states == DEFAULT_WORKFLOW.states


def test_a_broken_workflow_is_a_startup_error_naming_each_key(tmp_path: Path) -> None:
    document = {
        **MINIMAL,
        "workflow": {
            "initial": "start",
            "states": {
                "start": {"group": "support", "next": ["done", "ghost"]},
                "done": {"group": "closed"},
                "island": {"group": "support", "next": ["done"]},
                "odd": {"group": "sideways"},
            },
            "transitions": [
                {"on": "customer_reply", "to": "limbo"},
                {"on": "teleport", "to": "done"},
                {"on": "remind", "template": "no_such"},
            ],
            "timers": [{"state": "done", "fire": "archive"}],
        },
        "submission": {"keywords": [{"match": ["x"], "type": "taart"}]},
        "calendar": {"timezone": "Mars/Olympus", "workdays": ["mon", "blursday"]},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, name="config.toml", base=tmp_path, environ={})
    text = "\n".join(caught.value.problems)
    for expected in (
        "[workflow.states.odd] group: expected one of",
        "[[workflow.transitions]] #2 on: expected one of",
        "[[workflow.timers]] #1 after_days: required",
        "[[submission.keywords]] #1 type: expected one of",
        "[calendar] timezone: unknown time zone",
        "[calendar] workdays: expected day names",
    ):
        assert expected in text, expected


def test_workflow_graph_faults_name_the_state(tmp_path: Path) -> None:
    document = {
        **MINIMAL,
        "workflow": {
            "states": {
                "new": {"group": "support", "next": ["open", "ghost"]},
                "open": {"group": "support", "next": ["closed"]},
                "island": {"group": "support", "next": ["closed"]},
                "stuck": {"group": "hold"},
                "closed": {"group": "closed", "next": ["stuck"]},
            },
            "reopen_to": "open",
            "transitions": [{"on": "remind", "from": ["open"], "template": "no_such"}],
            "timers": [],
        },
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, name="config.toml", base=tmp_path, environ={})
    text = "\n".join(caught.value.problems)
    assert "[workflow] states.new.next: unknown state 'ghost'" in text
    assert "template: unknown template 'no_such'" in text
    document["workflow"]["states"]["new"]["next"] = ["open"]  # type: ignore[index]
    document["workflow"]["transitions"] = []  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        parse_config(document, name="config.toml", base=tmp_path, environ={})
    text = "\n".join(caught.value.problems)
    assert "states.island: cannot be reached from 'new'" in text
    assert "states.stuck: no way out" in text


def test_the_shipped_config_spells_out_the_default_sla() -> None:
    from mailgate.config import SlaConfig
    from mailgate.core.sla import DEFAULT_TARGETS

    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    config = load_config(shipped, environ={})
    assert {(t, p): (a, s) for t, p, a, s in config.sla.targets} == dict(DEFAULT_TARGETS)
    assert config.sla.warn_at == 0.8
    assert config.sla == SlaConfig(
        0.8, tuple((k[0], k[1], v[0], v[1]) for k, v in DEFAULT_TARGETS.items())
    )
    assert (config.calendar.holidays_country, str(config.calendar.closes)) == ("NL", "17:30:00")


def test_sla_and_calendar_faults_are_named(tmp_path: Path) -> None:
    document = {
        **MINIMAL,
        "sla": {
            "warn_at": 1.5,
            "targets": {
                "bug": {"critical": ["soon", "2 days"], "urgentish": ["1 day", "2 days"]},
                "cake": {"low": ["1 day", "2 days"]},
            },
        },
        "calendar": {"opens": "18:00", "closes": "9am", "holidays_country": "XX"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, name="config.toml", base=tmp_path, environ={})
    text = "\n".join(caught.value.problems)
    for expected in (
        "[sla] warn_at: expected a number",
        '[sla] targets.bug.critical: "soon" is not a duration',
        "[sla] targets.bug.urgentish: unknown priority",
        "[sla] targets.cake: unknown type",
        '[calendar] closes: expected "HH:MM", got "9am"',
        '[calendar] holidays_country: no holiday calendar for "XX"',
    ):
        assert expected in text, expected


def test_an_answer_target_longer_than_its_solve_target_is_refused(tmp_path: Path) -> None:
    """Both targets are business time: "24 hours" is 24 office hours, about three working
    days, so it cannot be the answer target of a two-day solve target. The shipped table
    and the shipped config pass the same rule."""
    document = {
        **MINIMAL,
        "calendar": {"opens": "09:00", "closes": "17:00"},
        "sla": {
            "targets": {"bug": {"critical": ["24 hours", "2 days"], "high": ["8 hours", "1 day"]}}
        },
    }
    with pytest.raises(ConfigError) as raised:
        parse_config(document, name="config.toml", base=tmp_path, environ={})
    assert raised.value.problems == (
        'config.toml: [sla] targets.bug.critical: the answer target "24 hours" is longer than '
        'the solve target "2 days" (both business time: an hour is an office hour, a day the '
        "office hours of a working day)",
    )  # "8 hours" within "1 day" of eight office hours is fine
    shipped = load_config(Path(__file__).resolve().parents[2] / "config.toml", {})
    assert ("bug", "critical", "1 day", "2 days") in shipped.sla.targets


def test_oauth2_settings_read_the_secret_and_certificate_from_where_the_config_says(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    imap = {
        "name": "m365", "host": "outlook.office365.com", "username": "support@example.com",
        "auth": "oauth2", "token_provider": "microsoft", "tenant": "t", "client_id": "c",
    }  # fmt: skip
    secret = {**MINIMAL, "imap": [{**imap, "client_secret_env": "M365_SECRET"}]}
    config = parse_config(secret, name="c.toml", base=tmp_path, environ={"M365_SECRET": "s3"})
    oauth2 = config.imap[0].oauth2
    assert oauth2 is not None and (oauth2.client_secret, oauth2.certificate) == ("s3", None)
    assert "s3" not in repr(config.imap[0])  # secrets stay out of reprs and logs
    certificate = {**MINIMAL, "imap": [{**imap, "client_certificate": "app.pem"}]}
    config = parse_config(certificate, name="c.toml", base=tmp_path, environ={})
    assert config.imap[0].oauth2 is not None
    assert config.imap[0].oauth2.certificate == tmp_path / "app.pem"
    with pytest.raises(ConfigError) as both:
        broken = {**MINIMAL, "imap": [{**imap, "client_certificate": "gone.pem"}]}
        parse_config(broken, name="c.toml", base=tmp_path, environ={})
    assert any("client_certificate: no such file" in p for p in both.value.problems)
    (tmp_path / "secret").write_text("from-a-file\n")
    filed = {**MINIMAL, "imap": [{**imap, "client_secret_file": "secret"}]}
    oauth2 = parse_config(filed, name="c.toml", base=tmp_path, environ={}).imap[0].oauth2
    assert oauth2 is not None and oauth2.client_secret == "from-a-file"
    with pytest.raises(ConfigError) as unset:
        parse_config(secret, name="c.toml", base=tmp_path, environ={})
    assert any("M365_SECRET is not set" in p for p in unset.value.problems)
