"""Shared mailboxes: rights (RFC 4314), the "Other Users/" namespace (RFC 2342), and the
checks the command modules make before they act.

A user whose account keeps access control lists (``IAclAccount``) gets a
:class:`SharedAccount` in its place at login: names under ``Other Users/<owner>/`` are the
owner's mailboxes, opened through the owner's account, so every session of every user that
has one open shares its object, listeners and state (a team inbox read, flagged and
expunged by several users is seen live by each).  The owner always has every right on
its own mailboxes: the checks cost nothing there.

The commands ask for the rights of RFC 4314 section 4 through :func:`require` (a name) and
:func:`require_selected` (the selected mailbox); a missing right is ``NO [NOPERM]``, and a
mailbox on which the user has neither ``l`` nor ``r`` is ``NO [NONEXISTENT]`` (its existence
is not given away).  Rights are read when a command runs: a session that loses ``r`` while
it has the mailbox selected or idles in it keeps it open and goes on hearing of changes
(RFC 4314 lets the server choose); its next SELECT, STORE, EXPUNGE or COPY is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zope.interface import Interface, alsoProvides, implementer, providedBy
from zope.interface.interface import InterfaceClass

from mailserv import errors
from mailserv.imap.replies import No
from mailserv.interfaces import (
    DELETED,
    DELIMITER,
    NOSELECT,
    RECENT,
    SEEN,
    AppendResult,
    CopyResult,
    IAccount,
    IAccountUsage,
    IAclAccount,
    IMailbox,
    IMailboxIdAccount,
    IMultiAppendAccount,
    IQuotaAccount,
    MailboxInfo,
    NewMessage,
    QuotaRoot,
    StoreMode,
)
from mailserv.slicing import TimeSlices
from mailserv.syntax import encode

if TYPE_CHECKING:
    from mailserv.imap.session import Session

RIGHTS = "lrswipkxtea"
"""Every right, in the order they are shown (RFC 4314 2.1)."""
ALL_RIGHTS = frozenset(RIGHTS)
OBSOLETE = {"c": "k", "d": "xte"}
"""RFC 2086's rights as groups of RFC 4314's (2.1.1): read in SETACL, shown when any member is."""
ANYONE = "anyone"
OTHER_USERS = "Other Users"
"""The namespace of other users' mailboxes: ``Other Users/<owner>/<mailbox>``."""
WRITE_RIGHTS = frozenset("iestw")
"""RFC 4314 5.2: with none of these, SELECT opens the mailbox READ-ONLY (insert, expunge, and
the rights on flags: every flag is shared here, \\Seen included)."""
RIGHTS_NAMES = {
    "l": "lookup (l)",
    "r": "read (r)",
    "s": "keep seen (s)",
    "w": "write (w)",
    "i": "insert (i)",
    "p": "post (p)",
    "k": "create (k)",
    "x": "delete mailbox (x)",
    "t": "delete messages (t)",
    "e": "expunge (e)",
    "a": "administer (a)",
}


def parse_rights(text: str) -> frozenset[str]:
    """The rights a SETACL string names, obsolete ``c``/``d`` read as their groups;
    ValueError naming an unknown letter."""
    rights: set[str] = set()
    for letter in text:
        if letter in OBSOLETE:
            rights.update(OBSOLETE[letter])
        elif letter in ALL_RIGHTS:
            rights.add(letter)
        else:
            raise ValueError(f"Unknown right {letter!r}")
    return frozenset(rights)


def format_rights(rights: frozenset[str]) -> str:
    """The rights in their order, with ``c`` and ``d`` added for older clients."""
    shown = "".join(r for r in RIGHTS if r in rights)
    return shown + "".join(old for old, group in OBSOLETE.items() if rights & set(group))


def rights_of(user: str, acl: Mapping[str, str]) -> frozenset[str]:
    """RFC 4314 2: what the entries for ``user`` and ``anyone`` give, less what their
    negative entries take away."""
    given = set(acl.get(user, "")) | set(acl.get(ANYONE, ""))
    taken = set(acl.get("-" + user, "")) | set(acl.get("-" + ANYONE, ""))
    return frozenset(given - taken)


def split_other(name: str) -> tuple[str, str] | None:
    """The owner and the owner's own name of a name under ``Other Users/`` (either may be
    empty); None for a name outside it."""
    prefix = OTHER_USERS + DELIMITER
    if not name.startswith(prefix):
        return None
    owner, _, rest = name[len(prefix) :].partition(DELIMITER)
    return owner, rest


