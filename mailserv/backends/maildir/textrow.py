"""What SEARCH looks at in one message, made once when the message enters the index.

The texts are the ones the engine's evaluator (``mailserv.search.evaluate``) compares
with a needle, case-folded the same way, so that a substring test on them gives the scan's
answer exactly: the header fields kept in ``MessageInfo`` (FROM/TO/CC/BCC/SUBJECT, and the
first line of the address fields for HEADER), the calendar day of the Date: header, and
the decoded header and body (``mailserv.message.text``) for TEXT and BODY.

Plain tuples of bytes, ints and strings, so that the parse helpers (``bulk``) can send them
back with ``marshal``.  This module imports no Twisted: the helpers import it.
"""

from __future__ import annotations

from mailserv.message import text
from mailserv.message.addresses import raw_search_line
from mailserv.message.info import MessageInfo

FIELDS = ("from_", "to", "cc", "bcc", "subject")
"""``MessageInfo`` attributes FROM, TO, CC, BCC and SUBJECT search (in this order)."""
ADDRESS_FIELDS = FIELDS[:4]
"""Those whose first line alone is what HEADER From/To/Cc/Bcc search."""

TextRow = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes, int | None, str, str]
"""from_, to, cc, bcc, subject, then the first lines of from_, to, cc, bcc (each case-folded,
UTF-8 with surrogates kept), the Date: header's day (``date.toordinal()``, None when there
is none), the case-folded decoded header, the case-folded decoded body."""


def blob(value: str) -> bytes:
    """Text as the index compares it bytewise (lone surrogates kept, so nothing is lost)."""
    return value.encode("utf-8", "surrogatepass")


def text_row(raw: bytes, info: MessageInfo) -> TextRow:
    """The row of a message (``raw`` with CRLF line ends, as ``content`` returns it)."""
    values = [getattr(info, name).casefold() for name in FIELDS]
    lines = [raw_search_line(value) for value in values[:4]]
    sent = info.sent.date().toordinal() if info.sent is not None else None
    header = text.folded_header(raw, info)
    body = text.folded_body(raw, info)
    return (*(blob(v) for v in values), *(blob(v) for v in lines), sent, header, body)  # type: ignore[return-value]
