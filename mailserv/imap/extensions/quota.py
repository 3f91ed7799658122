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

A mailbox another user shares (RFC 4314) is under its owner's root, named
``Other Users/<owner>`` for the others: what anyone stores there counts against the owner's
limits and is refused when the owner is over them, whoever stores it.

An account that keeps quotas itself (``IQuotaAccount``: the proxy, when its upstream has
QUOTA) answers GETQUOTA and GETQUOTAROOT with its own roots and resources instead.
"""

from __future__ import annotations

from mailserv import errors
from mailserv.imap.arguments import astring, mailbox, number64, text_atom
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.commands.mailboxes import account_of, name_bytes
from mailserv.imap.registry import Capability, Extension, StatusItem
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Session, utf8_names
from mailserv.interfaces import (
    DELETED,
    IDeletedUsage,
    IMailbox,
    IQuotaAccount,
    MessageMeta,
    QuotaRoot,
)
from mailserv.quota import Payer, Usage, account_usage, kib, payer_for, root_payer
from mailserv.search import HasFlag, SearchProgram, backend_search
from mailserv.slicing import TimeSlices
from mailserv.syntax.encode import astring as encode_astring
from mailserv.syntax.tokens import Command, ParenList

_DELETED = SearchProgram(HasFlag(DELETED))


def quota_line(payer: Payer, usage: Usage) -> bytes:
    """``* QUOTA root (STORAGE used limit MESSAGE used limit)``: the limited resources."""
    limits = payer.limits
    resources = []
    if limits.storage:
        resources.append(("STORAGE", usage.storage, limits.storage))
    if limits.messages:
        resources.append(("MESSAGE", usage.messages, limits.messages))
    return root_line(QuotaRoot(payer.root, tuple(resources)))


def root_line(root: QuotaRoot) -> bytes:
    """``* QUOTA root (resource usage limit ...)``."""
    resources = b" ".join(
        b"%s %d %d" % (n.encode("ascii", "replace"), u, lim) for n, u, lim in root.resources
    )
    return b"* QUOTA %s (%s)\r\n" % (encode_astring(root.name.encode("utf-8")), resources)


def _kept(session: Session) -> IQuotaAccount | None:
    """The account's own quotas (a proxy whose upstream keeps them), or None."""
    account = account_of(session)
    return IQuotaAccount(account) if IQuotaAccount.providedBy(account) else None


async def getquota(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("GETQUOTA takes a quota root")
    root = astring(command.args[0])
    kept = _kept(session)
    if kept is not None:
        found = await kept.quota(root.decode("utf-8", "replace"))
        if found is None:
            raise No("No such quota root", "NONEXISTENT")
        session.write(root_line(found))
        return Reply("GETQUOTA completed")
    payer = await root_payer(session, root.decode("utf-8", "replace"))
    if payer is None or not payer.limits.limited:
        raise No("No such quota root", "NONEXISTENT")
    session.write(quota_line(payer, await account_usage(payer.account)))
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
    kept = _kept(session)
    if kept is not None:
        roots = await kept.quota_roots(name)
        names = b"".join(b" " + encode_astring(r.name.encode("utf-8")) for r in roots)
        lines = b"".join(root_line(r) for r in roots if r.resources)
        session.write(b"* QUOTAROOT %s%s\r\n" % (name_bytes(name, utf8), names) + lines)
        return Reply("GETQUOTAROOT completed")
    payer = await payer_for(session, name, needed="")  # another user's mailbox: the owner's
    if payer is None or not payer.limits.limited:
        session.write(b"* QUOTAROOT %s\r\n" % name_bytes(name, utf8))
        return Reply("GETQUOTAROOT completed, no quota")
    usage = await account_usage(payer.account)
    root = encode_astring(payer.root.encode("utf-8"))
    session.write(
        b"* QUOTAROOT %s %s\r\n" % (name_bytes(name, utf8), root) + quota_line(payer, usage)
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
    slices = TimeSlices(session.services.turns)
    deleted: list[MessageMeta] = []
    async for part in slices.batches(uids if found is None else found):
        metas = await box.fetch(part)
        deleted += metas if found is not None else [m for m in metas if DELETED in m.flags]
    return deleted


async def _deleted_usage(session: Session, box: IMailbox) -> tuple[int, int]:
    """The \\Deleted messages' count and octets: kept by the mailbox (``IDeletedUsage``),
    else searched for and fetched."""
    if IDeletedUsage.providedBy(box):
        return await IDeletedUsage(box).deleted_usage()
    deleted = await deleted_messages(session, box)
    return len(deleted), sum(m.size for m in deleted)


async def _deleted(session: Session, box: IMailbox) -> int:
    return (await _deleted_usage(session, box))[0]


async def _deleted_storage(session: Session, box: IMailbox) -> int:
    """KiB (the unit of STORAGE) that EXPUNGE would free, rounded up."""
    return kib((await _deleted_usage(session, box))[1])


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
