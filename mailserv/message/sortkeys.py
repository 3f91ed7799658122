"""The values SORT and THREAD compare, computed once when a message enters the store.

Both :mod:`mailserv.message.parse` (from the header) and :mod:`mailserv.message.store` (from
an older record's ENVELOPE) build them with :func:`sort_fields`, so the two agree.
"""

from __future__ import annotations

import re
from typing import TypedDict

from mailserv.message.addresses import Item, Mailbox, display_name, plain_text
from mailserv.message.headers import to_text
from mailserv.message.subject import base_subject, sort_key

MAX_REFERENCES = 64
"""Message IDs kept of one References field: the first and the last ones (a bound on
hostile input; mail software truncates long References the same way)."""

_MSG_ID = re.compile(r"<([^<>]*)>")
_QUOTED_PAIR = re.compile(r"\\(.)")
_STRIP = re.compile(r'[\s"]+')


def message_ids(value: bytes | None) -> list[str]:
    """The valid msg-ids of a header value, normalised: without the angle brackets, quoting
    and whitespace, so ``<"a b"@c>`` and ``<ab@c>`` are the same id (RFC 5256 section 3)."""
    if not value:
        return []
    found = []
    for match in _MSG_ID.finditer(to_text(value)):
        text = _STRIP.sub("", _QUOTED_PAIR.sub(r"\1", match.group(1)))
        left, at, right = text.rpartition("@")
        if at and left and right:
            found.append(text)
    return found


def references_of(references: bytes | None, in_reply_to: bytes | None) -> tuple[str, ...]:
    """A message's references for THREAD=REFERENCES: the References ids, or else the first
    In-Reply-To id (RFC 5256 section 3, step 1)."""
    ids = message_ids(references)
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[1 - MAX_REFERENCES :]
    if not ids:
        ids = message_ids(in_reply_to)[:1]
    return tuple(ids)


def first_mailbox(items: list[Item] | None) -> Mailbox | None:
    """The first address of a list as ENVELOPE lists it (a group: its name as mailbox)."""
    if not items:
        return None
    item = items[0]
    if isinstance(item[1], list):
        return (None, None, item[0], None)
    return item  # type: ignore[return-value]


def address_keys(mailbox: Mailbox | None) -> tuple[str, str]:
    """``(addr-mailbox, display)`` of an address as SORT FROM/TO/CC (RFC 5256) and
    DISPLAYFROM/DISPLAYTO (RFC 5957) compare them; the display is the decoded display name,
    or the address when there is none.  ``('', '')`` for no address."""
    if mailbox is None:
        return "", ""
    name, _adl, local, host = mailbox
    address = plain_text(local)
    display = display_name(name) or (f"{address}@{plain_text(host)}" if host else address)
    return sort_key(address), sort_key(display)


class SortFields(TypedDict):
    """The SORT/THREAD fields of :class:`mailserv.message.info.MessageInfo`, by name."""

    message_id: str
    references: tuple[str, ...]
    base_subject: str
    reply: bool
    sort_from: str
    sort_to: str
    sort_cc: str
    display_from: str
    display_to: str


def sort_fields(
    subject: str,
    message_id: bytes | None,
    references: bytes | None,
    in_reply_to: bytes | None,
    from_: Mailbox | None,
    to: Mailbox | None,
    cc: Mailbox | None,
) -> SortFields:
    """The SORT/THREAD fields of a message.

    ``subject`` is the decoded Subject ('' when absent); the others are raw header values
    and the first address of From, To and Cc.
    """
    base, reply = base_subject(subject)
    ids = message_ids(message_id)
    sort_from, display_from = address_keys(from_)
    sort_to, display_to = address_keys(to)
    return SortFields(
        message_id=ids[0] if ids else "",
        references=references_of(references, in_reply_to),
        base_subject=sort_key(base),
        reply=reply,
        sort_from=sort_from,
        sort_to=sort_to,
        sort_cc=address_keys(cc)[0],
        display_from=display_from,
        display_to=display_to,
    )
