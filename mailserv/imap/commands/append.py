"""APPEND (RFC 3501 6.3.11) with APPENDUID (RFC 4315) and TRYCREATE."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from mailserv import errors
from mailserv.imap.arguments import date_time, flags, mailbox
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.commands.mailboxes import account_of
from mailserv.imap.replies import Bad, No, Reply
from mailserv.interfaces import RECENT, AppendResult
from mailserv.syntax.tokens import Command, ParenList, String

if TYPE_CHECKING:
    from mailserv.imap.session import Session


async def append(session: Session, command: Command) -> Reply:
    args = list(command.args)
    if len(args) < 2:
        raise Bad("APPEND takes a mailbox, optional flags and date, and a message literal")
    name = mailbox(args.pop(0))
    message = args.pop()
    if not isinstance(message, String) or not message.literal:
        raise Bad("APPEND needs the message as a literal")
    flag_set: frozenset[str] = frozenset()
    when: datetime | None = None
    for arg in args:
        if isinstance(arg, ParenList) and not flag_set:
            flag_set = flags(arg)
        elif isinstance(arg, String) and when is None:
            when = date_time(arg)
        else:
            raise Bad('APPEND arguments: mailbox [(flags)] ["date-time"] literal')
    if RECENT in flag_set:
        raise Bad("\\Recent cannot be set")
    if not message.value:
        raise No("Empty message")
    if not message.literal8 and b"\x00" in message.value:
        raise Bad("NUL in a literal: send binary content as a literal8 (~{n})")
    if len(message.value) > session.settings.max_literal:
        raise No("Message too large", "TOOBIG")
    try:
        box = await account_of(session).open(name)
    except errors.MailboxNotFound as exc:
        raise No("No such mailbox", "TRYCREATE") from exc
    result: AppendResult = await box.append(message.value, flag_set, when, session)
    return Reply("APPEND completed", b"APPENDUID %d %d" % (result.uidvalidity, result.uid))


SPECS = (CommandSpec("APPEND", append, AUTH),)
