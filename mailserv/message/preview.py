"""The preview of a message (RFC 8970): a short plain-text excerpt of its first text part,
computed once when the message enters the store.

The first ``text/plain`` part is taken (in a ``multipart/alternative``, the plain
alternative before the HTML one); without one, the first ``text/html`` part with its markup
removed.  Quoted lines (``>``) are left out, white space is collapsed, and the result is cut
to :data:`LENGTH` characters.  Only the first :data:`READ_LIMIT` octets of the part are
decoded, so a huge body costs no more than a small one.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace

from mailserv.message.info import MessageInfo, Part
from mailserv.message.text import decode_part

LENGTH = 200
"""Characters kept; RFC 8970 allows at most 256."""
READ_LIMIT = 16384
"""Octets of the chosen part that are decoded."""

_SKIPPED = re.compile(r"<(script|style|head)\b.*?(</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<(br|/p|/div|/tr|/li|/h[1-6])\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>|<!--.*?-->", re.DOTALL)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def make_preview(raw: bytes, info: MessageInfo) -> str:
    """The preview text of the message ``raw`` parsed as ``info`` ('' when it has no text)."""
    part = _first(info.root, "text/plain") or _first(info.root, "text/html")
    if part is None:
        return ""
    cut = replace(part, end=min(part.end, part.body_start + READ_LIMIT))
    try:
        text = decode_part(raw, cut)
    except (ValueError, LookupError):
        return ""
    if part.content_type == "text/html":
        text = _SKIPPED.sub(" ", text)
        text = html.unescape(_TAG.sub(" ", _BREAKS.sub("\n", text)))
    lines = (line for line in text.splitlines() if not line.lstrip().startswith(">"))
    flat = _SPACE.sub(" ", _CONTROL.sub(" ", " ".join(lines))).strip()
    return flat[:LENGTH].rstrip()


def _first(part: Part, content_type: str) -> Part | None:
    """The first leaf of that type, depth first; attached messages are not looked into."""
    if part.content_type == content_type:
        return part
    for child in part.parts:
        found = _first(child, content_type)
        if found is not None:
            return found
    return None
