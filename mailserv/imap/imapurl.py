"""IMAP URLs (RFC 5092) that name a message or a part of one in the signed-in user's own
mailboxes, as CATENATE (RFC 4469) uses them: ``/INBOX;UIDVALIDITY=385759045/;UID=20``,
optionally followed by ``/;SECTION=1.2.MIME`` and ``/;PARTIAL=0.1024``, or the same path
after ``imap://user@host`` naming the same user.

:func:`resolve` reads the octets the URL names without setting ``\\Seen``; any URL it cannot
serve (another user, URLAUTH, a mailbox shared without the read right, a stale UIDVALIDITY,
no such message or section) is
:class:`BadUrl`, which APPEND answers with ``NO [BADURL url]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, unquote_to_bytes

from mailserv import errors
from mailserv.imap.fetchatt import BodySection, parse_fetch_item
from mailserv.imap.replies import No
from mailserv.imap.shared import SharedAccount
from mailserv.message.sections import find_part, section_bytes
from mailserv.syntax.errors import ParseError

if TYPE_CHECKING:
    from mailserv.interfaces import IAccount

_NUMBER = r"[1-9][0-9]{0,9}"
_URL = re.compile(
    r"(?:imap://(?P<user>[^@/;]+)(?:;[^@/]*)?@[^/]+)?"
    r"/(?P<mailbox>[^;?#]+)"
    rf"(?:;UIDVALIDITY=(?P<validity>{_NUMBER}))?"
    rf"/;UID=(?P<uid>{_NUMBER})"
    r"(?:/;SECTION=(?P<section>[^/;?#]+))?"
    rf"(?:/;PARTIAL=(?P<origin>0|{_NUMBER})(?:\.(?P<length>{_NUMBER}))?)?",
    re.IGNORECASE,
)


class BadUrl(Exception):
    """The URL names nothing this session may read."""


@dataclass(frozen=True, slots=True)
class MessageUrl:
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: BodySection | None
    partial: tuple[int, int | None] | None


def parse(url: str, user: str) -> MessageUrl:
    """The URL's parts; BadUrl for a URL of another form or of another user."""
    match = _URL.fullmatch(url)
    if match is None:
        raise BadUrl("not a message URL of this server")
    owner = match.group("user")
    if owner is not None and unquote(owner) != user:
        raise BadUrl("a URL of another user")
    section = None
    if match.group("section") is not None:
        spec = unquote_to_bytes(match.group("section")).decode("ascii", "replace")
        try:
            item = parse_fetch_item(f"BODY.PEEK[{spec}]")
        except ParseError as exc:
            raise BadUrl(f"bad SECTION: {exc}") from None
        assert isinstance(item, BodySection)
        section = item
    partial = None
    if match.group("origin") is not None:
        length = match.group("length")
        partial = (int(match.group("origin")), None if length is None else int(length))
    validity = match.group("validity")
    return MessageUrl(
        unquote(match.group("mailbox")),
        None if validity is None else int(validity),
        int(match.group("uid")),
        section,
        partial,
    )


async def resolve(account: IAccount, url: MessageUrl) -> bytes:
    """The octets ``url`` names, read from ``account``; BadUrl when there are none, or when
    they are in another user's mailbox the user may not read (RFC 4314: ``r``)."""
    try:
        if isinstance(account, SharedAccount):
            await account.require(url.mailbox, "r", "A URL into it")
        box = await account.open(url.mailbox)
    except (errors.MailboxNotFound, errors.MailboxNotSelectable, errors.InvalidMailboxName):
        raise BadUrl("no such mailbox") from None
    except No as exc:
        raise BadUrl(exc.text) from None
    if url.uidvalidity is not None and (await box.status()).uidvalidity != url.uidvalidity:
        raise BadUrl("the mailbox's UIDVALIDITY changed")
    metas = await box.fetch([url.uid])
    if not metas:
        raise BadUrl("no such message")
    try:
        raw = await box.content(url.uid)
    except KeyError:
        raise BadUrl("no such message") from None
    data = raw
    if url.section is not None:
        wanted, info = url.section, metas[0].info
        if find_part(info, wanted.part) is None:
            raise BadUrl("no such section")
        data = section_bytes(raw, info, wanted.part, wanted.text, wanted.fields)
    if url.partial is not None:
        origin, length = url.partial
        data = data[origin:] if length is None else data[origin : origin + length]
    return data
