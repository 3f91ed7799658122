"""APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315), TRYCREATE, literal8 content (RFC 3516),
several messages at once (MULTIAPPEND, RFC 3502) and messages put together from text and
parts of stored messages (CATENATE, RFC 4469)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from mailserv import errors, quota
from mailserv.events import report
from mailserv.imap import imapurl, shared
from mailserv.imap.arguments import astring, date_time, flags, mailbox
from mailserv.imap.commands import AUTH, Batching, CommandSpec
from mailserv.imap.commands.mailboxes import account_of
from mailserv.imap.replies import Bad, CommandFailure, No, Reply
from mailserv.imap.session import UTF8_ACCEPT, utf8_names
from mailserv.interfaces import RECENT, AppendResult, IMultiAppendAccount, NewMessage
from mailserv.syntax.sequences import format_set
from mailserv.syntax.tokens import Atom, Command, ParenList, String, Token

if TYPE_CHECKING:
    from mailserv.imap.session import Session

_SYNTAX = 'APPEND arguments: mailbox [(flags)] ["date-time"] literal'
_CATENATE_SYNTAX = "CATENATE takes a list of TEXT literal and URL url parts"
_UTF8_SYNTAX = "UTF8 takes the message as one literal in parentheses: UTF8 (~{n}...)"
MAX_CATENATE_PARTS = 100


@dataclass(frozen=True, slots=True)
class Catenation:
    """A message of CATENATE parts: text (bytes) and URLs (as sent), joined when stored."""

    parts: tuple[String | str, ...]
    flags: frozenset[str]
    internaldate: datetime | None


def multiappend_offered(session: Session) -> bool:
    """Whether the account stores several messages all or none (MULTIAPPEND); before login
    the server offers it, as most backends can."""
    return session.account is None or IMultiAppendAccount.providedBy(session.account)


def _messages(
    args: Sequence[Token], limit: int, utf8: bool = False
) -> list[NewMessage | Catenation]:
    """``[(flags)] ["date-time"] (literal | CATENATE (parts) | UTF8 (literal))`` repeated
    (UTF8: RFC 6855 4, once ``utf8``, UTF8=ACCEPT, is on); every check that needs no
    backend made before anything is stored (Bad or No)."""
    batch: list[NewMessage | Catenation] = []
    flag_set: frozenset[str] | None = None
    when: datetime | None = None
    catenate = False
    tokens = iter(args)
    for arg in tokens:
        if catenate:
            if not isinstance(arg, ParenList):
                raise Bad(_CATENATE_SYNTAX)
            batch.append(Catenation(_cat_parts(arg), flag_set or frozenset(), when))
            flag_set, when, catenate = None, None, False
        elif isinstance(arg, String) and arg.literal:
            batch.append(_checked(arg, flag_set or frozenset(), when, limit, len(batch) + 1))
            flag_set, when = None, None
        elif isinstance(arg, Atom) and arg.value.upper() == "CATENATE":
            catenate = True
        elif isinstance(arg, Atom) and arg.value.upper() == "UTF8":
            literal = _utf8_data(arg, next(tokens, None), utf8)
            batch.append(_checked(literal, flag_set or frozenset(), when, limit, len(batch) + 1))
            flag_set, when = None, None
        elif isinstance(arg, ParenList) and flag_set is None and when is None:
            flag_set = flags(arg)
        elif isinstance(arg, String) and when is None:
            when = date_time(arg)
        else:
            raise Bad(_SYNTAX)
    if not batch:
        raise Bad("APPEND needs the message as a literal")
    if flag_set is not None or when is not None or catenate:
        raise Bad(_SYNTAX)
    return batch


def _utf8_data(word: Atom, data: Token | None, utf8: bool) -> String:
    """RFC 6855 4: ``UTF8 (literal8)``, the message a literal inside parentheses."""
    if not utf8:
        raise Bad("APPEND UTF8 needs ENABLE UTF8=ACCEPT first")
    if not isinstance(data, ParenList) or len(data.items) != 1:
        raise Bad(_UTF8_SYNTAX)
    message = data.items[0]
    if not isinstance(message, String) or not message.literal:
        raise Bad(_UTF8_SYNTAX)
    return message


def _cat_parts(parts: ParenList) -> tuple[String | str, ...]:
    """``(TEXT literal URL url ...)``: the text literals and the URLs, in order."""
    items = parts.items
    if not items or len(items) % 2 or len(items) > 2 * MAX_CATENATE_PARTS:
        raise Bad(f"{_CATENATE_SYNTAX} (1 to {MAX_CATENATE_PARTS})")
    out: list[String | str] = []
    for kind, value in zip(items[::2], items[1::2], strict=True):
        name = kind.value.upper() if isinstance(kind, Atom) else ""
        if name == "TEXT" and isinstance(value, String) and value.literal:
            if not value.literal8 and b"\x00" in value.value:
                raise Bad("NUL in a TEXT literal: send binary content as a literal8 (~{n})")
            out.append(value)
        elif name == "URL" and not isinstance(value, ParenList):
            out.append(astring(value).decode("utf-8", "replace"))
        else:
            raise Bad(_CATENATE_SYNTAX)
    return tuple(out)


async def _joined(session: Session, message: Catenation, limit: int, n: int) -> NewMessage:
    """The message a CATENATE names, its URLs read (NO [BADURL url] when one names nothing)."""
    account = account_of(session)
    user = session.username or ""
    chunks: list[bytes] = []
    size = 0
    for part in message.parts:
        if isinstance(part, String):
            data = part.value
        else:
            try:
                data = await imapurl.resolve(account, imapurl.parse(part, user))
            except imapurl.BadUrl as exc:
                code = b"BADURL " + part.encode("utf-8") if _codeable(part) else b"BADURL"
                raise No(f"Message {n}: {exc}" if n > 1 else str(exc), code) from None
        size += len(data)
        if size > limit:
            raise No("Message too large", "TOOBIG")
        chunks.append(data)
    joined = String(b"".join(chunks), literal=True, literal8=True)
    return _checked(joined, message.flags, message.internaldate, limit, n)


def _codeable(url: str) -> bool:
    """Whether the URL can stand in a response code (printable ASCII, no ``]``)."""
    return url.isascii() and url.isprintable() and "]" not in url and len(url) < 1000


def _checked(
    message: String, flag_set: frozenset[str], when: datetime | None, limit: int, n: int
) -> NewMessage:
    which = f"Message {n}: " if n > 1 else ""
    if RECENT in flag_set:
        raise Bad(f"{which}\\Recent cannot be set")
    if not message.value:
        raise No(f"{which}Empty message")
    if not message.literal8 and b"\x00" in message.value:
        raise Bad(f"{which}NUL in a literal: send binary content as a literal8 (~{{n}})")
    if len(message.value) > limit:
        raise No(f"{which}Message too large", "TOOBIG")
    return NewMessage(message.value, flag_set, when)


async def append(session: Session, command: Command) -> Reply:
    args = list(command.args)
    if len(args) < 2:
        raise Bad("APPEND takes a mailbox, optional flags and date, and a message literal")
    name = mailbox(args.pop(0), utf8=utf8_names(session))
    limit = session.settings.max_literal
    utf8 = UTF8_ACCEPT in session.enabled
    batch = [
        await _joined(session, item, limit, n) if isinstance(item, Catenation) else item
        for n, item in enumerate(_messages(args, limit, utf8), 1)
    ]
    if len(batch) > 1 and not multiappend_offered(session):
        raise Bad("APPEND takes one message here (no MULTIAPPEND)")
    try:
        results = await _stored(session, name, batch)
    except errors.MailboxNotFound as exc:
        raise No("No such mailbox", "TRYCREATE") from exc
    await report.added(session, name, [result.uid for result in results])
    return _appended(results)


async def _stored(
    session: Session, name: str, batch: Sequence[NewMessage]
) -> Sequence[AppendResult]:
    """``batch`` stored in the mailbox ``name``, all or none (a single message with
    ``IMailbox.append``, for the backends without MULTIAPPEND)."""
    account = account_of(session)
    await shared.require(session, name, "i", "APPEND")
    adds = quota.Usage(sum(len(new.message) for new in batch), len(batch))
    async with quota.charge(session, adds, await quota.payer_for(session, name)):
        if len(batch) > 1:
            return await IMultiAppendAccount(account).append_many(name, batch, session)
        box = await account.open(name)
        new = batch[0]
        return [await box.append(new.message, new.flags, new.internaldate, session)]


def _appended(results: Sequence[AppendResult]) -> Reply:
    uids = format_set(result.uid for result in results).encode("ascii")
    return Reply("APPEND completed", b"APPENDUID %d %s" % (results[0].uidvalidity, uids))


def _burst_key(session: Session, command: Command) -> str | None:
    """Pipelined APPENDs of plain literals to one mailbox (its name) run together."""
    args = command.args
    if len(args) < 2 or any(isinstance(arg, Atom) for arg in args[1:]):
        return None  # CATENATE and UTF8 (read from other mailboxes, or refused) alone
    if not multiappend_offered(session):
        return None
    try:
        return mailbox(args[0], utf8=utf8_names(session))
    except (CommandFailure, errors.BackendError):  # each answered alone (BAD, NO)
        return None


async def _burst(session: Session, commands: Sequence[Command]) -> list[Reply] | None:
    """A burst of pipelined APPENDs to one mailbox stored as one MULTIAPPEND would be (one
    sync of the store), each command answered with its own UIDs.  None (nothing stored)
    when one of them fails on its own, or the burst as a whole (over quota, no such
    mailbox...): then each runs alone and gets its own answer."""
    name = mailbox(commands[0].args[0], utf8=utf8_names(session))
    limit = session.settings.max_literal
    utf8 = UTF8_ACCEPT in session.enabled
    try:
        parts = [_messages(list(command.args[1:]), limit, utf8) for command in commands]
    except CommandFailure:
        return None
    batch = [new for part in parts for new in part if isinstance(new, NewMessage)]
    if len(batch) != sum(map(len, parts)):
        return None  # CATENATE (the key keeps it out)
    try:
        results = await _stored(session, name, batch)
    except (CommandFailure, errors.BackendError):
        return None
    replies: list[Reply] = []
    for part in parts:
        mine, results = results[: len(part)], results[len(part) :]
        await report.added(session, name, [result.uid for result in mine])
        replies.append(_appended(mine))
    return replies


SPECS = (CommandSpec("APPEND", append, AUTH, batching=Batching(_burst_key, _burst)),)
