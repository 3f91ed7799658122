"""IAccount over the upstream's personal namespace, one object per mailserv session.

Mailbox-level commands go to the upstream on a pooled connection.  Where the upstream's
rules differ from the contract's, the difference is bridged here: missing parents are
created as real mailboxes, RENAME of INBOX is carried out as CREATE plus a move of every
message, and special-use attributes the upstream cannot store are remembered for the
lifetime of the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from zope.interface import implementer

from mailserv import errors
from mailserv.backends.kit.names import Hierarchy, ancestors, check_name, is_inside
from mailserv.backends.proxy import wire
from mailserv.backends.proxy.client import CommandFailed
from mailserv.backends.proxy.mailbox import ProxyMailbox
from mailserv.interfaces import (
    DELIMITER,
    INBOX,
    NONEXISTENT,
    NOSELECT,
    SPECIAL_USE,
    AppendResult,
    IAccount,
    MailboxInfo,
    NewMessage,
    QuotaRoot,
)

if TYPE_CHECKING:
    from mailserv.backends.proxy.user import UserState

_SPELLING = {
    NOSELECT.lower(): NOSELECT,
    NONEXISTENT.lower(): NOSELECT,
    **{attribute.lower(): attribute for attribute in SPECIAL_USE},
}


@implementer(IAccount)
class ProxyAccount:
    """A session's handle on the user's shared upstream state."""

    def __init__(self, user: UserState) -> None:
        self.user = user
        self._closed = False
        user.session_started()

    async def list_mailboxes(self) -> list[MailboxInfo]:
        found = await self.user.listing()
        await self._check_hollow(found)
        boxes: dict[str, frozenset[str]] = {}
        for name, attrs in found.items():
            kept = {_SPELLING[a.lower()] for a in attrs if a.lower() in _SPELLING}
            if "\\nonexistent" in _lowered(attrs):
                kept.add(NOSELECT)
            use = self.user.registry.special_use.get(name)
            if use is not None:
                kept.add(use)
            boxes[name] = frozenset(kept)
        hierarchy = Hierarchy({name: NOSELECT not in attrs for name, attrs in boxes.items()})
        return hierarchy.listing(lambda name: boxes.get(name, frozenset()))

    async def _check_hollow(self, found: dict[str, frozenset[str]]) -> None:
        """Names deleted here that the upstream still lists as selectable: \\Noselect
        while the upstream cannot open them (one STATUS each; they are rare)."""
        hollow = self.user.registry.hollow
        for name in list(hollow):
            attrs = found.get(name)
            if attrs is None or "\\noselect" in _lowered(attrs):
                hollow.discard(name)
            elif await self.user.exists(name):
                hollow.discard(name)  # created again, perhaps by another client
            else:
                found[name] = attrs | {NOSELECT}

    async def create(self, name: str, special_use: str | None = None) -> None:
        name = check_name(name.removesuffix(DELIMITER))
        user = self.user
        (await user.pool.naming()).upstream(name)  # NO [CANNOT] when the upstream cannot hold it
        existing = await user.listing()
        await self._check_hollow(existing)
        attrs = _lowered(existing.get(name, frozenset()))
        if name.upper() == INBOX or (
            name in existing and not attrs & {"\\noselect", "\\nonexistent"}
        ):
            raise errors.MailboxExists(name)
        for parent in ancestors(name):
            if parent not in existing:
                await self._create_one(parent, None, tolerate_existing=True)
        await self._create_one(name, special_use, tolerate_existing=False)

    async def _create_one(
        self, name: str, special_use: str | None, tolerate_existing: bool
    ) -> None:
        user = self.user
        args: list[wire.Arg] = [b"CREATE", user.encoded(name)]
        native = special_use is not None and "CREATE-SPECIAL-USE" in user.pool.capabilities
        if native:
            args.append(b"(USE (" + special_use.encode("ascii") + b"))")  # type: ignore[union-attr]

        try:
            await user.pool.command(*args)
        except CommandFailed as exc:
            error = await user.mailbox_error(name, exc)
            if isinstance(error, errors.MailboxExists) and tolerate_existing:
                return
            raise error from exc
        user.registry.special_use.pop(name, None)
        user.registry.hollow.discard(name)
        if special_use is not None and not native:
            user.registry.special_use[name] = special_use
        stale = user.registry.mailboxes.pop(name, None)
        if stale is not None:
            await stale.gone()

    async def delete(self, name: str) -> None:
        if name.upper() == INBOX:
            raise errors.InvalidMailboxName("INBOX cannot be deleted")
        user = self.user
        (await user.pool.naming()).upstream(name)
        async with user.locks.changing(name):  # no SELECT or STATUS of it meanwhile
            box = user.registry.mailboxes.pop(name, None)
            if box is not None:
                await box.release_channel()

            try:
                await user.pool.command(b"DELETE", user.encoded(name))
            except CommandFailed as exc:
                error = await user.mailbox_error(name, exc)
                if isinstance(error, errors.MailboxNotSelectable):
                    error = errors.MailboxHasChildren(name)
                deleted_before = name in user.registry.hollow
                if not (isinstance(error, errors.MailboxNotFound) and deleted_before):
                    raise error from exc
                # deleted before, shown \Noselect since: its last child has gone too
            user.registry.special_use.pop(name, None)
            user.registry.hollow.add(name)
            if box is not None:
                await box.gone(retire=True)

    async def rename(self, old: str, new: str) -> None:
        new = check_name(new)
        user = self.user
        if old.upper() == INBOX:
            await self._rename_inbox(new)
            return
        if is_inside(new, old):
            raise errors.InvalidMailboxName(f"{new} is inside {old}")
        (await user.pool.naming()).upstream(new)
        existing = await user.listing()
        if old not in existing:
            raise errors.MailboxNotFound(old)
        if new in existing:
            raise errors.MailboxExists(new)
        # No SELECT or STATUS of a name inside ``old`` (or ``new``) meanwhile: Dovecot's
        # Maildir would carry the opener's lock file along (namelock.py).
        async with user.locks.changing(old, new):
            moving = [n for n in user.registry.mailboxes if n == old or is_inside(n, old)]
            for name in moving:
                await user.registry.mailboxes[name].release_channel()

            try:
                await user.pool.command(b"RENAME", user.encoded(old), user.encoded(new))
            except CommandFailed as exc:
                raise await user.mailbox_error(old, exc) from exc
            for name in moving:
                box = user.registry.mailboxes.pop(name, None)
                if box is not None:
                    await box.gone(retire=True)
        for name in [n for n in user.registry.special_use if n == old or is_inside(n, old)]:
            user.registry.special_use[new + name[len(old) :]] = user.registry.special_use.pop(name)

    async def _rename_inbox(self, new: str) -> None:
        """RFC 3501 6.3.5: the messages move to a new mailbox; INBOX stays, empty."""
        await self.create(new)
        inbox = await self.open(INBOX)
        uids = await inbox.uids()
        if uids:
            await inbox.move(list(uids), new, None)

    async def subscriptions(self) -> list[str]:
        found = await self.user.listing(verb=b"LSUB")
        upstream = {n for n, attrs in found.items() if NOSELECT.lower() not in _lowered(attrs)}
        return sorted(upstream | self.user.registry.subscribed)

    async def subscribe(self, name: str) -> None:
        """Upstream; a name it refuses (many servers want an existing mailbox) is kept
        subscribed here, for the lifetime of the process."""
        if not await self._simple(b"SUBSCRIBE", name):
            self.user.registry.subscribed.add(name)

    async def unsubscribe(self, name: str) -> None:
        self.user.registry.subscribed.discard(name)
        await self._simple(b"UNSUBSCRIBE", name)

    async def _simple(self, verb: bytes, name: str) -> bool:
        """True when the upstream agreed."""
        user = self.user
        (await user.pool.naming()).upstream(name)  # NO [CANNOT], not kept as a local subscription

        try:
            await user.pool.command(verb, user.encoded(name))
        except CommandFailed:
            return False
        return True

    async def append_many(
        self, name: str, batch: Sequence[NewMessage], origin: object
    ) -> list[AppendResult]:
        """``IMultiAppendAccount``, provided when the upstream has MULTIAPPEND."""
        return await (await self.open(name)).append_many(batch, origin)

    async def open(self, name: str) -> ProxyMailbox:
        if name.upper() == INBOX:
            name = INBOX
        user = self.user
        try:
            (await user.pool.naming()).upstream(name)
        except errors.InvalidMailboxName as exc:  # the upstream can hold no such mailbox
            raise errors.MailboxNotFound(name) from exc
        box = user.registry.mailboxes.get(name)
        if box is None:
            box = user.registry.mailboxes[name] = ProxyMailbox(user, name)
        try:
            await box.check()
        except errors.BackendError:
            if not box.listeners and not box.live and user.registry.mailboxes.get(name) is box:
                del user.registry.mailboxes[name]
            raise
        return box

    # -- IAccountUsage, provided when the upstream has LIST-STATUS and STATUS=SIZE ---------

    async def usage(self) -> tuple[int, int]:
        """What the account holds, for our quotas: one command upstream, however many
        mailboxes (without it each APPEND asked a STATUS of every mailbox)."""
        return await self.user.usage()

    # -- IQuotaAccount, provided when the upstream has QUOTA (ProxyBackend.account) --------

    async def quota_roots(self, name: str) -> list[QuotaRoot]:
        """GETQUOTAROOT upstream: the roots it names, with the resources it told."""
        user = self.user
        named: list[str] = []
        told: dict[str, QuotaRoot] = {}

        def handler(response: wire.Response) -> bool:
            if response.kind == "QUOTAROOT":
                named.extend(wire.to_text(root) for root in response.data[1:])
            elif response.kind == "QUOTA":
                found = _quota_root(response)
                if found is not None:
                    told[found.name] = found
            else:
                return False
            return True

        await user.pool.naming()
        try:
            await user.pool.command(b"GETQUOTAROOT", user.encoded(name), handler=handler)
        except CommandFailed as exc:
            raise await user.mailbox_error(name, exc) from exc
        return [told.get(root, QuotaRoot(root)) for root in named]

    async def quota(self, root: str) -> QuotaRoot | None:
        told: list[QuotaRoot] = []

        def handler(response: wire.Response) -> bool:
            found = _quota_root(response) if response.kind == "QUOTA" else None
            if found is not None:
                told.append(found)
            return found is not None

        try:
            await self.user.pool.command(b"GETQUOTA", wire.string(root), handler=handler)
        except CommandFailed:
            return None  # no such root (RFC 9208 4.2: a NO)
        return told[0] if told else None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.user.session_ended()


def _quota_root(response: wire.Response) -> QuotaRoot | None:
    """``* QUOTA root (resource usage limit ...)`` as read; None when malformed."""
    if len(response.data) != 2 or not isinstance(response.data[1], list):
        return None
    items = response.data[1]
    resources = []
    for index in range(0, len(items) - 2, 3):
        resource, usage, limit = items[index : index + 3]
        if isinstance(resource, str) and isinstance(usage, int) and isinstance(limit, int):
            resources.append((resource.upper(), usage, limit))
    return QuotaRoot(wire.to_text(response.data[0]), tuple(resources))


def _lowered(attrs: frozenset[str]) -> set[str]:
    return {a.lower() for a in attrs}
