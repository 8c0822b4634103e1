from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mailgate.errors import StorageUnavailable
from mailgate.store.blobs import BlobStore


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_many_writes_each_blob_once_under_its_hash(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, ".eml")
    items = [(b"one", digest(b"one")), (b"two", digest(b"two")), (b"one", digest(b"one"))]
    assert store.put_many(items) == [True, True, False]
    assert store.put_many(items[:1]) == [False]
    assert store.get(digest(b"two")) == b"two"
    assert store.path(digest(b"one")).name == f"{digest(b'one')}.eml"
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "blobs").write_text("a file where the directory should be")
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(StorageUnavailable):
        store.put_many([(b"x", digest(b"x"))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs"]


def test_large_blobs_are_written_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40000  # 10 MB
    store = BlobStore(tmp_path)
    store.put(data)
    assert store.get(digest(data)) == data
