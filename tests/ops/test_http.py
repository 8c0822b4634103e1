"""/healthz and /metrics of a running daemon, read over HTTP."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ThrowawayCluster, free_port, write_config_file
from tests.mails import make_mail
from tests.test_daemon import start_daemon, stop_daemon
from tests.waiting import eventually_sync as eventually


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_health_follows_the_database_and_metrics_count_mail(
    tmp_path: Path, own_cluster: ThrowawayCluster
) -> None:
    smtp_port, http_port = free_port(), free_port()
    config = write_config_file(
        tmp_path / "config.toml",
        own_cluster.url,
        smtp={"port": smtp_port},
        http={"enabled": True, "port": http_port},
        database={"busy_timeout": 2.0},
    )
    daemon, lines = start_daemon(config)
    try:
        status, body = get(http_port, "/healthz")
        assert status == 200, body
        assert json.loads(body)["checks"]["database"] == "ok"
        before = samples(get(http_port, "/metrics")[1].decode())
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            for n in range(3):
                smtp.sendmail("a@customer.nl", ["support@example.com"], make_mail(subject=f"m{n}"))

        def counted() -> bool:
            now = samples(get(http_port, "/metrics")[1].decode())
            key = ("mailgate_mails_received_total", (("outcome", "created"), ("source", "smtp")))
            return now.get(key, 0) - before.get(key, 0) == 3

        eventually(counted)
        now = samples(get(http_port, "/metrics")[1].decode())
        assert now[("mailgate_tickets", (("status", "new"),))] == 3
        assert now[("mailgate_processing_seconds_count", ())] >= 3
        # The sender works on its own: its gauge catches up (team notices, plus acks).
        eventually(
            lambda: (
                samples(get(http_port, "/metrics")[1].decode()).get(
                    ("mailgate_outbox", (("state", "sent"),)), 0
                )
                >= 3
            )
        )

        own_cluster.stop()
        status, body = get(http_port, "/healthz")
        assert status == 503
        assert json.loads(body)["checks"]["database"].startswith("unreachable")
        own_cluster.start()
        eventually(lambda: get(http_port, "/healthz")[0] == 200)
        assert get(http_port, "/nothing")[0] == 404
    finally:
        assert stop_daemon(daemon) == 0, b"".join(lines).decode()[-3000:]


async def test_the_monitor_answers_get_and_head_and_refuses_the_rest(app: Any) -> None:
    """In process, on a free port: the two routes, HEAD without a body, other methods 405,
    other paths 404."""
    import asyncio

    from mailgate.ops.http import Health, MonitorServer

    server = MonitorServer(Health(app.engine, app.metrics, app.clock, ()))
    port = await server.start("127.0.0.1", 0)
    try:

        def ask(method: str, path: str) -> tuple[int, bytes]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
            try:
                with urllib.request.urlopen(request, timeout=20) as answer:
                    return int(answer.status), bytes(answer.read())
            except urllib.error.HTTPError as exc:
                return int(exc.code), bytes(exc.read())

        status, body = await asyncio.to_thread(ask, "GET", "/healthz")
        assert status == 200 and json.loads(body)["checks"]["database"] == "ok"
        assert await asyncio.to_thread(ask, "HEAD", "/healthz") == (200, b"")
        assert (await asyncio.to_thread(ask, "POST", "/healthz"))[0] == 405
        assert (await asyncio.to_thread(ask, "GET", "/nothing"))[0] == 404
        status, body = await asyncio.to_thread(ask, "GET", "/metrics")
        assert status == 200 and b"mailgate_" in body
    finally:
        await server.close()
