"""Per-user quotas (RFC 9208): the limits the configuration sets, what an account uses, and
the check APPEND and COPY make before they store.

Every mailbox of a user is under one quota root, named ``""``.  Two resources:
``STORAGE`` (units of 1024 octets, the sum of the messages' RFC822.SIZE rounded up) and
``MESSAGE`` (a count).  Usage is read from the counts each backend keeps
(``MailboxStatus.size`` and ``.messages`` of every mailbox): no message is looked at, so a
check costs one ``status()`` per mailbox of the account.

Concurrent additions for one user in one process cannot overshoot a limit: each reserves
what it adds before it reads the usage (:class:`QuotaLedger`) and counts the reservations
that were in flight when it started, so of two racing additions the later one always sees
the earlier, stored or not.  Across worker processes (``--workers N``) nothing is shared:
the overshoot is bounded by what the other processes have in flight at that moment.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailserv import errors
from mailserv.interfaces import NOSELECT, IAccount, IAccountUsage, IMailbox
from mailserv.slicing import TimeSlices

if TYPE_CHECKING:
    from mailserv.imap.session import Session

KIB = 1024
"""Octets in one unit of STORAGE (RFC 9208 5.1)."""
ROOT = ""
"""The one quota root of every user."""


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """One user's limits; 0 means no limit on that resource."""

    storage: int = 0
    """KiB (units of 1024 octets)."""
    messages: int = 0

    @property
    def limited(self) -> bool:
        return bool(self.storage or self.messages)


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """The limits of every user: ``default``, and ``users`` overriding it by name (a
    per-user entry is complete: the configuration fills its missing keys from the default)."""

    default: QuotaLimits = QuotaLimits()
    users: Mapping[str, QuotaLimits] = field(default_factory=dict)

    def limits_for(self, username: str | None) -> QuotaLimits:
        if username is None:
            return QuotaLimits()
        return self.users.get(username, self.default)

    @classmethod
    def from_plain(cls, raw: Mapping[str, object]) -> QuotaPolicy:
        """From ``dataclasses.asdict`` of one (the workers' configuration is JSON)."""
        default = raw.get("default")
        users = raw.get("users")
        assert isinstance(default, dict) and isinstance(users, dict)
        return cls(
            QuotaLimits(**default),
            {str(name): QuotaLimits(**limits) for name, limits in users.items()},
        )


def kib(octets: int) -> int:
    """Octets in units of STORAGE, rounded up."""
    return -(-octets // KIB)


@dataclass(frozen=True, slots=True)
class Usage:
    octets: int
    messages: int

    @property
    def storage(self) -> int:
        return kib(self.octets)


async def account_usage(account: IAccount) -> Usage:
    """The sum of the kept counts of every mailbox of ``account`` (added up by the account
    itself when it can: ``IAccountUsage``)."""
    if IAccountUsage.providedBy(account):
        octets, messages = await IAccountUsage(account).usage()
        return Usage(octets, messages)
    octets = messages = 0
    for info in await account.list_mailboxes():
        if NOSELECT in info.attributes:
            continue
        try:
            box = await account.open(info.name)
            counts = await box.status()
        except (errors.MailboxNotFound, errors.MailboxNotSelectable):
            continue  # deleted meanwhile by another session
        octets += counts.size
        messages += counts.messages
    return Usage(octets, messages)


def exceeded(limits: QuotaLimits, usage: Usage) -> str | None:
    """The resource ``usage`` goes beyond, or None."""
    if limits.storage and usage.octets > limits.storage * KIB:
        return "STORAGE"
    if limits.messages and usage.messages > limits.messages:
        return "MESSAGE"
    return None


class QuotaLedger:
    """What each user's additions in flight in this process will add, until stored."""

    def __init__(self) -> None:
        self._pending: dict[str, dict[int, Usage]] = {}
        self._tokens = itertools.count()

    def reserve(self, username: str, adds: Usage) -> tuple[int, Usage]:
        """Note ``adds``; its token and the sum of the user's other reservations now."""
        pending = self._pending.setdefault(username, {})
        others = Usage(
            sum(u.octets for u in pending.values()), sum(u.messages for u in pending.values())
        )
        token = next(self._tokens)
        pending[token] = adds
        return token, others

    def release(self, username: str, token: int) -> None:
        pending = self._pending.get(username, {})
        pending.pop(token, None)
        if not pending:
            self._pending.pop(username, None)


def _limits(session: Session) -> QuotaLimits:
    return session.settings.quota.limits_for(session.username)


async def copied(session: Session, box: IMailbox, uids: Sequence[int]) -> Usage:
    """What COPY of ``uids`` from ``box`` adds (their sizes are read only when the user
    has a limit to check them against)."""
    if not _limits(session).limited:
        return Usage(0, len(uids))
    octets = 0
    async for part in TimeSlices(session.services.clock).batches(uids):
        octets += sum(meta.size for meta in await box.fetch(part))
    return Usage(octets, len(uids))


@asynccontextmanager
async def charge(session: Session, adds: Usage) -> AsyncIterator[None]:
    """Around storing ``adds`` into the session's account: QuotaExceeded (NO [OVERQUOTA])
    before anything is stored if it would not fit."""
    username, account = session.username, session.account
    if username is None or account is None:
        yield
        return
    async with charge_account(session.services.quota, username, account, _limits(session), adds):
        yield


@asynccontextmanager
async def charge_account(
    ledger: QuotaLedger, username: str, account: IAccount, limits: QuotaLimits, adds: Usage
) -> AsyncIterator[None]:
    """``charge`` for any caller that stores into ``username``'s ``account`` (delivery as
    well as a session), with the process's ``ledger`` of additions in flight."""
    if not limits.limited or not adds.messages:
        yield
        return
    token, others = ledger.reserve(username, adds)
    try:
        used = await account_usage(account)
        after = Usage(
            used.octets + others.octets + adds.octets,
            used.messages + others.messages + adds.messages,
        )
        resource = exceeded(limits, after)
        if resource == "STORAGE":
            raise errors.QuotaExceeded(
                f"Over quota: {after.storage} KiB would exceed the {limits.storage} KiB limit"
            )
        if resource == "MESSAGE":
            raise errors.QuotaExceeded(
                f"Over quota: {after.messages} messages would exceed the limit of {limits.messages}"
            )
        yield
    finally:
        ledger.release(username, token)
