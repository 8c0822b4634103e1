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
        target = self.path(digest)
        try:
            if target.exists() and target.stat().st_size == len(data):
                return digest, False
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
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {target.parent}: {exc.strerror}") from exc
        return digest, True

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
