"""Content-addressed blobs: raw mails and attachments by their SHA-256.

Files under the data directory (written once, fsync'd, never overwritten) for the
blobs of at least ``[general] files_from`` bytes; smaller ones, and all of them when
several machines share no disk (``blobs = "database"``), are rows of the database.
See docs/decisions/0024-small-blobs-in-the-database.md."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mailgate.errors import StorageUnavailable
from mailgate.store.files import fsync_dir, private_dir


class BlobStore:
    """Files named by the SHA-256 of their content, in two-level fan-out directories."""

    def __init__(self, root: Path, suffix: str = "", smallest: int = 0) -> None:
        self.root = root
        self.suffix = suffix
        self.smallest = smallest  # smaller blobs are the database's (``holds``)
        self._writer: ThreadPoolExecutor | None = None
        self._folders: set[Path] = set()  # fan-out directories known to exist, private
        self._tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._calls = itertools.count()

    def holds(self, size: int) -> bool:
        """Whether a blob of ``size`` bytes is kept here (else in the database): a file
        costs its creation, an fsync and its directory's whatever its size, which weighs
        on small blobs only."""
        return size >= self.smallest

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{self.suffix}"

    def put(self, data: bytes, sha256: str | None = None) -> tuple[str, bool]:
        """Store ``data`` durably; returns its hash and whether this call created the file."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        (created,) = self.put_many([(data, digest)])
        return digest, created

    def put_many(self, items: list[tuple[bytes, str]]) -> list[bool]:
        """Store several blobs durably; whether each was created.

        All files are written first, then fsync'd, renamed into place, and their
        directories fsync'd: the disk flushes of a batch come together. One thread
        does it (``put_many_soon``: beside the batch's application), no thread per file.
        """
        created: list[bool] = []
        pending: list[tuple[int, Path, Path]] = []  # (fd, temporary path, target)
        seen: set[str] = set()  # the same content twice in one batch is written once
        try:
            for data, digest in items:
                folder = self.root / digest[:2]
                target = folder / f"{digest}{self.suffix}"
                if digest in seen or _has(target, len(data)):
                    created.append(False)
                    continue
                seen.add(digest)
                if folder not in self._folders:
                    private_dir(folder)
                    self._folders.add(folder)
                # Unique to this process and call (O_EXCL: never another's file).
                tmp = folder / f".tmp-{digest[:16]}-{self._tag}-{next(self._calls)}"
                fd = os.open(tmp, _CREATE, 0o600)
                pending.append((fd, tmp, target))
                _write_all(fd, data)
                created.append(True)
            for fd, _, _ in pending:
                os.fsync(fd)
            for fd, tmp, target in pending:
                os.close(fd)
                tmp.replace(target)
            for folder in {target.parent for _, _, target in pending}:
                fsync_dir(folder)
        except OSError as exc:
            self._folders.clear()  # a directory may have gone: made again next time
            for fd, tmp, target in pending:
                with contextlib.suppress(OSError):
                    os.close(fd)
                tmp.unlink(missing_ok=True)
                target.unlink(missing_ok=True)
            raise StorageUnavailable(f"cannot write under {self.root}: {exc.strerror}") from exc
        return created

    def put_many_soon(self, items: list[tuple[bytes, str]]) -> Future[list[bool]]:
        """``put_many`` on this store's writing thread: the caller goes on (the worker
        applies the batch) and waits for the result before it commits rows naming the
        blobs. One thread: batches are written in the order they come."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailgate-blobs")
        return self._writer.submit(self.put_many, items)

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except OSError as exc:
            raise StorageUnavailable(f"cannot read blob {sha256}: {exc.strerror}") from exc

    def discard(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


def blob_stores(
    spool_dir: Path, attachment_dir: Path, *, in_database: bool, smallest: int
) -> tuple[BlobStore | None, BlobStore | None]:
    """The stores of raw mails and of attachments (``[general] blobs`` and ``files_from``);
    None for both when every blob is the database's."""
    if in_database:
        return None, None
    return BlobStore(spool_dir, ".eml", smallest), BlobStore(attachment_dir, "", smallest)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _has(path: Path, size: int) -> bool:
    """Whether a complete blob of ``size`` bytes is at ``path`` already."""
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
