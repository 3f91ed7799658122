"""tinystore: the smallest complete mailserv backend, written against the backend kit.

It keeps mail in process memory, as plainly as possible (a list of messages per mailbox,
every lookup a scan), and passes the whole contract suite (``tests/test_example_backend.py``
runs ``mailserv.testing.BackendContract`` against it).  The README's "Writing a backend"
walks through it.  What the kit gives it: the hierarchy rules (``Hierarchy``), the listener
fan-out (``ListenerSet``), the modseq and expunge log (``ModseqLog``) and option parsing
(``OptionSchema``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from mailserv.backends.kit import (
    Hierarchy,
    Int,
    Listened,
    ListenerSet,
    ModseqLog,
    OptionSchema,
    plan_store,
)
from mailserv.errors import MailboxNotFound, MailboxNotSelectable, MessageTooLarge
from mailserv.interfaces import (
    DELETED,
    RECENT,
    SEEN,
    AppendResult,
    Changes,
    CopyResult,
    FlagChange,
    IAccount,
    IBackend,
    IBackendFactory,
    IMailbox,
    MailboxInfo,
    MailboxStatus,
    MessageMeta,
    StoreMode,
    StoreResult,
)
from mailserv.message.info import MessageInfo
from mailserv.message.parse import parse_message

# -- step 1: the factory and its options -----------------------------------------------------

MAX_SIZE = Int("Largest message APPEND accepts, bytes [default: 10485760].", 10 << 20, 1)
OPTIONS = OptionSchema("tinystore", {"max-size": MAX_SIZE})


@implementer(IBackendFactory)
class TinyFactory:
    name = "tinystore"
    description = "The README's example: mail in memory, kept as plainly as possible."
    options = OPTIONS.help

    def build(self, options: dict[str, str], data_dir: str, reactor: IReactorTime) -> TinyBackend:
        return TinyBackend(OPTIONS.parse(options, data_dir)[MAX_SIZE])


@implementer(IBackend)
class TinyBackend:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.uidvalidities = itertools.count(int(time.time()))
        self.accounts: dict[str, TinyAccount] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def account(self, username: str) -> TinyAccount:
        return self.accounts.setdefault(username, TinyAccount(self))

    def credentials_checker(self) -> None:
        return None


# -- step 2: the account, with the hierarchy rules from the kit ------------------------------


@implementer(IAccount)
class TinyAccount:
    def __init__(self, backend: TinyBackend) -> None:
        self.backend = backend
        self.boxes: dict[str, TinyMailbox | None] = {}  # None: a \Noselect name
        self.subscribed: set[str] = set()
        self.make("INBOX")

    def make(self, name: str, special_use: str | None = None) -> None:
        self.boxes[name] = TinyMailbox(self, name, special_use)

    def rules(self) -> Hierarchy:
        return Hierarchy({name: box is not None for name, box in self.boxes.items()})

    async def list_mailboxes(self) -> list[MailboxInfo]:
        return self.rules().listing(lambda name: self.get(name).attributes)

    async def create(self, name: str, special_use: str | None = None) -> None:
        plan = self.rules().create(name)
        for parent in plan.parents:
            self.make(parent)
        self.make(plan.name, special_use)

    async def delete(self, name: str) -> None:
        plan = self.rules().delete(name)
        box = self.boxes.pop(name)
        if box is not None:
            await box.expunge([m.uid for m in box.messages], None, everything=True)
        if plan.keep:
            self.boxes[name] = None

    async def rename(self, old: str, new: str) -> None:
        plan = self.rules().rename(old, new)
        if plan.inbox is not None:  # RENAME INBOX: a new mailbox gets INBOX's messages
            await self.create(new)
            inbox = self.get("INBOX")
            await inbox.move([m.uid for m in inbox.messages], new, None)
            return
        for name, target in plan.moves:
            box = self.boxes[target] = self.boxes.pop(name)
            if box is not None:
                box.name = target
        for parent in plan.parents:
            self.make(parent)

    async def subscriptions(self) -> list[str]:
        return sorted(self.subscribed)

    async def subscribe(self, name: str) -> None:
        self.subscribed.add(name)

    async def unsubscribe(self, name: str) -> None:
        self.subscribed.discard(name)

    async def open(self, name: str) -> TinyMailbox:
        return self.get(name)

    def get(self, name: str) -> TinyMailbox:
        if name not in self.boxes:
            raise MailboxNotFound(name)
        box = self.boxes[name]
        if box is None:
            raise MailboxNotSelectable(name)
        return box

    async def close(self) -> None:
        pass


# -- step 3: the mailbox, with listeners and modseqs from the kit ----------------------------


@dataclass
class Message:
    uid: int
    raw: bytes
    flags: frozenset[str]
    date: datetime
    modseq: int
    info: MessageInfo  # parsed once, when the message arrived: FETCH and SEARCH read it
    recent: bool = True  # no session has claimed it yet

    def meta(self) -> MessageMeta:
        return MessageMeta(self.uid, self.flags, self.date, len(self.raw), self.modseq, self.info)


@implementer(IMailbox)
class TinyMailbox(Listened):
    def __init__(self, account: TinyAccount, name: str, special_use: str | None) -> None:
        self.account = account
        self.name = name
        self.attributes = frozenset({special_use} if special_use else ())
        self.uidvalidity = next(account.backend.uidvalidities)
        self.uidnext = 1
        self.messages: list[Message] = []
        self.modseqs = ModseqLog()
        self.listeners = ListenerSet()

    def find(self, uids: Sequence[int]) -> list[Message]:
        wanted = set(uids)
        return [m for m in self.messages if m.uid in wanted]

    async def status(self) -> MailboxStatus:
        return MailboxStatus(
            uidvalidity=self.uidvalidity,
            uidnext=self.uidnext,
            messages=len(self.messages),
            unseen=sum(SEEN not in m.flags for m in self.messages),
            recent=sum(m.recent for m in self.messages),
            highestmodseq=self.modseqs.highest,
            size=sum(len(m.raw) for m in self.messages),
        )

    async def uids(self) -> list[int]:
        return [m.uid for m in self.messages]

    async def fetch(self, uids: Sequence[int]) -> list[MessageMeta]:
        return [m.meta() for m in self.find(uids)]

    async def content(self, uid: int) -> bytes:
        for m in self.find([uid]):
            return m.raw
        raise KeyError(uid)

    async def append(
        self, message: bytes, flags: frozenset[str], internaldate: datetime | None, origin: object
    ) -> AppendResult:
        if len(message) > self.account.backend.max_size:
            raise MessageTooLarge(f"messages are limited to {self.account.backend.max_size} bytes")
        uid = self.add(message, parse_message(message), flags, internaldate or datetime.now(UTC))
        self.listeners.added(self, [uid], origin)
        return AppendResult(self.uidvalidity, uid)

    def add(self, raw: bytes, info: MessageInfo, flags: frozenset[str], date: datetime) -> int:
        uid, self.uidnext = self.uidnext, self.uidnext + 1
        self.messages.append(Message(uid, raw, flags - {RECENT}, date, self.modseqs.bump(), info))
        return uid

    async def store(
        self,
        uids: Sequence[int],
        mode: StoreMode,
        flags: frozenset[str],
        origin: object,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        # Only real changes count; UNCHANGEDSINCE refuses messages changed after it.
        plan, failed = plan_store(self.find(uids), mode, flags - {RECENT}, unchangedsince)
        changed: list[FlagChange] = []
        if plan:
            modseq = self.modseqs.bump()  # one modseq for the whole STORE
            for m, new in plan:
                m.flags, m.modseq = new, modseq
                changed.append(FlagChange(m.uid, new, modseq))
            self.listeners.flags_changed(self, changed, origin)
        return StoreResult(changed, failed)

    async def copy(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        target = self.account.get(destination)
        pairs = [(m.uid, target.add(m.raw, m.info, m.flags, m.date)) for m in self.find(uids)]
        target.listeners.added(target, [new for _, new in pairs], origin)
        return CopyResult(target.uidvalidity, pairs)

    async def move(self, uids: Sequence[int], destination: str, origin: object) -> CopyResult:
        result = await self.copy(uids, destination, origin)
        await self.expunge([old for old, _ in result.pairs], origin, everything=True)
        return result

    async def expunge(
        self, uids: Sequence[int] | None, origin: object, everything: bool = False
    ) -> list[int]:
        """``everything``: MOVE and DELETE remove messages whatever their flags."""
        chosen = self.messages if uids is None else self.find(uids)
        gone = [m.uid for m in chosen if everything or DELETED in m.flags]
        if gone:
            self.messages = [m for m in self.messages if m.uid not in set(gone)]
            self.modseqs.expunged(gone, self.modseqs.bump())
            self.listeners.expunged(self, gone, origin)
        return gone

    async def claim_recent(self) -> list[int]:
        claimed = [m.uid for m in self.messages if m.recent]
        for m in self.messages:
            m.recent = False
        return claimed

    async def changes_since(self, modseq: int) -> Changes:
        return self.modseqs.changes([m.meta() for m in self.messages], modseq)


factory = TinyFactory()
