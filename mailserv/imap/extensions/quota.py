"""QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT, SETQUOTA (refused), STATUS DELETED and
DELETED-STORAGE; the limits and the check before APPEND and COPY: :mod:`mailserv.quota`.

Every mailbox of a user is under one quota root, ``""``, holding the resources the
configuration or the user store limits for that user (``STORAGE`` in KiB, ``MESSAGE``).
A user without any limit has no quota root: ``* QUOTAROOT INBOX`` names none, and
GETQUOTA ``""`` is NO (RFC 9208 has no way to spell "unlimited"; a missing root is how
clients read it).

The capabilities are offered always, in every state and to every user alike: a client
that read them before login is not misled after, and STATUS ``DELETED-STORAGE`` (required
with ``QUOTA=RES-STORAGE``) and ``DELETED`` (with ``QUOTA=RES-MESSAGE``) are there for all.
MOVE between mailboxes of one account leaves the usage as it was and is never refused.
"""

from __future__ import annotations

from mailserv import errors
from mailserv.imap.arguments import astring, mailbox, number64, text_atom
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.commands.mailboxes import account_of, name_bytes
from mailserv.imap.registry import Capability, Extension, StatusItem
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Session, utf8_names
from mailserv.interfaces import DELETED, IMailbox, MessageMeta
from mailserv.quota import ROOT, QuotaLimits, Usage, account_usage, kib, session_limits
from mailserv.search import HasFlag, SearchProgram, backend_search
from mailserv.slicing import TimeSlices
from mailserv.syntax.encode import astring as encode_astring
from mailserv.syntax.tokens import Command, ParenList

_DELETED = SearchProgram(HasFlag(DELETED))


def quota_line(limits: QuotaLimits, usage: Usage) -> bytes:
    """``* QUOTA "" (STORAGE used limit MESSAGE used limit)``: the limited resources."""
    resources = []
    if limits.storage:
        resources.append(b"STORAGE %d %d" % (usage.storage, limits.storage))
    if limits.messages:
        resources.append(b"MESSAGE %d %d" % (usage.messages, limits.messages))
    return b"* QUOTA %s (%s)\r\n" % (encode_astring(ROOT.encode()), b" ".join(resources))


async def getquota(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("GETQUOTA takes a quota root")
    root = astring(command.args[0])
    limits = await session_limits(session)
    if root != ROOT.encode() or not limits.limited:
        raise No("No such quota root", "NONEXISTENT")
    session.write(quota_line(limits, await account_usage(account_of(session))))
    return Reply("GETQUOTA completed")


async def getquotaroot(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("GETQUOTAROOT takes a mailbox name")
    utf8 = utf8_names(session)
    name = mailbox(command.args[0], utf8=utf8)
    account = account_of(session)
    try:
        await account.open(name)
    except errors.MailboxNotFound as exc:
        raise No("No such mailbox", "NONEXISTENT") from exc
    limits = await session_limits(session)
    if not limits.limited:
        session.write(b"* QUOTAROOT %s\r\n" % name_bytes(name, utf8))
        return Reply("GETQUOTAROOT completed, no quota")
    usage = await account_usage(account)
    root = encode_astring(ROOT.encode())
    session.write(
        b"* QUOTAROOT %s %s\r\n" % (name_bytes(name, utf8), root) + quota_line(limits, usage)
    )
    return Reply("GETQUOTAROOT completed")


async def setquota(session: Session, command: Command) -> Reply:
    if len(command.args) != 2 or not isinstance(command.args[1], ParenList):
        raise Bad("SETQUOTA takes a quota root and a list of resource limits")
    astring(command.args[0])
    items = command.args[1].items
    if len(items) % 2:
        raise Bad("SETQUOTA resource limits come in pairs: name and number")
    for name, limit in zip(items[::2], items[1::2], strict=True):
        text_atom(name)
        number64(limit)
    raise No(
        "Quotas are set in the server configuration or the user store; SETQUOTA cannot change them",
        "CANNOT",
    )


async def deleted_messages(session: Session, box: IMailbox) -> list[MessageMeta]:
    """The messages flagged \\Deleted: the mailbox's own search if it has one, else its
    metadata read in slices (the memory backend's is in memory)."""
    uids = await box.uids()
    found = await backend_search(box, _DELETED, uids)
    slices = TimeSlices(session.services.clock)
    deleted: list[MessageMeta] = []
    async for part in slices.batches(uids if found is None else found):
        metas = await box.fetch(part)
        deleted += metas if found is not None else [m for m in metas if DELETED in m.flags]
    return deleted


async def _deleted(session: Session, box: IMailbox) -> int:
    return len(await deleted_messages(session, box))


async def _deleted_storage(session: Session, box: IMailbox) -> int:
    """KiB (the unit of STORAGE) that EXPUNGE would free, rounded up."""
    return kib(sum(m.size for m in await deleted_messages(session, box)))


EXTENSION = Extension(
    "QUOTA",
    capabilities=(
        Capability(b"QUOTA"),
        Capability(b"QUOTA=RES-STORAGE"),
        Capability(b"QUOTA=RES-MESSAGE"),
    ),
    commands=(
        CommandSpec("GETQUOTA", getquota, AUTH),
        CommandSpec("GETQUOTAROOT", getquotaroot, AUTH),
        CommandSpec("SETQUOTA", setquota, AUTH),
    ),
    status_items=(
        StatusItem("DELETED", read=_deleted),
        StatusItem("DELETED-STORAGE", read=_deleted_storage),
    ),
    response_codes=frozenset({"OVERQUOTA"}),
)