@dataclass(frozen=True, slots=True)
class Location:
    """Where a name the user sees lives: ``owner`` None for the user's own mailboxes."""

    owner: str | None
    account: IAccount
    name: str


ROUTED: tuple[InterfaceClass, ...] = (
    IMultiAppendAccount,
    IAccountUsage,
    IMailboxIdAccount,
    IQuotaAccount,
)
"""The optional account interfaces whose calls :class:`SharedAccount` routes (every one
there is but ``IAclAccount``, which it uses itself)."""


def _forwarded(inner: IAccount) -> list[InterfaceClass]:
    """The optional interfaces of ``inner`` the wrapper offers too: those whose calls it
    routes, and markers (no methods)."""
    return [
        iface
        for iface in providedBy(inner).flattened()
        if iface in ROUTED or (iface is not Interface and not list(iface.names()))
    ]


@implementer(IAccount)
class SharedAccount:
    """The account a session of ``user`` works with: its own, plus the mailboxes other
    users share with it under ``Other Users/``."""

    def __init__(self, inner: IAccount, user: str) -> None:
        self.inner = inner
        self.acls = IAclAccount(inner)
        self.user = user
        self._others: dict[str, IAccount] = {}
        """Other users' accounts this session reached, closed with it."""
        self._opened: dict[int, tuple[IMailbox, Location]] = {}
        """Shared mailboxes this session opened, by the object's id: its checks need to
        know where the selected mailbox lives."""
        alsoProvides(self, *_forwarded(inner))

    # -- where names live and what the user may do there --------------------------------

    async def locate(self, name: str) -> Location:
        parts = split_other(name)
        if parts is None:
            return Location(None, self.inner, name)
        owner, rest = parts
        if not owner or not rest:
            raise errors.MailboxNotSelectable(name)
        other = self._others.get(owner)
        if other is None and owner != self.user:
            other = await self.acls.other_account(owner)
            if other is not None:
                self._others[owner] = other
        if other is None:
            raise errors.MailboxNotFound(name)
        return Location(owner, other, rest)

    async def rights(self, where: Location) -> frozenset[str]:
        if where.owner is None:
            return ALL_RIGHTS
        return rights_of(self.user, await IAclAccount(where.account).get_acl(where.name))

    async def require(self, name: str, needed: str, what: str) -> Location:
        """The location of ``name``, once the user is known to have ``needed`` there."""
        return (await self.checked(name, needed, what))[0]

    async def checked(self, name: str, needed: str, what: str) -> tuple[Location, frozenset[str]]:
        """:meth:`require`, and the user's rights there."""
        where = await self.locate(name)
        if where.owner is None:
            return where, ALL_RIGHTS
        rights = await self.rights(where)
        if not {"l", "r"} & rights:
            raise errors.MailboxNotFound(name)  # not even there, for this user
        check(rights, needed, what)
        return where, rights

    def where_open(self, box: IMailbox) -> Location | None:
        """Where a mailbox this session opened lives; None for its own."""
        found = self._opened.get(id(box))
        return None if found is None or found[0] is not box else found[1]

    # -- IAccount ---------------------------------------------------------------------

    async def list_mailboxes(self) -> list[MailboxInfo]:
        mine = list(await self.inner.list_mailboxes())
        names = {info.name for info in mine}
        shared: list[MailboxInfo] = []
        for entry in await self.acls.shared_mailboxes(self.user):
            if "l" not in rights_of(self.user, entry.acl):
                continue
            full = DELIMITER.join((OTHER_USERS, entry.owner, entry.name))
            shared.append(MailboxInfo(full))
            names.add(full)
        parents: list[MailboxInfo] = []
        for info in shared:
            parent = info.name.rpartition(DELIMITER)[0]
            while parent and parent not in names:
                parents.append(MailboxInfo(parent, frozenset({NOSELECT})))
                names.add(parent)
                parent = parent.rpartition(DELIMITER)[0]
        return mine + sorted(parents + shared, key=lambda info: info.name)

    async def create(self, name: str, special_use: str | None = None) -> None:
        _not_reserved(name)
        where = await self.locate(name)
        if where.owner is None:
            return await self.inner.create(name, special_use)
        parent = where.name.rpartition(DELIMITER)[0]
        if not parent:
            raise No("Only the owner creates mailboxes at the top of its tree", "NOPERM")
        acl = IAclAccount(where.account)
        inherited = await acl.get_acl(parent)
        check(rights_of(self.user, inherited), "k", "CREATE under this mailbox")
        await where.account.create(where.name, special_use)
        for identifier, rights in inherited.items():  # RFC 4314 5.1.1: the parent's list
            await acl.set_acl(where.name, identifier, rights)

    async def delete(self, name: str) -> None:
        where = await self.require(name, "x", "DELETE")
        await where.account.delete(where.name)

    async def rename(self, old: str, new: str) -> None:
        _not_reserved(new)
        source = await self.require(old, "x", "RENAME")
        target = await self.locate(new)
        if source.owner != target.owner:
            raise No("RENAME cannot move a mailbox to another user", "CANNOT")
        if target.owner is not None:
            parent = target.name.rpartition(DELIMITER)[0]
            if not parent:
                raise No("Only the owner creates mailboxes at the top of its tree", "NOPERM")
            check(await self.rights(Location(target.owner, target.account, parent)), "k", "RENAME")
        await source.account.rename(source.name, target.name)

    async def subscriptions(self) -> Sequence[str]:
        return await self.inner.subscriptions()

    async def subscribe(self, name: str) -> None:
        await self.inner.subscribe(name)

    async def unsubscribe(self, name: str) -> None:
        await self.inner.unsubscribe(name)

    async def open(self, name: str) -> IMailbox:
        """Another user's mailbox opens only for a user with ``l`` or ``r`` on it; which
        right the command needs, the command asks (:func:`require`)."""
        where = await self.locate(name)
        if where.owner is None:
            return await self.inner.open(name)
        if not {"l", "r"} & await self.rights(where):
            raise errors.MailboxNotFound(name)
        box = await where.account.open(where.name)
        self._opened[id(box)] = (box, where)
        return box

    async def close(self) -> None:
        self._opened.clear()
        others, self._others = list(self._others.values()), {}
        for other in others:
            await other.close()
        await self.inner.close()

    # -- the optional interfaces it routes ------------------------------------------------

    async def append_many(
        self, name: str, messages: Sequence[NewMessage], origin: object
    ) -> Sequence[AppendResult]:
        where = await self.locate(name)
        return await IMultiAppendAccount(where.account).append_many(where.name, messages, origin)

    async def usage(self) -> tuple[int, int]:
        return await IAccountUsage(self.inner).usage()

    async def quota_roots(self, name: str) -> Sequence[QuotaRoot]:
        """The store's roots of the user's own mailboxes; none named for another user's
        (GETQUOTA reads the user's own roots, where the owner's are not)."""
        where = await self.locate(name)
        if where.owner is not None:
            return ()
        return await IQuotaAccount(self.inner).quota_roots(name)

    async def quota(self, root: str) -> QuotaRoot | None:
        return await IQuotaAccount(self.inner).quota(root)


