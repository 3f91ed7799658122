"""APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315), TRYCREATE, literal8 content (RFC 3516)
and several messages at once (MULTIAPPEND, RFC 3502)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from mailserv import errors, quota
from mailserv.imap.arguments import date_time, flags, mailbox
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.commands.mailboxes import account_of
from mailserv.imap.replies import Bad, No, Reply
from mailserv.interfaces import RECENT, AppendResult, IMultiAppendAccount, NewMessage
from mailserv.syntax.sequences import format_set
from mailserv.syntax.tokens import Command, ParenList, String, Token

if TYPE_CHECKING:
    from mailserv.imap.session import Session

_SYNTAX = 'APPEND arguments: mailbox [(flags)] ["date-time"] literal'


def multiappend_offered(session: Session) -> bool:
    """Whether the account stores several messages all or none (MULTIAPPEND); before login
    the server offers it, as most backends can."""
    return session.account is None or IMultiAppendAccount.providedBy(session.account)


def _messages(args: Sequence[Token], limit: int) -> list[NewMessage]:
    """``[(flags)] ["date-time"] literal`` repeated; every check made before anything is
    stored (Bad or No)."""
    batch: list[NewMessage] = []
    flag_set: frozenset[str] | None = None
    when: datetime | None = None
    for arg in args:
        if isinstance(arg, String) and arg.literal:
            batch.append(_checked(arg, flag_set or frozenset(), when, limit, len(batch) + 1))
            flag_set, when = None, None
        elif isinstance(arg, ParenList) and flag_set is None and when is None:
            flag_set = flags(arg)
        elif isinstance(arg, String) and when is None:
            when = date_time(arg)
        else:
            raise Bad(_SYNTAX)
    if not batch:
        raise Bad("APPEND needs the message as a literal")
    if flag_set is not None or when is not None:
        raise Bad(_SYNTAX)
    return batch


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
    name = mailbox(args.pop(0))
    batch = _messages(args, session.settings.max_literal)
    account = account_of(session)
    if len(batch) > 1 and not multiappend_offered(session):
        raise Bad("APPEND takes one message here (no MULTIAPPEND)")
    try:
        adds = quota.Usage(sum(len(new.message) for new in batch), len(batch))
        async with quota.charge(session, adds):
            if len(batch) == 1:
                box = await account.open(name)
                new = batch[0]
                one = await box.append(new.message, new.flags, new.internaldate, session)
                results: Sequence[AppendResult] = [one]
            else:
                results = await IMultiAppendAccount(account).append_many(name, batch, session)
    except errors.MailboxNotFound as exc:
        raise No("No such mailbox", "TRYCREATE") from exc
    uids = format_set(result.uid for result in results).encode("ascii")
    return Reply("APPEND completed", b"APPENDUID %d %s" % (results[0].uidvalidity, uids))


SPECS = (CommandSpec("APPEND", append, AUTH),)
