"""RFC 8474 object ids computed from a message: EMAILID and THREADID.

Both are hashes, so they need no counter kept anywhere and come out the same in every
mailbox and backend: ``email_id`` of the message's bytes (a copy or a move keeps it; the
same bytes appended twice share it, as RFC 8474 5.1 allows), ``thread_id`` of the
Message-ID at the root of the message's thread (the first of its references, else its own),
so a reply shares its parent's.  Ids are ``[A-Za-z0-9_-]``, 1 to 255 characters.
"""

from __future__ import annotations

import hashlib
import re
from base64 import urlsafe_b64encode

from mailserv.message.info import MessageInfo

OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
"""RFC 8474 ``objectid``: what every MAILBOXID, EMAILID and THREADID matches (fullmatch)."""

_DIGEST = 18
"""Bytes of SHA-256 kept: 144 bits, 24 characters of URL-safe base64 (no padding)."""


def _token(prefix: str, data: bytes) -> str:
    return prefix + urlsafe_b64encode(hashlib.sha256(data).digest()[:_DIGEST]).decode("ascii")


def email_id(raw: bytes) -> str:
    """The EMAILID of the message ``raw``."""
    return _token("M", raw)


def thread_id(info: MessageInfo) -> str | None:
    """The THREADID of a message: the one its store was given (``info.threadid``), else
    derived; None (NIL) when it has neither references nor Message-ID."""
    if info.threadid is not None:
        return info.threadid or None
    root = info.references[0] if info.references else info.message_id
    if not root:
        return None
    return _token("T", root.encode("utf-8", "surrogateescape"))
