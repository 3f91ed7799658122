"""LIST and LSUB: RFC 3501's forms and RFC 5258's extended LIST.

The extended form takes selection options before the reference, one pattern or a list of
them, and ``RETURN (...)`` options after: SUBSCRIBED, REMOTE (no remote mailboxes here),
RECURSIVEMATCH, SPECIAL-USE (RFC 6154) to select; SUBSCRIBED, CHILDREN, SPECIAL-USE and
STATUS (RFC 5819's LIST-STATUS; only of the mailboxes the user may read) and MYRIGHTS
(RFC 8440, where the store keeps ACLs) to return.  Which names match is
:func:`mailserv.imap.listing.extended_entries`; the capabilities are offered by
:mod:`mailserv.imap.extensions.list_extended`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv import errors
from mailserv.imap import listing, shared
from mailserv.imap.arguments import UndecodableName, list_pattern, text_atom
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.commands.mailboxes import (
    account_of,
    name_bytes,
    status_items,
    status_line,
)
from mailserv.imap.listing import ListEntry, ListRequest
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import utf8_names
from mailserv.interfaces import NONEXISTENT, NOSELECT
from mailserv.syntax import encode
from mailserv.syntax.tokens import Atom, Command, ParenList, Token

if TYPE_CHECKING:
    from mailserv.imap.session import Session

SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS"})
MAX_PATTERNS = 100
_EMPTY_PATTERN = b'* LIST (\\Noselect) "/" ""\r\n'


def _options(token: Token, allowed: frozenset[str], what: str) -> list[str]:
    if not isinstance(token, ParenList):
        raise Bad(f"Expected a list of {what} options")
    names = [text_atom(item).upper() if isinstance(item, Atom) else "" for item in token.items]
    for name in names:
        if name not in allowed:
            raise Bad(f"Unknown LIST {what} option {name[:40] or '(not an atom)'}")
    return names


def _returns(token: Token, status_items: frozenset[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """RETURN's options; STATUS is followed by its list of items."""
    if not isinstance(token, ParenList):
        raise Bad("RETURN takes a list of options")
    items = list(token.items)
    names: set[str] = set()
    wanted: tuple[str, ...] = ()
    while items:
        name = _options(ParenList((items.pop(0),)), RETURN_OPTIONS, "return")[0]
        names.add(name)
        if name == "STATUS":
            listed = items.pop(0) if items else None
            if not isinstance(listed, ParenList) or not listed.items:
                raise Bad("RETURN STATUS takes a list of STATUS items")
            wanted = tuple(text_atom(item).upper() for item in listed.items)
            unknown = [item for item in wanted if item not in status_items]
            if unknown:
                raise Bad(f"Unknown STATUS item {unknown[0][:40]}")
    return frozenset(names), wanted


def parse_list(
    args: tuple[Token, ...], status_items: frozenset[str], utf8: bool = False
) -> ListRequest | None:
    """The request, or None when the reference does not decode (no name can match)."""
    rest = list(args)
    select: frozenset[str] = frozenset()
    if rest and isinstance(rest[0], ParenList):
        select = frozenset(_options(rest.pop(0), SELECT_OPTIONS, "selection"))
        if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH", "REMOTE"}:
            raise Bad("RECURSIVEMATCH needs another selection option")
    returns: frozenset[str] = frozenset()
    items: tuple[str, ...] = ()
    if len(rest) == 4 and isinstance(rest[2], Atom) and rest[2].value.upper() == "RETURN":
        returns, items = _returns(rest[3], status_items)
        rest = rest[:2]
    if len(rest) != 2:
        raise Bad("LIST takes a reference and a mailbox pattern (or a list of them)")
    given = rest[1].items if isinstance(rest[1], ParenList) else (rest[1],)
    if not given or len(given) > MAX_PATTERNS:
        raise Bad(f"LIST takes 1 to {MAX_PATTERNS} patterns")
    patterns = []
    for token in given:
        try:
            patterns.append(list_pattern(token, utf8=utf8))
        except UndecodableName:
            continue  # matches no name
    try:
        reference = list_pattern(rest[0], utf8=utf8)
    except UndecodableName:
        return None
    return ListRequest(reference, tuple(patterns), select, returns, items)


async def list_(session: Session, command: Command) -> Reply:
    known = status_items(session)
    utf8 = utf8_names(session)
    request = parse_list(command.args, frozenset(known), utf8)
    if request is None or not request.patterns:
        return Reply()
    if request.patterns == ("",):
        session.write(_EMPTY_PATTERN)
        return Reply()
    if "MYRIGHTS" in request.returns and shared.acl_account(session) is None:
        raise Bad("RETURN MYRIGHTS needs access control lists, which this store does not keep")
    account = account_of(session)
    boxes = await account.list_mailboxes()
    wants_subscriptions = "SUBSCRIBED" in request.select | request.returns
    subscribed = await account.subscriptions() if wants_subscriptions else ()
    for entry in listing.extended_entries(boxes, subscribed, request):
        session.write(list_line(entry, utf8))
        if entry.attributes & {NOSELECT, NONEXISTENT}:
            continue
        if "MYRIGHTS" in request.returns:  # RFC 8440
            rights = await shared.myrights(session, entry.name)
            session.write(shared.myrights_line(name_bytes(entry.name, utf8), rights))
        if request.status_items and await shared.allowed(session, entry.name, "r"):
            try:
                box = await account.open(entry.name)
                line = await status_line(session, entry.name, request.status_items, box, known)
            except errors.MailboxNotFound:
                continue  # deleted meanwhile
            session.write(line)
    return Reply()


def list_line(entry: ListEntry, utf8: bool) -> bytes:
    """``* LIST (attributes) "/" name [extended data]`` (LIST, and SELECT in IMAP4rev2)."""
    extra = b' ("CHILDINFO" ("SUBSCRIBED"))' if entry.subscribed_child else b""
    return b'* LIST %s "/" %s%s\r\n' % (
        encode.flag_list(entry.attributes),
        name_bytes(entry.name, utf8),
        extra,
    )


async def lsub(session: Session, command: Command) -> Reply:
    if len(command.args) != 2:
        raise Bad("LSUB takes a reference and a mailbox pattern")
    try:
        utf8 = utf8_names(session)
        reference = list_pattern(command.args[0], utf8=utf8)
        pattern = list_pattern(command.args[1], utf8=utf8)
    except UndecodableName:
        return Reply()
    if not pattern:
        session.write(b'* LSUB (\\Noselect) "/" ""\r\n')
        return Reply()
    full = listing.full_pattern(reference, pattern)
    regex = listing.compile_pattern(full)
    subscribed = await account_of(session).subscriptions()
    out = [
        b'* LSUB %s "/" %s\r\n' % (encode.flag_list(attrs), name_bytes(name, utf8))
        for name, attrs in listing.lsub_entries(subscribed, regex, full.endswith("%"))
    ]
    session.write(b"".join(out))
    return Reply()


SPECS = (
    CommandSpec("LIST", list_, AUTH),
    CommandSpec("LSUB", lsub, AUTH),
)
