"""Per-user quotas (RFC 9208): the limits the configuration and the user store set, what an
account uses, and the check APPEND and COPY make before they store.

A user store sets a user's limits as Dovecot does, in ``userdb_quota_rule*`` extra fields
(the SQL users table's quota columns are read into the same form): for each resource the
store's limit wins over the configuration's.  A session reads them once, at its first need
after login (:func:`session_limits`); delivery when it resolves the recipient.

Every mailbox of a user is under one quota root, named ``""``; a mailbox shared with others
stays under its owner's (:func:`payer_for`: whoever stores there, the owner pays).  Two resources:
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
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.logger import Logger

from mailserv import errors
from mailserv.auth.users import portal_store
from mailserv.imap import shared
from mailserv.interfaces import DELIMITER, NOSELECT, IAccount, IAccountUsage, IMailbox
from mailserv.slicing import TimeSlices

if TYPE_CHECKING:
    from mailserv.auth.passwd import PasswdEntry
    from mailserv.imap.session import Session

_log = Logger()

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

    def limits_with(self, username: str, stored: StoredQuota) -> QuotaLimits:
        """``username``'s limits, each resource the user store sets taken from there (the
        store's entry wins over ``users``, which wins over ``default``)."""
        configured = self.limits_for(username)
        return QuotaLimits(
            configured.storage if stored.storage is None else stored.storage,
            configured.messages if stored.messages is None else stored.messages,
        )

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


# -- limits kept in the user store -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredQuota:
    """The limits a user store sets for one user; None where it sets none (the
    configuration's limit holds for that resource), 0 for no limit."""

    storage: int | None = None
    """KiB."""
    messages: int | None = None


RULE_KEY = re.compile(r"(?:userdb_)?quota_rule\d*")
"""Dovecot's extra fields of a quota rule: ``userdb_quota_rule``, ``userdb_quota_rule2``..."""
FIELD = "userdb_quota_rule"
"""The field ``mailserv user set`` writes (a second rule goes in ``FIELD + "2"``)."""
_UNITS = {"b": 1, "k": KIB, "m": KIB**2, "g": KIB**3, "t": KIB**4}
_SIZE = re.compile(r"([0-9]{1,19})([bkmgt]?)", re.IGNORECASE)


def parse_storage(text: str, unit: str = "k") -> int:
    """KiB (rounded up) of a Dovecot size: digits and an optional suffix B, k, M, G or T
    (1024-based; without one, ``unit``).  ValueError, saying why, for anything else."""
    if text[:1] in ("+", "-"):
        raise ValueError("relative limits (+/-) are not supported")
    if text.endswith("%"):
        raise ValueError("percentage limits are not supported")
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (digits and B, k, M, G or T)")
    return kib(int(match[1]) * _UNITS[(match[2] or unit).lower()])


def parse_count(text: str) -> int:
    """A message count: digits only.  ValueError, saying why, for anything else."""
    if text[:1] in ("+", "-"):
        raise ValueError("relative limits (+/-) are not supported")
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ValueError(f"{text!r} is not a message count (digits)")
    return int(text)


def storage_text(kib_: int) -> str:
    """``kib_`` as Dovecot writes a size, in the largest unit that divides it exactly."""
    for suffix, factor in (("T", KIB**3), ("G", KIB**2), ("M", KIB)):
        if kib_ and kib_ % factor == 0:
            return f"{kib_ // factor}{suffix}"
    return f"{kib_}k"


def parse_rule(value: str) -> StoredQuota:
    """One rule, ``*:storage=1G``, ``*:messages=10000`` or ``*:storage=1G:messages=10``.
    ValueError, saying why, for what mailserv does not do (per-mailbox rules, relative
    or percentage limits, other limit names)."""
    mailbox, colon, items = value.partition(":")
    if not colon:
        raise ValueError("no ':' between the mailbox pattern and the limits")
    if mailbox != "*":
        raise ValueError("only '*' rules are supported (one quota root for all mailboxes)")
    storage = messages = None
    for item in items.split(":"):
        name, _, number = item.partition("=")
        if name == "storage":
            storage = parse_storage(number)
        elif name == "bytes":
            storage = parse_storage(number, unit="b")
        elif name == "messages":
            messages = parse_count(number)
        else:
            raise ValueError(f"unsupported limit {name!r} (storage, bytes, messages)")
    return StoredQuota(storage, messages)


def stored_quota(fields: Mapping[str, str], user: str) -> StoredQuota:
    """The quota rules among a user's extra fields; a later rule wins for the resources it
    sets.  A rule mailserv cannot follow is logged and left out."""
    storage = messages = None
    for key, value in fields.items():
        if RULE_KEY.fullmatch(key) is None:
            continue
        try:
            rule = parse_rule(value)
        except ValueError as exc:
            _log.warn(
                "Quota rule {key}={value!r} of user {user!r} ignored: {why}",
                key=key,
                value=value[:100],
                user=user[:64],
                why=exc,
            )
            continue
        storage = storage if rule.storage is None else rule.storage
        messages = messages if rule.messages is None else rule.messages
    return StoredQuota(storage, messages)


