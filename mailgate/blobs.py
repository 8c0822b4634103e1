"""Content-addressed files under the data directory: written once, fsync'd, never overwritten."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from mailgate.errors import StorageUnavailable


class BlobStore:
    """Files named by the SHA-256 of their content, in two-level fan-out directories."""

    def __init__(self, root: Path, suffix: str = "") -> None:
        self.root = root
        self.suffix = suffix

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{self.suffix}"

    def put(self, data: bytes, sha256: str | None = None) -> tuple[str, bool]:
        """Store ``data`` durably; returns its hash and whether this call created the file."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        (created,) = self.put_many([(data, digest)])
        return digest, created

    def put_many(self, items: list[tuple[bytes, str]]) -> list[bool]:
        """Store several blobs durably, syncing each directory once; whether each was created."""
        created: list[bool] = []
        directories: set[Path] = set()
        try:
            for data, digest in items:
                target = self.path(digest)
                if target.exists() and target.stat().st_size == len(data):
                    created.append(False)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                    Path(tmp).replace(target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                directories.add(target.parent)
                created.append(True)
            for directory in directories:
                _fsync_dir(directory)
        except OSError as exc:
            for (_, digest), made in zip(items, created, strict=False):
                if made:
                    self.discard(digest)
            raise StorageUnavailable(f"cannot write under {self.root}: {exc.strerror}") from exc
        return created

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except OSError as exc:
            raise StorageUnavailable(f"cannot read blob {sha256}: {exc.strerror}") from exc

    def discard(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
