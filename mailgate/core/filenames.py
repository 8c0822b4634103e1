"""Make an attachment's filename safe to show, store as metadata and offer for download.

Attachment bytes are stored under their SHA-256, never under the name a sender
chose, so no filename reaches a filesystem path. The name is still cleaned,
because it is shown to agents and offered back to browsers and mail clients:
no directories, no control characters or NUL bytes, no bidi controls or zero-width
characters (which make a name look like another), no characters Windows
forbids, no reserved device names (``con.txt``), no hidden dot-files, and a
bounded length that keeps the extension.
"""

from __future__ import annotations

import re
import unicodedata

MAX_FILENAME_BYTES = 180
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f-\x9f<>:"/\\|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)

# A small table rather than the mimetypes module, which reads system files.
EXTENSIONS: dict[str, str] = {
    "text/plain": ".txt",
    "text/html": ".html.txt",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/octet-stream": ".bin",
    "application/msword": ".doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel": ".xls",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
}


def _truncate(stem: str, extension: str) -> str:
    budget = MAX_FILENAME_BYTES - len(extension.encode())
    encoded = stem.encode()[: max(budget, 1)]
    return encoded.decode("utf-8", "ignore") + extension


def safe_filename(name: str | None, content_type: str, index: int) -> str:
    """A harmless filename for attachment number ``index`` of type ``content_type``."""
    text = unicodedata.normalize("NFC", name or "")
    # Invisible characters that change what a name shows: bidi controls turn
    # "invoice\u202efdp.exe" into "invoiceexe.pdf" on screen; zero-width ones hide a
    # difference. Every format character (Unicode category Cf) goes.
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = re.split(r"[/\\]", text)[-1]  # basename, for both path conventions
    text = _FORBIDDEN.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    if _WINDOWS_RESERVED.match(text):
        text = f"_{text}"
    if not text.strip("_ "):
        text = f"attachment-{index}{EXTENSIONS.get(content_type, '.bin')}"
    stem, dot, extension = text.rpartition(".")
    if dot and stem and len(extension) <= 16:
        return _truncate(stem, f".{extension}")
    return _truncate(text, "")