def rule_fields(quota: StoredQuota) -> list[str]:
    """The extra-field words that set ``quota`` (``userdb_quota_rule=*:storage=1G``...)."""
    limits = []
    if quota.storage is not None:
        limits.append(f"storage={storage_text(quota.storage)}")
    if quota.messages is not None:
        limits.append(f"messages={quota.messages}")
    return [f"{FIELD}=*:{':'.join(limits)}"] if limits else []


def without_rules(words: Iterable[str]) -> list[str]:
    """Extra-field words, the quota rules left out."""
    return [w for w in words if RULE_KEY.fullmatch(w.partition("=")[0]) is None]


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


async def session_limits(session: Session) -> QuotaLimits:
    """The signed-in user's limits: the configuration's, overridden by what the user store
    sets, looked up once per login and kept on the session (no limits before login)."""
    username = session.username
    if username is None:
        return QuotaLimits()
    cached = session.quota_limits
    if cached is not None:
        return cached
    limits = await limits_of(session, username)
    if session.username == username:  # not signed out (or in again) meanwhile
        session.quota_limits = limits
    return limits


async def limits_of(session: Session, username: str) -> QuotaLimits:
    """Any user's limits, looked up now (the owner of a shared mailbox)."""
    store = portal_store(session.services.portal)
    entry = None if store is None else await store.find(username)
    return user_limits(session.settings.quota, username, entry)


@dataclass(frozen=True, slots=True)
class Payer:
    """Whose quota an addition counts against: the owner of the mailbox it goes into."""

    username: str
    account: IAccount
    """The owner's own account (never one that also lists other users' mailboxes)."""
    limits: QuotaLimits
    root: str = ROOT
    """The quota root's name as the session sees it (another user's: ``Other Users/<owner>``)."""


async def payer_for(session: Session, name: str | None = None, needed: str = "i") -> Payer | None:
    """Who pays for what is stored into ``name`` (as the session names it; None: the user's
    own mailboxes): the signed-in user, or the owner of another user's mailbox (RFC 4314
    shared mailboxes), once the user is known to have the ``needed`` rights there (NO
    [NOPERM]: the owner's quota is told to nobody who may not store there).  None before
    login."""
    username, account = session.username, session.account
    if username is None or account is None:
        return None
    found = shared.acl_account(session)
    if found is None:
        return Payer(username, account, await session_limits(session))
    where = None if name is None else (await found.checked(name, needed, "Storing into it"))[0]
    if where is None or where.owner is None:
        return Payer(username, found.inner, await session_limits(session))
    limits = await limits_of(session, where.owner)
    return Payer(where.owner, where.account, limits, owner_root(where.owner))


def owner_root(owner: str) -> str:
    """The name of another user's quota root, as the sessions it shares mailboxes with see it."""
    return shared.OTHER_USERS + DELIMITER + owner


async def root_payer(session: Session, root: str) -> Payer | None:
    """The payer whose quota root is ``root``: the user's own (``""``), or the owner of a
    mailbox shared with the user (``Other Users/<owner>``, once it lets the user see one);
    None for any other name."""
    if root == ROOT:
        return await payer_for(session)
    found = shared.acl_account(session)
    owner = root.removeprefix(shared.OTHER_USERS + DELIMITER)
    if found is None or owner == root:
        return None
    for entry in await found.acls.shared_mailboxes(found.user):
        if entry.owner == owner and {"l", "r"} & shared.rights_of(found.user, entry.acl):
            name = DELIMITER.join((shared.OTHER_USERS, owner, entry.name))
            return await payer_for(session, name, needed="")
    return None


def user_limits(policy: QuotaPolicy, username: str, entry: PasswdEntry | None) -> QuotaLimits:
    """``username``'s limits given the user store's ``entry`` (None: not in a store)."""
    if entry is None:
        return policy.limits_for(username)
    return policy.limits_with(username, entry.quota)


async def copied(
    session: Session, payer: Payer, box: IMailbox, uids: Sequence[int], move: bool
) -> Usage:
    """What COPY (or MOVE) of ``uids`` from ``box`` adds to ``payer``'s usage: nothing for
    a MOVE between mailboxes of one user; their sizes are read only when the payer has a
    limit to check them against."""
    if move and _owner(session, box) == payer.username:
        return Usage(0, 0)
    if not payer.limits.limited:
        return Usage(0, len(uids))
    octets = 0
    async for part in TimeSlices(session.services.turns).batches(uids):
        octets += sum(meta.size for meta in await box.fetch(part))
    return Usage(octets, len(uids))


def _owner(session: Session, box: IMailbox) -> str | None:
    """The owner of a mailbox the session has open."""
    found = shared.acl_account(session)
    where = None if found is None else found.where_open(box)
    return session.username if where is None else where.owner


@asynccontextmanager
async def charge(session: Session, adds: Usage, payer: Payer | None = None) -> AsyncIterator[None]:
    """Around storing ``adds`` into ``payer``'s mailboxes (by default the session user's own):
    QuotaExceeded (NO [OVERQUOTA]) before anything is stored if it would not fit."""
    if payer is None:
        payer = await payer_for(session)
    if payer is None:
        yield
        return
    ledger = session.services.quota
    async with charge_account(ledger, payer.username, payer.account, payer.limits, adds):
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
