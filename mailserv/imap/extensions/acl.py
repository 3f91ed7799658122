"""ACL (RFC 4314): MYRIGHTS, GETACL, SETACL, DELETEACL, LISTRIGHTS; ``RIGHTS=texk``;
LIST-MYRIGHTS (RFC 8440: LIST's ``RETURN (MYRIGHTS)``, in :mod:`mailserv.imap.commands.lists`).

Offered when the store keeps access control lists (``IAclAccount``; before login, as most
stores do).  The rights model, the ``Other Users/`` namespace and the checks every command
makes are :mod:`mailserv.imap.shared`'s.  The owner of a mailbox always has every right:
its entry cannot be changed or removed, and GETACL shows it.  Negative identifiers
(``-user``, ``-anyone``) are kept and take their rights away from what the others give.
"""

from __future__ import annotations

from mailserv.imap import shared
from mailserv.imap.arguments import astring, mailbox
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.commands.mailboxes import name_bytes
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Session, utf8_names
from mailserv.interfaces import IAclAccount
from mailserv.syntax.encode import astring as encode_astring
from mailserv.syntax.tokens import Command, Token

_MAX_IDENTIFIER = 255


def offered(session: Session) -> bool:
    """Before login (most stores keep ACLs), and after for an account that does."""
    return session.account is None or shared.acl_account(session) is not None


def _account(session: Session, command: Command) -> shared.SharedAccount:
    account = shared.acl_account(session)
    if account is None:
        raise No(f"{command.name}: this mail store keeps no access control lists", "CANNOT")
    return account


def _identifier(token: Token) -> str:
    raw = astring(token)
    try:
        identifier = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Bad("An identifier must be UTF-8") from exc
    if not identifier.lstrip("-") or len(raw) > _MAX_IDENTIFIER or identifier.startswith("--"):
        raise Bad("Invalid identifier")
    if any(ord(c) < 0x20 or c == "\x7f" for c in identifier):
        raise Bad("An identifier may not hold control characters")
    return identifier


async def _administered(
    session: Session, command: Command
) -> tuple[shared.SharedAccount, shared.Location, str]:
    """The command's mailbox, once the user is known to have ``a`` on it (RFC 4314 4)."""
    account = _account(session, command)
    name = mailbox(command.args[0], utf8=utf8_names(session))
    where = await account.locate(name)
    rights = await account.rights(where)
    if not {"l", "r"} & rights:
        raise No("No such mailbox", "NONEXISTENT")
    shared.check(rights, "a", command.name)
    return account, where, name


def _owner(account: shared.SharedAccount, where: shared.Location) -> str:
    return account.user if where.owner is None else where.owner


def _name(session: Session, name: str) -> bytes:
    return name_bytes(name, utf8_names(session))


def _word(text: str) -> bytes:
    return encode_astring(text.encode("utf-8"), utf8=True)


async def myrights(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("MYRIGHTS takes a mailbox name")
    account = _account(session, command)
    name = mailbox(command.args[0], utf8=utf8_names(session))
    where = await account.locate(name)
    rights = await account.rights(where)
    if not rights:
        raise No("No such mailbox", "NONEXISTENT")
    if where.owner is None:
        await account.inner.open(name)  # MailboxNotFound for a name that is none
    session.write(shared.myrights_line(_name(session, name), rights))
    return Reply("MYRIGHTS completed")


async def getacl(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("GETACL takes a mailbox name")
    account, where, name = await _administered(session, command)
    entries = dict(await IAclAccount(where.account).get_acl(where.name))
    entries[_owner(account, where)] = shared.RIGHTS
    words = b"".join(
        b" %s %s" % (_word(identifier), _word(shared.format_rights(frozenset(rights))))
        for identifier, rights in entries.items()
    )
    session.write(b"* ACL %s%s\r\n" % (_name(session, name), words))
    return Reply("GETACL completed")


async def setacl(session: Session, command: Command) -> Reply:
    if len(command.args) != 3:
        raise Bad("SETACL takes a mailbox name, an identifier and rights")
    identifier = _identifier(command.args[1])
    text = astring(command.args[2]).decode("ascii", "replace")
    modifier = text[:1] if text[:1] in ("+", "-") else ""
    try:
        rights = shared.parse_rights(text[len(modifier) :])
    except ValueError as exc:
        raise Bad(f"SETACL: {exc}; the rights are {shared.RIGHTS} (and obsolete c, d)") from exc
    account, where, _ = await _administered(session, command)
    if identifier == _owner(account, where):
        raise No("The owner always has every right; its entry cannot change", "CANNOT")
    acl = IAclAccount(where.account)
    if modifier:
        current = frozenset((await acl.get_acl(where.name)).get(identifier, ""))
        rights = current | rights if modifier == "+" else current - rights
    await acl.set_acl(where.name, identifier, "".join(r for r in shared.RIGHTS if r in rights))
    return Reply("SETACL completed")


async def _for_identifier(
    session: Session, command: Command
) -> tuple[shared.Location, str, str, bool]:
    """DELETEACL's and LISTRIGHTS's mailbox (with ``a``), its name, the identifier, and
    whether that is the mailbox's owner."""
    if len(command.args) != 2:
        raise Bad(f"{command.name} takes a mailbox name and an identifier")
    identifier = _identifier(command.args[1])
    account, where, name = await _administered(session, command)
    return where, name, identifier, identifier == _owner(account, where)


async def deleteacl(session: Session, command: Command) -> Reply:
    where, _, identifier, owner = await _for_identifier(session, command)
    if owner:
        raise No("The owner always has every right; its entry cannot go", "CANNOT")
    await IAclAccount(where.account).set_acl(where.name, identifier, "")
    return Reply("DELETEACL completed")


async def listrights(session: Session, command: Command) -> Reply:
    _, name, identifier, owner = await _for_identifier(session, command)
    if owner:
        rights = _word(shared.RIGHTS)  # all of them, always: nothing left to grant
    else:
        rights = b'"" ' + b" ".join(r.encode() for r in shared.RIGHTS)
    session.write(b"* LISTRIGHTS %s %s %s\r\n" % (_name(session, name), _word(identifier), rights))
    return Reply("LISTRIGHTS completed")


EXTENSION = Extension(
    "ACL",
    capabilities=(
        Capability(b"ACL", when=offered),
        Capability(b"RIGHTS=texk", when=offered),
        Capability(b"LIST-MYRIGHTS", when=offered),
    ),
    commands=(
        CommandSpec("MYRIGHTS", myrights, AUTH),
        CommandSpec("GETACL", getacl, AUTH),
        CommandSpec("SETACL", setacl, AUTH),
        CommandSpec("DELETEACL", deleteacl, AUTH),
        CommandSpec("LISTRIGHTS", listrights, AUTH),
    ),
    response_codes=frozenset({"NOPERM"}),
)
