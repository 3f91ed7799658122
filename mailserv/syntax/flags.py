"""Message flags: system flags in their canonical case, keywords as the grammar allows them
(RFC 3501 section 2.3.2, ``flag`` in section 9)."""

from __future__ import annotations

import re

from mailserv.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, RECENT, SEEN
from mailserv.syntax.errors import ParseError

_KEYWORD = re.compile(r"[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
SYSTEM_FLAGS = {name.lower(): name for name in (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, RECENT)}
"""Lower-cased system flag → its canonical spelling (``\\seen`` → ``\\Seen``)."""


def flag(text: str) -> str:
    """One flag: a system flag in canonical case, or a keyword as sent."""
    if text.startswith("\\"):
        canonical = SYSTEM_FLAGS.get(text.lower())
        if canonical is None:
            raise ParseError(None, f"Unknown system flag {text[:40]}")
        return canonical
    if not is_keyword(text):
        raise ParseError(None, f"Invalid flag keyword {text[:40]!r}")
    return text


def is_keyword(text: str) -> bool:
    """Whether ``text`` is a flag keyword (an atom: ASCII, no special characters)."""
    return _KEYWORD.fullmatch(text) is not None
