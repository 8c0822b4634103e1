"""SQLite's upkeep on a thread of its own: checkpoints, and the search index's merges.

In WAL mode a commit appends the pages it changed to the log (``-wal``); a checkpoint
copies them into the database file and fsyncs it. By default the connection whose
commit takes the log past 1,000 pages does that itself, inside its commit: a mail's
acknowledgement (the intake commits on the event loop's thread) or the worker's batch
then waits for a thousand page copies and an fsync of the whole database file. And
the larger the database, the more distinct pages a batch changes (indexes of years of
tickets), the larger that wait.

Here a thread with its own connection checkpoints instead (``PASSIVE``: it never blocks
a reader or the writer), woken by the commits of the engines it watches, at most once
every ``GAP`` seconds, so that pages changed by several commits meanwhile are copied
once. Every connection mailgate opens only checkpoints itself past ``BACKSTOP`` pages
(a process without this thread, such as a CLI command, or this thread falling behind).
See docs/decisions/0025-checkpoints-on-their-own-thread.md.

The same thread merges the search index's segments, which the writes leave to it
(store/search.py ``merge_some``): once a second has passed without a commit of ours
after one, in short steps (each a write transaction of its own), until there is no more
work or the next commit comes. A step never waits for the write lock: another writer
means the moment is not quiet. See docs/decisions/0026-search-merges-when-quiet.md.
"""

from __future__ import annotations

import sqlite3
import threading

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mailgate.store.search import merge_some

log = structlog.get_logger("mailgate.store.checkpoints")

BACKSTOP = 10_000  # pages (40 MB of log) past which a committing connection checkpoints
GAP = 1.0  # seconds at least between two checkpoints of the thread
IDLE = 60.0  # seconds: a checkpoint without a commit of ours (another process's)


class Checkpointer:
    """Checkpoints one SQLite file's log on a thread, woken by ``watch``ed engines' commits."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.checkpoints = 0  # done so far
        self.merges = 0  # merge steps of the search index that found work
        self._unmerged = False  # commits since the index was last merged completely
        self.last: tuple[int, int, int] | None = None  # (busy, log pages, copied pages)
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def watch(self, engine: Engine) -> None:
        """Wake the thread after each commit on ``engine``."""
        event.listen(engine, "commit", lambda _conn: self.poke())

    def poke(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="mailgate-checkpoints", daemon=True
                    )
                    self._thread.start()
        self._poked.set()

    def close(self) -> None:
        """Stop the thread (the last connection's close checkpoints what is left)."""
        self._stopping.set()
        self._poked.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.is_set():
                poked = self._poked.wait(IDLE)
                self._poked.clear()
                if self._stopping.is_set():
                    break
                self._unmerged = self._unmerged or poked
                conn = self._checkpoint(conn)
                self._stopping.wait(GAP)  # the commits meanwhile: their pages copied once
                if self._unmerged and not self._poked.is_set():  # a second without one
                    conn = self._merge(conn)
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """One checkpoint, on ``conn`` or a new connection; the connection to use next (None
        after a failure, e.g. a file that cannot be opened: the next commit's poke retries)."""
        try:
            conn = conn or self._connect()
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("database.checkpoint_failed", path=self.path, error=str(exc))
            if conn is not None:
                conn.close()
            return None
        self.last = (int(row[0]), int(row[1]), int(row[2]))
        self.checkpoints += 1
        return conn

    def _merge(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Merge steps of the search index until it is merged, a commit of ours comes or
        we stop; the connection to use next."""
        try:
            conn = conn or self._connect()
            while not self._poked.is_set() and not self._stopping.is_set():
                if not merge_some(conn):
                    self._unmerged = False
                    break
                self.merges += 1
        except sqlite3.Error as exc:  # another writer (busy): at the next quiet moment
            log.debug("database.search_merge_deferred", path=self.path, error=str(exc))
            return conn
        return self._checkpoint(conn)  # the merged pages into the file

    def _connect(self) -> sqlite3.Connection:
        # No busy timeout: a PASSIVE checkpoint never waits for a lock, and a merge step
        # that would wait for the write lock is not in a quiet moment.
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