def _not_reserved(name: str) -> None:
    if name == OTHER_USERS:
        raise No(f"{OTHER_USERS} is the other users' namespace", "CANNOT")


def check(rights: frozenset[str], needed: str, what: str) -> None:
    """NO [NOPERM] naming the first right of ``needed`` that ``rights`` lack."""
    missing = [r for r in needed if r not in rights]
    if missing:
        wanted = ", ".join(RIGHTS_NAMES[r] for r in missing)
        raise No(f"{what} needs the {wanted} right on this mailbox", "NOPERM")


def wrap(account: IAccount, user: str) -> IAccount:
    """The account a session works with: shared mailboxes when the store keeps ACLs."""
    return SharedAccount(account, user) if IAclAccount.providedBy(account) else account


def acl_account(session: Session) -> SharedAccount | None:
    account = session.account
    return account if isinstance(account, SharedAccount) else None


def owner_of(session: Session, name: str, box: IMailbox | None = None) -> tuple[str, str] | None:
    """Whose mailbox a change was made in, when another user's: its owner and the owner's
    own name for it (from ``box`` when the session has it open, else from ``name`` as the
    session sees it).  None for the user's own mailboxes (webhook events name the owner)."""
    shared = acl_account(session)
    if shared is None:
        return None
    if box is not None:
        where = shared.where_open(box)
        return None if where is None or where.owner is None else (where.owner, where.name)
    parts = split_other(name)
    return parts if parts is not None and all(parts) else None


async def require(session: Session, name: str, needed: str, what: str) -> None:
    """Refuse (NOPERM) a command on ``name`` without the ``needed`` rights."""
    shared = acl_account(session)
    if shared is not None:
        await shared.require(name, needed, what)


