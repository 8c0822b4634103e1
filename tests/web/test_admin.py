"""The sysadmin's pages: quarantine with retry, held mails, outbox with retry, health."""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from mailgate.intake.spool import Received
from mailgate.store.repos.spool import SpoolRepo
from tests.conftest import deliver
from tests.mails import make_mail
from tests.web.conftest import Running
from tests.web.test_security import client, csrf_of, sign_in


async def test_a_quarantined_mail_is_shown_with_its_error_and_retried(running: Running) -> None:
    app = running.app
    stored = await app.spool.store(Received(make_mail(subject="Vast"), "test"))
    now = app.clock.now()

    def quarantine(conn: Connection) -> None:
        SpoolRepo(conn).quarantine(
            stored.spool_id, error="KeyError: 'x'", traceback_id="abc123", traceback="", now=now
        )

    await app.blocking.write(quarantine)
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        async with http.get(f"{running.url}/admin/quarantine") as page:
            html = await page.text()
        assert "KeyError: &#39;x&#39;" in html and "abc123" in html
        token = await csrf_of(http, running.url)
        retry = f"{running.url}/admin/quarantine/{stored.spool_id}/retry"
        async with http.post(retry, data={}, allow_redirects=False) as refused:
            assert refused.status == 403
        async with http.post(retry, data={"csrf": token}) as done:
            assert "created" in await done.text()
        async with http.get(f"{running.url}/tickets?view=all") as listed:
            assert "Vast" in await listed.text()


async def test_held_mails_of_all_tickets_and_the_outbox_and_health(running: Running) -> None:
    app = running.app
    await deliver(app, make_mail())
    tag = app.codec.subject_tag(1)
    await deliver(app, make_mail(subject=f"Re: {tag} x", sender="eve@elders.nl", body="Ik ook!"))
    async with app.engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET state = 'dead', last_error = 'refused' "))
    async with client() as http:
        assert await sign_in(http, running.url) == 303
        async with http.get(f"{running.url}/admin/held") as page:
            html = await page.text()
        assert "eve@elders.nl" in html and "Ik ook!" in html
        async with http.get(f"{running.url}/admin/outbox") as page:
            html = await page.text()
        dead = re.findall(r"/admin/outbox/(\d+)/retry", html)
        assert len(dead) >= 2 and "refused" in html
        token = await csrf_of(http, running.url)
        async with http.post(f"{running.url}/admin/outbox/{dead[0]}/retry", data={"csrf": token}):
            pass
        async with app.engine.connect() as conn:
            state = await conn.execute(
                text("SELECT state FROM outbox WHERE id = :id"), {"id": int(dead[0])}
            )
            assert state.scalar() in ("pending", "sent")
        async with http.get(f"{running.url}/admin/health") as page:
            html = await page.text()
        # this app runs no SMTP listener although [smtp] is on: the page says so, with 503
        assert page.status == 503
        assert re.search(r"<dt>database</dt><dd>ok</dd>", html)
        assert re.search(r"<dt>listeners</dt><dd>not bound</dd>", html)
