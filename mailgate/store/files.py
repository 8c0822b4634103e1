"""Private files: whatever the umask, what mailgate writes only its own user can read.

The data directory holds every raw mail, attachment and ticket text, and the
secret that signs ticket tokens; the outbox maildir holds every notification.
Directories are created 0700 and files 0600 explicitly, so running mailgate
outside its systemd unit (``UMask=0077``) leaks nothing to other local users.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter: created 0700 with its missing
    parents, and tightened to 0700 if it exists with more."""
    if not path.is_dir():
        path.parent.exists() or private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty with mode 0600 if missing (so a program that opens it later,
    such as SQLite, keeps that mode), and tightened to 0600 if it exists with more. Its
    directory is created private when missing; one that exists is the administrator's
    (``/var/lib``, a shared disk) and keeps its mode."""
    if not path.parent.is_dir():
        private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


def fsync_dir(directory: Path) -> None:
    """Make the names created in (or renamed into) ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
