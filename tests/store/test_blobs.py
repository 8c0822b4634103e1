from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mailgate.errors import StorageUnavailable
from mailgate.store.blobs import BlobStore, blob_stores


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


def test_a_store_holds_blobs_from_its_threshold_on_and_none_in_database_mode(
    tmp_path: Path,
) -> None:
    raw, attachments = blob_stores(tmp_path / "s", tmp_path / "a", in_database=False, smallest=10)
    assert raw is not None and attachments is not None
    assert raw.path("ab" * 32).name.endswith(".eml") and raw.root == tmp_path / "s"
    assert [attachments.holds(n) for n in (0, 9, 10, 11)] == [False, False, True, True]
    assert BlobStore(tmp_path).holds(0)  # no threshold: every blob is a file
    assert blob_stores(tmp_path, tmp_path, in_database=True, smallest=10) == (None, None)
