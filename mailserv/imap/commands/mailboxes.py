"""Authenticated state, mailbox level: CREATE DELETE RENAME (UN)SUBSCRIBE STATUS (LIST and
LSUB: :mod:`mailserv.imap.commands.lists`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mailserv import errors
from mailserv.events import report
from mailserv.events.sink import MAILBOX_CREATED, MAILBOX_DELETED, MAILBOX_RENAMED
from mailserv.imap import listing, notify, shared
from mailserv.imap.arguments import denormalized, mailbox, new_mailbox, text_atom
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.registry import StatusItem
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import is_rev2, utf8_names
from mailserv.interfaces import (
    INBOX,
    NONEXISTENT,
    SPECIAL_USE,
    IAccount,
    IMailbox,
    IMailboxIdAccount,
    MailboxStatus,
)
from mailserv.syntax import encode, utf7
from mailserv.syntax.tokens import Command, ParenList, Token

if TYPE_CHECKING:
    from mailserv.imap.session import Session

_FORBIDDEN = set("*%") | {chr(c) for c in range(0x20)} | {"\x7f"}
_NOT_NET_UNICODE = {chr(c) for c in range(0x80, 0xA0)} | {"\u2028", "\u2029"}


def account_of(session: Session) -> IAccount:
    assert session.account is not None
    return session.account


def name_bytes(name: str, utf8: bool = False) -> bytes:
    """A mailbox name as it goes out: modified UTF-7, atom or quoted (``utf8``: UTF-8,
    once the client enabled UTF-8 names)."""
    if utf8:
        return encode.astring(name.encode("utf-8"), utf8=True)
    return encode.astring(utf7.encode(name))


def valid_new_name(name: str, max_bytes: int, utf8: bool = False) -> str:
    """A name a client may create: no wildcards, controls, empty levels; from a client
    that sends UTF-8 names, no C1 controls or line and paragraph separators either
    (RFC 6855 3)."""
    name = name.rstrip(listing.DELIMITER)
    if not name:
        raise No("Empty mailbox name", "CANNOT")
    if len(name.encode("utf-8")) > max_bytes:
        raise No("Mailbox name too long", "CANNOT")
    if _FORBIDDEN.intersection(name) or "//" in name or name.startswith(listing.DELIMITER):
        raise No(
            "Mailbox names may not hold wildcards, control characters or empty levels", "CANNOT"
        )
    if utf8 and _NOT_NET_UNICODE.intersection(name):
        raise No("Mailbox names may not hold C1 controls or line separators", "CANNOT")
    return name


async def list_entry(session: Session, name: str, old: str | None = None) -> bytes:
    """``* LIST`` of one mailbox with its attributes, as an IMAP4rev2 session takes it (SELECT,
    RFC 9051 6.3.2), with ``("OLDNAME" (old))`` when ``old`` is the name as the client
    sent it before NFC normalisation (RFC 9051 5.1)."""
    boxes = await account_of(session).list_mailboxes()
    entries = listing.extended_entries(boxes, (), listing.ListRequest("", (name,)))
    return b"".join(notify.list_line(e.name, e.attributes, True, old) for e in entries)


async def tell_normalised(session: Session, sent: Token, name: str, gone: bool = False) -> None:
    """RFC 9051 6.3.4-6.3.6: a name an IMAP4rev2 client sent in another form than NFC was
    taken as its NFC form; ``* LIST`` of that with ``("OLDNAME" (as sent))`` says so
    (``\\NonExistent`` after DELETE)."""
    old = denormalized(sent, is_rev2(session))
    if old is None:
        return
    if gone:
        session.write(notify.list_line(name, (NONEXISTENT,), True, old))
    else:
        session.write(await list_entry(session, name, old))


async def create(session: Session, command: Command) -> Reply:
    if len(command.args) not in (1, 2):
        raise Bad("CREATE takes a mailbox name")
    utf8 = utf8_names(session)
    limit = session.settings.max_mailbox_name
    name = valid_new_name(new_mailbox(command.args[0], utf8=utf8), limit, utf8)
    if name == INBOX:
        raise No("INBOX always exists", "ALREADYEXISTS")
    use = _special_use(command.args[1]) if len(command.args) == 2 else None
    account = account_of(session)
    await account.create(name, use)
    session.services.board.created(session, name)
    report.mailbox_changed(session, MAILBOX_CREATED, name)
    await tell_normalised(session, command.args[0], name)
    return Reply("CREATE completed", await _mailboxid_code(session, account, name))


async def _mailboxid_code(session: Session, account: IAccount, name: str) -> bytes | None:
    """``MAILBOXID (id)`` for CREATE's OK (RFC 8474 4.1) when the server and the store
    have MAILBOXIDs; None otherwise."""
    if "MAILBOXID" not in session.services.registry.status_items:
        return None
    if not IMailboxIdAccount.providedBy(account):
        return None
    counts: MailboxStatus = await (await account.open(name)).status()
    return None if counts.mailboxid is None else b"MAILBOXID (%s)" % counts.mailboxid.encode()


def _special_use(arg: object) -> str | None:
    """RFC 6154 CREATE-SPECIAL-USE: ``(USE (\\Sent))``."""
    if (
        isinstance(arg, ParenList)
        and len(arg.items) == 2
        and text_atom(arg.items[0]).upper() == "USE"
        and isinstance(arg.items[1], ParenList)
    ):
        uses = [text_atom(item) for item in arg.items[1].items]
        if len(uses) > 1:
            raise No("One special use per mailbox", "USEATTR")
        if not uses:
            return None
        wanted = {u.lower(): u for u in SPECIAL_USE}.get(uses[0].lower())
        if wanted is None:
            raise No(f"Unknown special use {uses[0][:40]}", "USEATTR")
        return wanted
    raise Bad("Unknown CREATE parameters")


async def delete(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("DELETE takes a mailbox name")
    name = mailbox(command.args[0], utf8=utf8_names(session))
    if name == INBOX:
        raise No("INBOX cannot be deleted", "CANNOT")
    if session.selected is not None and session.selected.mailbox.name == name:
        session.deselect()
    await account_of(session).delete(name)
    session.services.board.deleted(session, name)
    report.mailbox_changed(session, MAILBOX_DELETED, name)
    await tell_normalised(session, command.args[0], name, gone=True)
    return Reply()


async def rename(session: Session, command: Command) -> Reply:
    if len(command.args) != 2:
        raise Bad("RENAME takes two mailbox names")
    utf8 = utf8_names(session)
    old = mailbox(command.args[0], utf8=utf8)
    limit = session.settings.max_mailbox_name
    new = valid_new_name(new_mailbox(command.args[1], utf8=utf8), limit, utf8)
    if new == INBOX:
        raise No("INBOX already exists", "ALREADYEXISTS")
    if new == old:
        raise No("Source and destination are the same", "ALREADYEXISTS")
    await account_of(session).rename(old, new)
    session.services.board.renamed(session, old, new)
    report.mailbox_changed(session, MAILBOX_RENAMED, old, new)
    await tell_normalised(session, command.args[1], new)
    return Reply()


async def subscribe(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("SUBSCRIBE takes a mailbox name")
    name = mailbox(command.args[0], utf8=utf8_names(session))
    await account_of(session).subscribe(name)
    session.services.board.subscribed(session, name, True)
    return Reply()


async def unsubscribe(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("UNSUBSCRIBE takes a mailbox name")
    name = mailbox(command.args[0], utf8=utf8_names(session))
    await account_of(session).unsubscribe(name)
    session.services.board.subscribed(session, name, False)
    return Reply()


STATUS_ITEMS = (
    StatusItem("MESSAGES", lambda s: s.messages),
    StatusItem("RECENT", lambda s: s.recent),
    StatusItem("UIDNEXT", lambda s: s.uidnext),
    StatusItem("UIDVALIDITY", lambda s: s.uidvalidity),
    StatusItem("UNSEEN", lambda s: s.unseen),
)
"""RFC 3501's items; extensions register more."""