async def require_rights(session: Session, name: str, needed: str, what: str) -> frozenset[str]:
    """:func:`require`, and the user's rights on ``name`` (SELECT reads them once)."""
    shared = acl_account(session)
    if shared is None:
        return ALL_RIGHTS
    return (await shared.checked(name, needed, what))[1]


async def require_selected(session: Session, needed: str, what: str) -> None:
    """Refuse (NOPERM) a command on the selected mailbox without the ``needed`` rights."""
    shared = acl_account(session)
    view = session.selected
    if shared is None or view is None:
        return
    where = shared.where_open(view.mailbox)
    if where is not None:
        check(await shared.rights(where), needed, what)


async def allowed(session: Session, name: str, needed: str) -> bool:
    """Whether the user has the ``needed`` rights on ``name`` (LIST's RETURN (STATUS)
    leaves out the mailboxes it may not read)."""
    try:
        await require(session, name, needed, "")
    except (No, errors.MailboxNotFound):
        return False
    return True


async def myrights(session: Session, name: str) -> frozenset[str]:
    """The user's rights on ``name`` (none when it is no mailbox the user may see)."""
    shared = acl_account(session)
    if shared is None:
        return ALL_RIGHTS
    try:
        return await shared.rights(await shared.locate(name))
    except errors.BackendError:
        return frozenset()


def myrights_line(name: bytes, rights: frozenset[str]) -> bytes:
    """``* MYRIGHTS name rights`` (MYRIGHTS, and LIST's RETURN (MYRIGHTS), RFC 8440)."""
    return b"* MYRIGHTS %s %s\r\n" % (name, encode.astring(format_rights(rights).encode()))


async def allowed_selected(session: Session, needed: str) -> bool:
    """Whether the user has the ``needed`` rights on the selected mailbox (CLOSE expunges
    only with ``e``, silently)."""
    try:
        await require_selected(session, needed, "")
    except No:
        return False
    return True


def store_rights(mode: StoreMode, flags: frozenset[str]) -> str:
    """RFC 4314 4: ``s`` for \\Seen, ``t`` for \\Deleted, ``w`` for the others; replacing
    every flag touches them all."""
    if mode is StoreMode.REPLACE:
        return "stw"
    needed = ("s" if SEEN in flags else "") + ("t" if DELETED in flags else "")
    return needed + ("w" if flags - {SEEN, DELETED} else "")


def permanent_flags(flags: Iterable[str], rights: frozenset[str]) -> list[str]:
    """RFC 4314 4: of ``flags``, those ``rights`` let the user STORE (:func:`store_rights`),
    and ``\\*`` (new keywords) with ``w``."""
    if rights.issuperset("stw"):
        return [*flags, "\\*"]  # the owner's: every one
    kept = [f for f in flags if rights.issuperset(store_rights(StoreMode.ADD, frozenset({f})))]
    return kept + (["\\*"] if "w" in rights else [])


async def transfer(
    session: Session, box: IMailbox, uids: Sequence[int], destination: str, move: bool
) -> CopyResult | str:
    """COPY/MOVE checked against the rights (``i`` on the target; ``t`` and ``e`` on the
    source of a MOVE).  The name the store's own copy or move takes when source and target
    belong to one user; else done here, message by message, and its result."""
    shared = acl_account(session)
    if shared is None:
        return destination
    if move:
        await require_selected(session, "te", "MOVE")
    target = await shared.require(destination, "i", "COPY or MOVE into it")
    source = shared.where_open(box)
    if (None if source is None else source.owner) == target.owner:
        return target.name
    into = await target.account.open(target.name)
    slices = TimeSlices(session.services.turns)
    pairs: list[tuple[int, int]] = []
    uidvalidity = 0
    async for part in slices.batches(uids):
        for meta in await box.fetch(part):
            content = await box.content(meta.uid)
            added = await into.append(content, meta.flags - {RECENT}, meta.internaldate, session)
            pairs.append((meta.uid, added.uid))
            uidvalidity = added.uidvalidity
    if move and pairs:
        moved = [src for src, _ in pairs]
        await box.store(moved, StoreMode.ADD, frozenset({DELETED}), session)
        await box.expunge(moved, session)
    if not pairs:
        uidvalidity = (await into.status()).uidvalidity
    return CopyResult(uidvalidity, pairs)


__all__ = [
    "ALL_RIGHTS",
    "OTHER_USERS",
    "RIGHTS",
    "ROUTED",
    "Location",
    "SharedAccount",
]
