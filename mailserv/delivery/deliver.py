"""One delivery core for every way mail comes in (LMTP, ``mailserv deliver``).

A recipient address ``user+folder@domain`` names a user of the user store the portal
signs in against (``user@domain`` is tried first, then ``user``) and, after ``+``, a
folder: the message goes there when that mailbox exists, else to INBOX.  Where a message
goes and with which flags is decided by an :class:`IDeliveryPolicy` (the seam a Sieve
filter plugs into later); the default one does what this paragraph says.

The message is stored as IMAP APPEND stores it (parsed once by the backend, internal date
now), after the same quota check (:func:`mailserv.quota.charge_account`).  Each recipient
gets an :class:`Outcome` with its SMTP reply: never an exception, so no message is lost
silently: what the store refuses for a reason we know is a permanent failure with that
reason, anything else a temporary one (451 4.3.0, the MTA retries) with the error logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from mailserv import errors
from mailserv.events.metrics import IMetrics, NoMetrics
from mailserv.events.report import tell_added
from mailserv.events.sink import IEventSink
from mailserv.interfaces import INBOX, IAccount, IBackend, IMailbox
from mailserv.quota import QuotaLedger, QuotaPolicy, StoredQuota, Usage, charge_account
from mailserv.slicing import Turns

if TYPE_CHECKING:
    from mailserv.auth.passwd import PasswdEntry
    from mailserv.auth.users import IUserStore
    from mailserv.imap.factory import CommandsInFlight

__all__ = [
    "Decision",
    "DefaultPolicy",
    "Deliverer",
    "Envelope",
    "IDeliveryPolicy",
    "Outcome",
    "Recipient",
    "parse_recipient",
]

_log = Logger()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The reply for one recipient: SMTP ``code``, enhanced ``status`` (RFC 3463), text."""

    code: int
    status: str
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def result(self) -> str:
        """``delivered``, ``deferred`` (4xx: the MTA retries) or ``refused`` (5xx)."""
        return "delivered" if self.ok else "deferred" if self.temporary else "refused"

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def reply(self) -> bytes:
        """The reply line, CRLF included (ENHANCEDSTATUSCODES form)."""
        return f"{self.code} {self.status} {self.text}\r\n".encode("utf-8", "replace")


DELIVERED = Outcome(250, "2.0.0", "Delivered")
UNKNOWN_USER = Outcome(550, "5.1.1", "No such user here")
OVER_QUOTA_TEXT = "Mailbox full: over quota"
TOO_BIG = Outcome(552, "5.3.4", "Message too big for this server")
MAX_REJECT_TEXT = 200


def rejected(reason: str) -> Outcome:
    """550 5.7.1 with ``reason`` on one line (RFC 5429 2.1's LMTP refusal)."""
    text = " ".join(reason.split())[:MAX_REJECT_TEXT] or "Rejected"
    return Outcome(550, "5.7.1", "".join(c if c.isprintable() else "?" for c in text))


TRY_LATER = Outcome(451, "4.3.0", "Temporary failure storing the message; try again later")


@dataclass(frozen=True, slots=True)
class Recipient:
    """A resolved recipient: the user's name in the store and the folder asked for."""

    user: str
    folder: str | None = None
    address: str = ""
    """As the MTA gave it (for logs and trace headers)."""
    quota: StoredQuota = field(default_factory=StoredQuota)
    """The limits the user store sets for the user (read when the recipient was resolved)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the policy may look at besides the message: the SMTP envelope."""

    sender: str
    """Reverse path without angle brackets (empty for a bounce)."""
    recipient: Recipient


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one message goes and with which flags."""

    folder: str = INBOX
    flags: frozenset[str] = frozenset()
    also: tuple[tuple[str, frozenset[str]], ...] = ()
    """Further copies, each (folder, flags): a Sieve script's several fileinto."""
    discard: bool = False
    """Store it nowhere, and answer that it was delivered (Sieve's discard)."""
    reject: str | None = None
    """Refuse it for this recipient with this reason (Sieve's reject, RFC 5429)."""
    answer: Outcome | None = None
    """Store nothing and answer this (a redirect that cannot be sent now: 451 4.4.0)."""
    after: tuple[Callable[[], Awaitable[None]], ...] = ()
    """Work to do once the message is stored (a vacation reply); its failure is logged."""


class IDeliveryPolicy(Interface):
    """Decides, per recipient, the folder and flags of a delivered message (a Sieve filter
    provides this later; :class:`DefaultPolicy` is the built-in one)."""

    def decide(  # type: ignore[empty-body]
        account: IAccount, envelope: Envelope, message: bytes
    ) -> Awaitable[Decision]:
        """The decision; raising makes the delivery a temporary failure."""


@implementer(IDeliveryPolicy)
class DefaultPolicy:
    """The recipient's ``+folder`` when that mailbox exists, else INBOX; no flags."""

    async def decide(self, account: IAccount, envelope: Envelope, message: bytes) -> Decision:
        folder = envelope.recipient.folder
        if folder and await selectable(account, folder):
            return Decision(folder)
        return Decision(INBOX)


async def selectable(account: IAccount, name: str) -> bool:
    """Whether ``name`` is a mailbox of ``account`` that can take messages."""
    try:
        await account.open(name)
    except (errors.MailboxNotFound, errors.MailboxNotSelectable, errors.InvalidMailboxName):
        return False
    return True


