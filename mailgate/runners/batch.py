"""A batch of spool items: cut by count and bytes, gathered, and split into independent lanes.

For the worker (``runners.worker``): which mails go together; the gather step, which
parses them and stores their bytes before any transaction opens; and which of a
batch's mails share nothing (no ticket, Message-ID, mailbox or domain cap) so that
they may be applied side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import structlog

from mailgate.core.model import SpoolEntry
from mailgate.errors import MailgateError, StorageUnavailable
from mailgate.store.blobs import BlobStore
from mailgate.store.db import Blocking, storage_errors
from mailgate.store.repos.spool import SpoolRepo
from mailgate.tickets.prepare import Prepared, Preparer

T = TypeVar("T")
log = structlog.get_logger("mailgate.runners.worker")
# The raw bytes one batch may hold in memory at once (a larger mail is a batch alone):
# parsed, a mail costs a few times its size, so this bounds the worker's share of RSS.
BATCH_BYTES = 16 * 1024 * 1024
# The next batch is gathered ahead only when it is no larger than this: two large
# batches in memory at once would double the worker's share of RSS.
AHEAD_BYTES = 4 * 1024 * 1024
CLAIMS = "claims"  # the session on which a worker's claims are held (PostgreSQL)


@asynccontextmanager
async def due_mails(
    blocking: Blocking,
    now: datetime,
    limit: int,
    *,
    claiming: bool,
) -> AsyncIterator[list[tuple[int, int]]]:
    """(id, size) of the oldest mails due at ``now``, up to ``limit``.
    ``claiming`` (many writers: PostgreSQL): their senders claimed for the block
    (``SpoolRepo.claim_due``), so that no other worker gathers them for nothing, and let
    go after it."""
    with storage_errors("list due"):
        if claiming:
            due = await blocking.in_session(
                lambda conn: SpoolRepo(conn).claim_due(now, limit), CLAIMS
            )
        else:
            due = await blocking.read(lambda conn: SpoolRepo(conn).due_sizes(now, limit))
    try:
        yield due
    finally:
        if claiming and due:
            # (a session that failed is gone, and its claims with it)
            with contextlib.suppress(MailgateError), storage_errors("release claims"):
                await blocking.in_session(lambda conn: SpoolRepo(conn).release_claims(), CLAIMS)


@dataclass(frozen=True, slots=True)
class Failed:
    """A mail that could not be applied: quarantined (or deferred, if temporary) later."""

    entry: SpoolEntry
    error: BaseException
    trace: str  # its traceback, for the quarantine


@dataclass(frozen=True, slots=True)
class Gathered:
    """A batch after the gather step."""

    ready: list[Prepared]
    failed: list[Failed]
    blobs: dict[int, dict[str, bytes]]  # spool id → bytes for the database's blob table
    seconds: dict[int, float]  # spool id → CPU work so far
    # The blob stores' writes of the batch's files, under way (``BlobStore.put_many_soon``).
    writing: tuple[Future[list[bool]], ...] = ()

    def joined(self, other: Gathered) -> Gathered:
        """This batch's mails, then ``other``'s."""
        return Gathered(
            [*self.ready, *other.ready],
            [*self.failed, *other.failed],
            {**self.blobs, **other.blobs},
            {**self.seconds, **other.seconds},
            (*self.writing, *other.writing),
        )

    def without(self, reached: set[int]) -> Gathered | None:
        """The mails not in ``reached`` (spool ids), ready to apply; None when none is."""
        left = [item for item in self.ready if item.entry.id not in reached]
        return Gathered(left, [], self.blobs, self.seconds, self.writing) if left else None

    async def written(self) -> None:
        """``durable``, awaited."""
        await asyncio.gather(*(asyncio.wrap_future(w) for w in self.writing))

    def durable(self) -> None:
        """Wait until the batch's files are durable; ``StorageUnavailable`` if they cannot
        be. Rows that name them commit only after this."""
        for writing in self.writing:
            writing.result()


def batches(
    due: list[tuple[int, int]], count: int, size: int = BATCH_BYTES, first: int | None = None
) -> list[list[int]]:
    """The ids of ``due`` ((id, bytes) pairs, in order) cut into batches of at most
    ``count`` mails and ``size`` bytes; a mail larger than ``size`` is a batch alone.
    ``first``: the first batch has at most that many mails (it is applied sooner, while
    the next is gathered)."""
    found: list[list[int]] = []
    batch: list[int] = []
    held = 0
    for spool_id, length in due:
        limit = count if found or first is None else min(first, count)
        if batch and (len(batch) == limit or held + length > size):
            found.append(batch)
            batch, held = [], 0
        batch.append(spool_id)
        held += length
    if batch:
        found.append(batch)
    return found


def lanes(items: Sequence[T], keys: Callable[[T], Iterable[str]], count: int) -> list[list[T]]:
    """``items`` in at most ``count`` lanes such that items that share a key are in one
    lane, in their order: the groups of items linked by shared keys, largest first, each
    to the lane that holds the fewest so far. Empty lanes are left out."""
    if count <= 1:  # one lane (SQLite): no keys to look at
        return [list(items)] if items else []
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}  # key -> the first item that has it
    for i, item in enumerate(items):
        for key in keys(item):
            parent[root(i)] = root(first.setdefault(key, i))
    groups: dict[int, list[int]] = {}
    for i in range(len(items)):
        groups.setdefault(root(i), []).append(i)
    loads: list[list[int]] = [[] for _ in range(max(count, 1))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(loads, key=len).extend(group)
    return [[items[i] for i in sorted(lane)] for lane in loads if lane]


def understand(
    loaded: list[tuple[SpoolEntry, bytes | None]],
    preparer: Preparer,
    raw_store: BlobStore | None,
    attachments: BlobStore | None,
) -> Gathered:
    """The gather step, on a thread with no transaction open: parse and understand each
    mail, and begin writing the raw bytes and attachments that are files to the blob stores
    (``raw_store`` None: raw mails stay in the database; ``attachments`` None: attachments
    go into it; so does a blob too small for its store: ``BlobStore.holds``)."""
    raws, unread = with_raw(loaded, raw_store)
    parsed = prepare_all(raws, preparer)
    return stored(parsed.joined(unread), loaded, raw_store, attachments)


def with_raw(
    loaded: list[tuple[SpoolEntry, bytes | None]], raw_store: BlobStore | None
) -> tuple[list[tuple[SpoolEntry, bytes, bool]], Gathered]:
    """Each mail with its raw bytes (from the spool row, else the blob store) and whether
    they move from the spool row into the blob store (a raw mail the store ``holds``); the
    mails whose bytes could not be read, failed."""
    raws: list[tuple[SpoolEntry, bytes, bool]] = []
    failed: list[Failed] = []
    for entry, spooled in loaded:
        try:
            raw = spooled if spooled is not None else _raw_of(entry, raw_store)
        except Exception as exc:  # the blob store failing, or the file gone
            failed.append(failure(entry, exc))
            continue
        moves = spooled is not None and raw_store is not None and raw_store.holds(len(raw))
        raws.append((entry, raw, moves))
    return raws, Gathered([], failed, {}, {})


def prepare_all(raws: Sequence[tuple[SpoolEntry, bytes, bool]], preparer: Preparer) -> Gathered:
    """The CPU work of the gather step, no I/O: each mail parsed and understood (in the
    daemon's thread, or in a parsing process: ``runners.parsing``); a mail whose bytes move
    into the blob store (``with_raw``) drops the spool row's once it is applied."""
    ready: list[Prepared] = []
    failed: list[Failed] = []
    seconds: dict[int, float] = {}
    for entry, raw, moves in raws:
        started = time.perf_counter()
        try:
            item = preparer.prepare(entry, raw, drop_raw=moves)
        except Exception as exc:  # a bug of ours
            failed.append(failure(entry, exc))
            continue
        log.debug(
            "mail.parsed",
            spool_id=entry.id,
            parser=item.mail.parser,
            defects=len(item.mail.defects),
            attachments=len(item.mail.attachments),
        )
        ready.append(item)
        seconds[entry.id] = time.perf_counter() - started
    return Gathered(ready, failed, {}, seconds)


def stored(
    parsed: Gathered,
    loaded: list[tuple[SpoolEntry, bytes | None]],
    raw_store: BlobStore | None,
    attachments: BlobStore | None,
) -> Gathered:
    """``parsed`` with its bytes on their way: the raw mails that move out of their spool
    rows and the attachments the store ``holds`` go into the blob stores, one durable write
    per store for the whole batch, begun here and waited for before the batch commits
    (``Gathered.durable``); the other attachments into the database's blob table with the
    mail (a raw mail that does not move stays in its spool row)."""
    spooled = {entry.id: raw for entry, raw in loaded if raw is not None}
    raws: list[tuple[bytes, str]] = []  # raw mails to move into the blob store
    files: list[tuple[bytes, str]] = []  # attachments
    in_database: dict[int, dict[str, bytes]] = {}
    for item in parsed.ready:
        entry = item.entry
        if item.drop_raw:
            raws.append((spooled[entry.id], entry.raw_sha256))
        kept: dict[str, bytes] = {}
        for a in item.mail.attachments:
            if attachments is not None and attachments.holds(len(a.data)):
                files.append((a.data, a.sha256))
            else:
                kept[a.sha256] = a.data
        if kept:
            in_database[entry.id] = kept
    writing = []
    if raws and raw_store is not None:
        writing.append(raw_store.put_many_soon(raws))
    if files and attachments is not None:
        writing.append(attachments.put_many_soon(files))
    return Gathered(parsed.ready, parsed.failed, in_database, parsed.seconds, tuple(writing))


def failure(entry: SpoolEntry, exc: BaseException) -> Failed:
    """``exc`` as a failed mail, its traceback kept as text (it may cross a process)."""
    return Failed(entry, exc, "".join(traceback.format_exception(exc)))


def _raw_of(entry: SpoolEntry, raw_store: BlobStore | None) -> bytes:
    if raw_store is None:
        raise StorageUnavailable(f"raw mail of spool item {entry.id} not in the database")
    return raw_store.get(entry.raw_sha256)
