"""The timer scheduler: fire each due workflow timer once, in the transaction of its change.

Timers are armed when a ticket enters a state ("remind after 3 business days",
"archive 7 days after closing") and cancelled when it leaves. A due timer is
claimed and its move applied in one transaction, so it fires once across
restarts and with several instances; one whose ticket has moved on meanwhile
fires nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import structlog
from sqlalchemy import Connection

from mailgate.clock import Clock
from mailgate.core.workflow import Trigger, move
from mailgate.runners.loop import Round
from mailgate.store.db import Blocking, storage_errors
from mailgate.store.repos import SLA_PREFIX, Tx
from mailgate.store.repos.history import Event
from mailgate.tickets.effects import Desk

log = structlog.get_logger("mailgate.runners.timers")


class Scheduler:
    """Fires due timers; the ``timers`` loop, looking every ``interval`` seconds (in the one
    instance that leads it)."""

    name = "timers"

    def __init__(
        self,
        *,
        blocking: Blocking,
        desk: Desk,
        clock: Clock,
        on_outbox: Callable[[], None],
        interval: float = 30.0,
    ) -> None:
        self.blocking = blocking
        self.desk = desk
        self.clock = clock
        self.interval = interval
        self.on_outbox = on_outbox

    async def run_due(self, limit: int = 200) -> int:
        """Fire every timer due now (up to ``limit``); returns how many fired."""
        now = self.clock.now()
        with storage_errors("list timers"):
            due = await self.blocking.read(lambda conn: Tx.on(conn).timers.due(now, limit))
        fired = 0
        for timer_id in due:
            with storage_errors("fire timer"):
                fired += await self.blocking.write(functools.partial(self._fire, timer_id))
        if fired:
            self.on_outbox()
        return fired

    def _fire(self, timer_id: int, conn: Connection) -> int:
        tx = Tx.on(conn)
        now = self.clock.now()
        claimed = tx.timers.claim(timer_id, now)
        if claimed is None:
            return 0
        ticket, trigger, armed_in = claimed
        state = tx.tickets.state(ticket, lock=True)
        if state is None or state.status != armed_in:
            return 0
        if trigger.startswith(SLA_PREFIX):
            return self.desk.sla_keeper.alert(tx, ticket, trigger, now)
        found = move(self.desk.workflow, state.status, Trigger(trigger))
        if found is None:
            log.info("timer.ignored", ticket=f"#{ticket}", trigger=trigger, status=state.status)
            return 0
        tx.history.add_events(
            [Event(ticket, "timer_fired", "mailgate", now, new=trigger, old=state.status)]
        )
        self.desk.enter(tx, ticket, found, actor="mailgate", now=now, reason=f"timer {trigger}")
        self.desk.announce(tx, ticket, found, now=now)
        log.info("timer.fired", ticket=f"#{ticket}", trigger=trigger, status=found.new)
        return 1

    async def round(self, *, failing: bool, stop: asyncio.Event) -> Round:
        """Fire what is due; the next look after ``interval``."""
        await self.run_due()
        return Round()
