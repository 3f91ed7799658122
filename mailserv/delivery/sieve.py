"""Sieve filtering at delivery: :class:`SievePolicy`, the delivery policy that runs each
recipient's active script (kept by :class:`mailserv.delivery.sievestore.ScriptStore`).

A user without an active script gets :class:`DefaultPolicy`'s decision.  A script is
compiled once per version (its file's inode, size and modification time) and the tree is
cached.  What a run decides becomes the :class:`Decision`: the folders with their flags
(a folder that does not exist is created for ``fileinto :create``, else the message goes
to INBOX and that is logged), discard, reject (550 5.7.1 for this recipient) and a
vacation reply done after the message is stored.  A script that does not compile or a
run that fails never loses the message: it goes to INBOX and the error is logged.

Mail goes out through the submission host (``--submission``, an
:class:`mailserv.delivery.submit.IMailSender`).  ``redirect`` (RFC 5228 4.2) is done before
the message is stored, one SMTP transaction per address, with the original envelope
sender (RFC 5228 4.2 allows copying it and requires ``<>`` to stay ``<>``; bounces then
reach the author, as with Dovecot's default) and a ``Delivered-To`` header naming the
user (RFC 9228), which is also the loop check: a message that already carries the user's
``Delivered-To`` is not redirected again but kept in INBOX.  When the submission host
cannot take it now, the recipient's delivery answers 451 4.4.0 and nothing is stored (the
MTA retries; redirects that did go are remembered in :class:`SentLog`, keyed by the
Message-ID, and not sent twice).  A permanent refusal keeps the message in INBOX.
Vacation replies go out with envelope sender ``<>`` once :class:`SentLog` says so;
a failure is logged and not retried.

Without a submission host: ``redirect`` is refused when a script is uploaded
(:func:`check_script`); one that got in another way keeps the message in INBOX and logs
why.  Vacation replies are written to the outbox directory
(:class:`mailserv.delivery.sievestore.Outbox`) for the operator's MTA to pick up.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from typing import TYPE_CHECKING

from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from mailserv import errors
from mailserv.delivery.deliver import (
    Decision,
    DefaultPolicy,
    Envelope,
    IDeliveryPolicy,
    Outcome,
    selectable,
)
from mailserv.delivery.sievescript import (
    MessageFacts,
    Result,
    Script,
    SieveError,
    SieveRuntimeError,
    compile_script,
    run,
)
from mailserv.delivery.sievestore import REDIRECT_MEMORY, Outbox, ScriptStore, SentLog
from mailserv.delivery.submit import IMailSender, SubmissionError
from mailserv.interfaces import INBOX, IAccount

if TYPE_CHECKING:
    from mailserv.delivery.sievescript import Action

__all__ = ["SievePolicy", "check_script", "sieve_policy", "sieve_store"]

_log = Logger()
MAX_CACHED = 1000
"""Compiled scripts kept (the users who got mail last)."""
_LIST_HEADERS = ("list-id", "list-help", "list-unsubscribe", "list-post", "list-owner")
_ROBOT_LOCALPARTS = ("mailer-daemon", "listserv", "majordomo", "postmaster")


def sieve_store(data_dir: str) -> ScriptStore:
    """The users' scripts of the server whose data directory is ``data_dir``."""
    return ScriptStore(os.path.join(data_dir, "sieve"))


def sent_log(data_dir: str) -> SentLog:
    """The record of vacation replies and redirects sent by the server whose data
    directory is ``data_dir``."""
    return SentLog(os.path.join(data_dir, "sieve", "sent.sqlite"))


def sieve_policy(data_dir: str, sender: IMailSender | None = None) -> SievePolicy:
    """The delivery policy of the server whose data directory is ``data_dir``, sending
    mail through ``sender`` (None: no submission host)."""
    outbox = Outbox(os.path.join(data_dir, "sieve", "outbox"))
    return SievePolicy(sieve_store(data_dir), outbox, sent_log(data_dir), sender)


def check_script(source: bytes, sends_mail: bool = False) -> Script:
    """``source`` compiled, or SieveError with what makes it unusable here (uploads);
    ``sends_mail``: the server has a submission host, so ``redirect`` can run."""
    script = compile_script(source)
    if "redirect" in script.uses and not sends_mail:
        raise SieveError(
            "redirect is not available: this server sends no mail (no submission host is set)"
        )
    return script


