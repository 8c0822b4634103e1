"""Benchmark: the web desk's ticket list on a big database (PostgreSQL, 1,000,000 tickets).

Fills the history of bench/scale.py (per ticket 3 messages, a participant, timers, sent
outbox mail, events), then gives the tickets variety: a word of 40 in each title and
in each customer's message, 3 % of them open (support or customer acts), priorities
and types spread. Then times the page the list shows (``store.repos.desk.list_tickets``,
the query the web desk runs, 50 rows) for the team's usual asks, each the median of 5,
after one warm-up. Goal: every filtered, sorted, searched page in <= 200 ms.

The throwaway cluster is given what a server that holds such a desk is given
(``Cluster.tune``: ``shared_buffers`` 1 GB, ``random_page_cost`` 1.1 for data in RAM or
on SSD, ``effective_cache_size`` 4 GB, ``work_mem`` 16 MB); the test suite's defaults
are for small databases.

    .venv/bin/python bench/web.py [--tickets 1000000] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale import SECRET, Cluster, fill

from mailgate.app import build_app
from mailgate.config import parse_config
from mailgate.log import configure
from mailgate.store.repos.desk import TicketQuery, list_tickets
from tests.conftest import config_document

WORDS = [
    *("printer", "factuur", "inloggen", "rooster", "export", "koppeling", "wachtwoord"),
    *("rapport", "agenda", "scanner", "licentie", "backup", "netwerk", "telefoon"),
    *("website", "mailbox", "kassa", "voorraad", "bestelling", "levering", "retour"),
    *("salaris", "verlof", "planning", "offerte", "contract", "storing", "update"),
    *("installatie", "koppelteken", "archief", "dossier", "formulier", "melding"),
    *("toegang", "account", "bijlage", "export2", "import", "synchronisatie"),
]
OPEN = ("open", "in_progress", "waiting_customer")


def vary(n: int) -> list[str]:
    """SQL that gives the filled tickets words, open states, priorities and types."""
    words = "ARRAY[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    pick = f"({words})[1 + (id % {len(WORDS)})]"
    states = "ARRAY['open', 'in_progress', 'waiting_customer']"
    return [
        f"UPDATE tickets SET title = 'Oud ticket ' || id || ' ' || {pick}, "
        f"status = CASE WHEN id % 33 = 0 THEN ({states})[1 + (id / 33) % 3] ELSE status END, "
        "priority = (ARRAY['critical', 'high', 'medium', 'low'])[1 + (id * 7) % 4], "
        "type = (ARRAY['bug', 'question', 'configuration_change', 'feedback'])[1 + (id * 3) % 4], "
        "action_by = CASE WHEN id % 33 = 0 THEN 'support' ELSE action_by END, "
        "sla_solve_due = CASE WHEN id % 33 = 0 THEN now() + (id % 500) * interval '1 hour' END",
        f"UPDATE messages SET visible_text = visible_text || ' ' || "
        f"({words})[1 + ((ticket_id * 7) % {len(WORDS)})] WHERE direction = 'in'",
        "VACUUM ANALYZE",  # as autovacuum leaves a live database: GIN pending lists merged
    ]


ASKS = [
    ("support acts, incidents first", TicketQuery(statuses=OPEN[:2], sort="priority")),
    ("all tickets, last change first", TicketQuery(sort="updated")),
    ("all tickets, page 200", TicketQuery(sort="number", page=200)),
    ("search a word, all tickets", TicketQuery(search="storing", sort="priority")),
    (
        "search a word, support acts, by SLA due",
        TicketQuery(statuses=OPEN[:2], search="factuur", sort="sla"),
    ),
    ("search two words, type bug", TicketQuery(search="oud scanner", type="bug")),
    ("search a requester's address", TicketQuery(search="klant4242@org4242.nl")),
    (
        "requester filter, organisation filter",
        TicketQuery(requester="klant77@org77.nl", organisation="org77.nl"),
    ),
]


async def run(tickets: int, sqlite: bool) -> None:
    cluster = None if sqlite else Cluster()
    if cluster is not None:
        await cluster.tune()
    work = Path(tempfile.mkdtemp(prefix="mailgate-bench-web-"))
    try:
        url = (
            f"sqlite+aiosqlite:///{work / 'm.db'}"
            if cluster is None
            else await cluster.database("web")
        )
        config = parse_config(
            config_document(url, general={"data_dir": "var", "log_level": "error"}),
            name="config.toml",
            base=work,
            environ={"MAILGATE_SECRET": SECRET},
        )
        app = await build_app(config)
        started = time.perf_counter()
        await fill(url, tickets)
        if cluster is not None:
            import asyncpg

            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                for sql in vary(tickets):
                    await conn.execute(sql)
            finally:
                await conn.close()
        print(f"{tickets:,} tickets written in {time.perf_counter() - started:.0f} s")
        print(f"{'page asked for':<44}{'median ms':>10}{'rows':>6}")
        for label, query in ASKS:
            timings = []
            rows = 0
            for attempt in range(6):
                begun = time.perf_counter()
                listed, _ = await app.blocking.read(lambda c, q=query: list_tickets(c, q))
                if attempt:  # the first warms the caches
                    timings.append((time.perf_counter() - begun) * 1000)
                rows = len(listed)
            print(f"{label:<44}{statistics.median(timings):10.1f}{rows:6d}")
        print("goal: every page <= 200 ms")
        await app.close()
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--sqlite", action="store_true", help="on SQLite (words not varied)")
    args = parser.parse_args()
    configure("error", "console")
    asyncio.run(run(args.tickets, args.sqlite))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