def parse_recipient(address: str) -> list[tuple[str, str | None]]:
    """The (user name, folder) pairs ``address`` may mean, in the order to try them:
    ``user+folder@domain`` gives ``user@domain`` then ``user``, each with ``folder``
    (None without a ``+``)."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    base, plus, detail = local.partition("+")
    folder = detail if plus and detail else None
    names = [f"{base}@{domain}", base] if domain else [base]
    return [(name, folder) for name in names if name]


UserLookup = Callable[[str], Awaitable["PasswdEntry | None"]]
"""A user name's entry in the store the portal signs in against, None if not there."""


def store_lookup(store: IUserStore) -> UserLookup:
    return store.find


class Deliverer:
    """Delivers messages into ``backend``'s accounts (the backend must be started).

    ``known`` finds a user name's entry (None: no such user); ``quota`` and ``ledger``
    are the server's quota policy and its record of additions in flight (shared with the
    IMAP sessions of this process, so APPEND and delivery count each other); ``metrics``
    counts each recipient's outcome; ``events`` (a sink, and the turns its reports share
    with the sessions or a clock of their own) hears of each message stored;
    ``in_flight``: the IMAP side's count of commands running, which a delivery joins (the
    process's collector sweeps only when nothing runs: ``mailserv.collector``).
    """

    def __init__(
        self,
        backend: IBackend,
        known: UserLookup,
        quota: QuotaPolicy,
        ledger: QuotaLedger,
        policy: IDeliveryPolicy | None = None,
        metrics: IMetrics | None = None,
        events: tuple[IEventSink, Turns | IReactorTime] | None = None,
        in_flight: CommandsInFlight | None = None,
    ) -> None:
        self.backend = backend
        self.in_flight = in_flight
        self.events = events
        self.metrics: IMetrics = metrics if metrics is not None else NoMetrics()
        self.known = known
        self.quota = quota
        self.ledger = ledger
        self.policy: IDeliveryPolicy = policy if policy is not None else DefaultPolicy()

    async def resolve(self, address: str) -> Recipient | None:
        """The recipient ``address`` names, or None for no user of ours.  Raises if the
        user store cannot be asked (the caller answers a temporary failure)."""
        for user, folder in parse_recipient(address):
            entry = await self.known(user)
            if entry is not None:
                return Recipient(user, folder, address, entry.quota)
        return None

    async def deliver(self, recipient: Recipient, message: bytes, sender: str = "") -> Outcome:
        """Store ``message`` for ``recipient``; the outcome, never an exception."""
        in_flight = self.in_flight
        if in_flight is None:
            outcome = await self._outcome(recipient, message, sender)
        else:
            in_flight.begin()
            try:
                outcome = await self._outcome(recipient, message, sender)
            finally:
                in_flight.end()
        self.metrics.delivery(outcome.result)
        return outcome

    async def _outcome(self, recipient: Recipient, message: bytes, sender: str) -> Outcome:
        try:
            return await self._deliver(recipient, message, sender)
        except errors.QuotaExceeded as exc:
            return Outcome(552, "5.2.2", f"{OVER_QUOTA_TEXT} ({exc})")
        except errors.MessageTooLarge:
            return TOO_BIG
        except Exception:  # noqa: BLE001 - any failure: the MTA keeps the message and retries
            _log.failure(
                "Delivery to {user} ({address}) failed; answered a temporary failure",
                user=recipient.user,
                address=recipient.address,
            )
            return TRY_LATER

    async def _tell(self, user: str, folder: str, box: IMailbox, uid: int) -> None:
        """``message-added`` for the webhooks; the message is stored whatever happens here."""
        if self.events is None:
            return
        sink, turns = self.events
        try:
            await tell_added(sink, user, folder, box, [uid], turns)
        except Exception:  # noqa: BLE001 - a report lost must not make the MTA send it again
            _log.failure("message-added not reported for {user}/{folder}", user=user, folder=folder)

    async def _deliver(self, recipient: Recipient, message: bytes, sender: str) -> Outcome:
        account = await self.backend.account(recipient.user)
        try:
            decision = await self.policy.decide(account, Envelope(sender, recipient), message)
            if decision.reject is not None:
                return rejected(decision.reject)
            if decision.answer is not None:
                return decision.answer
            places = [] if decision.discard else [(decision.folder, decision.flags)]
            places += decision.also
            limits = self.quota.limits_with(recipient.user, recipient.quota)
            adds = Usage(len(message) * len(places), len(places))
            async with charge_account(self.ledger, recipient.user, account, limits, adds):
                for folder, flags in places:
                    box = await account.open(folder)
                    result = await box.append(message, flags, None, self)
                    _log.debug(
                        "Delivered to {user}/{folder} uid {uid}",
                        user=recipient.user,
                        folder=folder,
                        uid=result.uid,
                    )
                    await self._tell(recipient.user, folder, box, result.uid)
        finally:
            await account.close()
        for work in decision.after:
            try:
                await work()
            except Exception:  # noqa: BLE001 - the message is stored: report it delivered
                _log.failure("After delivering to {user}: a follow-up failed", user=recipient.user)
        return DELIVERED