REV1_ONLY = "RECENT"
"""RFC 9051 has no RECENT; its DELETED is QUOTA's (:mod:`mailserv.imap.extensions.quota`)."""


def status_items(session: Session) -> Mapping[str, StatusItem]:
    """The STATUS items the session may ask for: no RECENT once IMAP4rev2 is on."""
    known = session.services.registry.status_items
    if not is_rev2(session):
        return known
    return {name: item for name, item in known.items() if name != REV1_ONLY}


async def status(session: Session, command: Command) -> Reply:
    if len(command.args) != 2 or not isinstance(command.args[1], ParenList):
        raise Bad("STATUS takes a mailbox name and a list of items")
    name = mailbox(command.args[0], utf8=utf8_names(session))
    items = [text_atom(item).upper() for item in command.args[1].items]
    known = status_items(session)
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise Bad(f"Unknown STATUS item {unknown[0][:40]}" if unknown else "No STATUS items")
    try:
        await shared.require(session, name, "r", "STATUS")
        box = await account_of(session).open(name)
    except errors.MailboxNotFound as exc:
        raise No("No such mailbox", "NONEXISTENT") from exc
    session.write(await status_line(session, name, items, box, known))
    return Reply()


async def status_line(
    session: Session,
    name: str,
    items: Sequence[str],
    box: IMailbox,
    known: Mapping[str, StatusItem],
) -> bytes:
    """``* STATUS name (ITEM n ...)`` (STATUS, and LIST's RETURN (STATUS ...)); an item
    that turns something on when used (HIGHESTMODSEQ: CONDSTORE) does so."""
    for item in dict.fromkeys(items):
        used = known[item].used
        if used is not None:
            used(session)
    counts: MailboxStatus = await box.status()
    values = []
    for item in items:
        value = await known[item].of(session, box, counts)
        if value is not None:
            values.append(
                b"%s %s" % (item.encode(), value if isinstance(value, bytes) else b"%d" % value)
            )
    return b"* STATUS %s (%s)\r\n" % (name_bytes(name, utf8_names(session)), b" ".join(values))


SPECS = (
    CommandSpec("CREATE", create, AUTH),
    CommandSpec("DELETE", delete, AUTH),
    CommandSpec("RENAME", rename, AUTH),
    CommandSpec("SUBSCRIBE", subscribe, AUTH),
    CommandSpec("UNSUBSCRIBE", unsubscribe, AUTH),
    CommandSpec("STATUS", status, AUTH),
)