@implementer(IDeliveryPolicy)
class SievePolicy:
    """Runs the recipient's active script from ``store``; mail goes out through ``sender``
    (vacation replies to ``outbox`` without one); ``sent`` remembers what went."""

    def __init__(
        self,
        store: ScriptStore,
        outbox: Outbox,
        sent: SentLog,
        sender: IMailSender | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.sent = sent
        self.sender = sender
        self._cache: OrderedDict[str, tuple[object, Script | SieveError]] = OrderedDict()
        self._default = DefaultPolicy()

    async def _script(self, user: str) -> tuple[str, Script | SieveError] | None:
        found = self.store.active_stamp(user)
        if found is None:
            return None
        name, stamp = found
        cached = self._cache.get(user)
        if cached is not None and cached[0] == (name, stamp):
            self._cache.move_to_end(user)
            return name, cached[1]
        # Parsing a large script takes long: not on the reactor's thread.
        compiled = await deferToThread(_compile, self.store.get(user, name))
        self._cache[user] = ((name, stamp), compiled)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return name, compiled

    async def decide(self, account: IAccount, envelope: Envelope, message: bytes) -> Decision:
        user = envelope.recipient.user
        found = await self._script(user)
        if found is None:
            return await self._default.decide(account, envelope, message)
        name, script = found
        if isinstance(script, SieveError):
            _log.error(
                "Sieve script {name!r} of {user} cannot run ({error}); delivered to INBOX",
                name=name, user=user, error=str(script),
            )  # fmt: skip
            return Decision(INBOX)
        address = envelope.recipient.address.strip("<>")
        try:
            sender = envelope.sender
            facts, result = await deferToThread(_evaluate, script, message, sender, address)
        except Exception as exc:  # noqa: BLE001 - a script's failure never loses the message
            error = str(exc) if isinstance(exc, SieveRuntimeError) else repr(exc)
            _log.error(
                "Sieve script {name!r} of {user} failed ({error}); delivered to INBOX",
                name=name, user=user, error=error,
            )  # fmt: skip
            return Decision(INBOX)
        if result.reject is not None:
            return Decision(reject=result.reject)
        if result.redirects:
            answer = await self._redirect(envelope, facts, message, result)
            if answer is not None:
                return Decision(answer=answer)
        places = await self._places(account, user, result)
        after: tuple[Callable[[], Awaitable[None]], ...] = ()
        if result.vacation is not None:
            reply = self._vacation(user, address, facts, result.vacation)
            if reply is not None:
                after = (reply,)
        if not places:
            return Decision(discard=True, after=after)
        (folder, flags), *also = places
        return Decision(folder, flags, tuple(also), after=after)

    async def _places(
        self, account: IAccount, user: str, result: Result
    ) -> list[tuple[str, frozenset[str]]]:
        """The folders to store into, each once, with its flags."""
        folders = dict(result.folders)
        places: dict[str, frozenset[str]] = {}
        for folder, flags in folders.items():
            target = folder
            if folder.upper() == INBOX:
                target = INBOX
            elif not await selectable(account, folder):
                target = await self._create(account, user, folder, folder in result.create)
            places[target] = places.get(target, frozenset()) | frozenset(flags)
        return list(places.items())

    async def _redirect(
        self, envelope: Envelope, facts: MessageFacts, message: bytes, result: Result
    ) -> Outcome | None:
        """Send the redirects of ``result``; the answer when one cannot go now.  What cannot
        go at all leaves the message in INBOX (``result.folders``), logged."""
        user, targets = envelope.recipient.user, ", ".join(result.redirects)
        address = envelope.recipient.address.strip("<>")
        sender, own = self.sender, _own_addresses(user, address)
        why = None
        if sender is None:
            why = "this server sends no mail"
        elif any(a.lower() in own for _, a in getaddresses(facts.raw("delivered-to"))):
            why = f"the message was delivered to {user} before (a mail loop)"
        if why is not None or sender is None:
            _log.warn(
                "Sieve: {user}'s script redirects to {to}, but {why}; kept in INBOX",
                user=user, to=targets, why=why,
            )  # fmt: skip
            result.folders.setdefault(INBOX, ())
            return None
        outgoing = _redirected(message, _without_detail(address) or user)
        ident = _message_key(facts, message)
        for target in result.redirects:
            key = hashlib.sha256(f"{ident}\0{target.lower()}".encode()).hexdigest()[:32]
            if await deferToThread(self.sent.recent, "redirect", user, key, REDIRECT_MEMORY):
                continue  # sent before the MTA retried this delivery
            try:
                await sender.send(envelope.sender, [target], outgoing)
            except SubmissionError as exc:
                if exc.temporary:
                    _log.warn(
                        "Sieve: cannot redirect {user}'s message to {to} now ({error}); "
                        "answered 451",
                        user=user, to=target, error=str(exc),
                    )  # fmt: skip
                    return Outcome(451, "4.4.0", "Cannot redirect the message now; try again later")
                _log.error(
                    "Sieve: redirecting {user}'s message to {to} failed ({error}); kept in INBOX",
                    user=user, to=target, error=str(exc),
                )  # fmt: skip
                result.folders.setdefault(INBOX, ())
                continue
            await deferToThread(self.sent.record, "redirect", user, key)
            _log.info("Sieve: redirected {user}'s message to {to}", user=user, to=target)
        return None

    async def _create(self, account: IAccount, user: str, folder: str, create: bool) -> str:
        if create:
            try:
                await account.create(folder)
                return folder
            except errors.BackendError as exc:
                _log.warn(
                    "Sieve: cannot create {folder!r} for {user} ({error}); delivered to INBOX",
                    folder=folder, user=user, error=str(exc),
                )  # fmt: skip
                return INBOX
        _log.warn(
            "Sieve: {user}'s script files into {folder!r}, which does not exist; "
            "delivered to INBOX",
            user=user, folder=folder,
        )  # fmt: skip
        return INBOX

    def _vacation(
        self, user: str, address: str, facts: MessageFacts, action: Action
    ) -> Callable[[], Awaitable[None]] | None:
        """The reply to send after storing, or None when RFC 5230 4.5-4.6 say not to."""
        sender = facts.sender
        own = _own_addresses(user, address, action.get("addresses"))
        if not sender or sender.lower() in own or _is_robot(facts, sender):
            return None
        listed = {a.lower() for n in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
                  for _, a in getaddresses(facts.raw(n))}  # fmt: skip
        if not listed & own:
            return None
        handle = action.get("handle") or "\0".join(
            str(action.get(k)) for k in ("reason", "subject", "from")
        )
        key = hashlib.sha256(f"{sender.lower()}\0{handle}".encode()).hexdigest()[:32]
        days = int(action.get("days"))
        reply = _reply(facts, action, _without_detail(address))

        async def send() -> None:
            # SQLite and the outbox's synced files: not on the reactor's thread.
            if not await deferToThread(self.sent.vacation_due, user, key, days):
                return
            if self.sender is None:
                await deferToThread(self.outbox.add, "", [sender], reply)
            else:
                try:
                    await self.sender.send("", [sender], reply)
                except SubmissionError as exc:
                    _log.warn(
                        "Sieve: vacation reply for {user} to {to} not sent ({error})",
                        user=user, to=sender, error=str(exc),
                    )  # fmt: skip
                    return
            _log.info("Sieve: vacation reply for {user} to {to}", user=user, to=sender)

        return send


def _compile(source: bytes) -> Script | SieveError:
    try:
        return compile_script(source)
    except SieveError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a parser bug must not lose the message
        return SieveError(f"the parser failed: {exc!r}")


def _evaluate(
    script: Script, message: bytes, sender: str, recipient: str
) -> tuple[MessageFacts, Result]:
    facts = MessageFacts.of(message, sender, recipient)
    return facts, run(script, facts)


def _own_addresses(user: str, address: str, more: tuple[str, ...] = ()) -> set[str]:
    """The user's addresses, lower-cased: the recipient's, without its ``+detail``, the
    user name and ``more`` (vacation's ``:addresses``)."""
    own = {a.lower() for a in (address, user, *more) if a}
    own.add(_without_detail(address).lower())
    return own


def _message_key(facts: MessageFacts, message: bytes) -> str:
    """What names a message across the MTA's retries: its Message-ID, else a digest of its
    body and of the headers its author wrote (our trace headers differ each time)."""
    ids = facts.raw("message-id")
    if ids:
        return ids[0]
    end = message.find(b"\r\n\r\n")
    digest = hashlib.sha256(message[end:] if end >= 0 else b"")
    for name in ("from", "date", "subject", "to"):
        digest.update("\0".join(facts.raw(name)).encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()


def _redirected(message: bytes, delivered_to: str) -> bytes:
    """``message`` as redirected: ``Delivered-To`` added (RFC 9228), ``Return-Path`` taken
    out (RFC 5321 4.4: it is added at final delivery, not sent on)."""
    end = message.find(b"\r\n\r\n")
    head, body = (message[: end + 2], message[end + 2 :]) if end >= 0 else (message, b"")
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line[:12].lower() == b"return-path:"
        if not dropping:
            kept.append(line)
    trace = f"Delivered-To: {delivered_to}\r\n".encode("utf-8", "replace")
    return trace + b"".join(kept) + body


def _without_detail(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{local.partition('+')[0]}@{domain}" if at else address.partition("+")[0]


def _is_robot(facts: MessageFacts, sender: str) -> bool:
    """Mail no vacation answers (RFC 5230 4.5): automatic, bulk or from a list or daemon."""
    if any(v.strip().lower() != "no" for v in facts.raw("auto-submitted")):
        return True
    if any(v.strip().lower() in ("bulk", "list", "junk") for v in facts.raw("precedence")):
        return True
    if any(facts.raw(name) for name in _LIST_HEADERS):
        return True
    local = sender.rpartition("@")[0].lower()
    return local in _ROBOT_LOCALPARTS or local.startswith("owner-") or local.endswith("-request")


def _reply(facts: MessageFacts, action: Action, address: str) -> bytes:
    reply = EmailMessage()
    reply["From"] = action.get("from") or address
    reply["To"] = facts.sender
    subject = action.get("subject")
    if subject is None:
        original = (facts.decoded("subject") or [""])[0]
        subject = "Auto: " + original
    reply["Subject"] = " ".join(subject.split())[:200]
    reply["Date"] = formatdate(localtime=True)
    reply["Message-ID"] = make_msgid()
    ids = facts.raw("message-id")
    if ids:
        reply["In-Reply-To"] = ids[0]
        reply["References"] = " ".join((facts.raw("references") or [""])[:1] + ids[:1]).strip()
    reply["Auto-Submitted"] = "auto-replied (vacation)"
    reply.set_content(action.get("reason"))
    return reply.as_bytes(policy=policy.SMTP)
