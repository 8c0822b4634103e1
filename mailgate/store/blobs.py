"""Content-addressed blobs: raw mails and attachments by their SHA-256.

Files under the data directory (written once, fsync'd, never
overwritten), or rows of the database when several machines share no disk."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from mailgate.errors import StorageUnavailable
from mailgate.store.files import fsync_dir, private_dir


class BlobStore:
    """Files named by the SHA-256 of their content, in two-level fan-out directories."""

    def __init__(self, root: Path, suffix: str = "") -> None:
        self.root = root
        self.suffix = suffix
        self._pool: ThreadPoolExecutor | None = None

    def _flusher(self) -> ThreadPoolExecutor:
        """Threads that fsync the files of one batch side by side."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mailgate-fsync")
        return self._pool

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{self.suffix}"

    def put(self, data: bytes, sha256: str | None = None) -> tuple[str, bool]:
        """Store ``data`` durably; returns its hash and whether this call created the file."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        (created,) = self.put_many([(data, digest)])
        return digest, created

    def put_many(self, items: list[tuple[bytes, str]]) -> list[bool]:
        """Store several blobs durably; whether each was created.

        All files are written first, then fsync'd in parallel, renamed into
        place, and their directories fsync'd in parallel: a batch costs about
        one disk flush instead of two per file.
        """
        created: list[bool] = []
        pending: list[tuple[int, str, Path]] = []  # (fd, temporary path, target)
        try:
            for data, digest in items:
                target = self.path(digest)
                if target.exists() and target.stat().st_size == len(data):
                    created.append(False)
                    continue
                if any(t == target for _, _, t in pending):
                    created.append(False)  # the same content twice in one batch
                    continue
                private_dir(target.parent)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
                pending.append((fd, tmp, target))
                _write_all(fd, data)
                created.append(True)
            list(self._flusher().map(lambda entry: os.fsync(entry[0]), pending))
            for fd, tmp, target in pending:
                os.close(fd)
                Path(tmp).replace(target)
            list(self._flusher().map(fsync_dir, {target.parent for _, _, target in pending}))
        except OSError as exc:
            for fd, tmp, target in pending:
                with contextlib.suppress(OSError):
                    os.close(fd)
                Path(tmp).unlink(missing_ok=True)
                target.unlink(missing_ok=True)
            raise StorageUnavailable(f"cannot write under {self.root}: {exc.strerror}") from exc
        return created

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except OSError as exc:
            raise StorageUnavailable(f"cannot read blob {sha256}: {exc.strerror}") from exc

    def discard(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Attachments(Protocol):
    """Where attachment bytes go, by their SHA-256."""

    async def put(self, data: bytes, sha256: str) -> None: ...


class FileAttachments:
    """Attachments as files of a BlobStore, written on a worker thread."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    async def put(self, data: bytes, sha256: str) -> None:
        import asyncio

        await asyncio.to_thread(self.store.put, data, sha256)


class DatabaseAttachments:
    """Attachments as rows of the ``blobs`` table: what every instance can read."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put(self, data: bytes, sha256: str) -> None:
        from mailgate.store.db import session, storage_errors
        from mailgate.store.repos import Repo

        with storage_errors("store attachment"):
            async with session(self.engine, write=True) as s:
                await Repo(s).blob_put(sha256, data)
