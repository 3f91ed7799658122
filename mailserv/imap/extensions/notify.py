"""NOTIFY (RFC 5465): ``NOTIFY SET [STATUS] (filter (events)) ...`` and ``NOTIFY NONE``.

This module reads the command; :mod:`mailserv.imap.notify` watches the mailboxes.  Events
offered: MessageNew (with FETCH items for the selected mailbox), MessageExpunge, FlagChange,
MailboxName and SubscriptionChange (for changes made through this server process).
AnnotationChange, MailboxMetadataChange and ServerMetadataChange need METADATA, which the
server has not: ``NO [BADEVENT (...)]``, as for any event it does not know.

Limits: a mailbox matched by several filters takes the events of the first; the selected
mailbox is reported as without NOTIFY (EXISTS, EXPUNGE, FETCH FLAGS at the command's end or
while IDLE) whatever its filter says.
"""

from __future__ import annotations

from mailserv.imap.arguments import mailbox, text_atom
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.fetchatt import FetchItem, parse_fetch_items, sets_seen
from mailserv.imap.notify import (
    FLAG_CHANGE,
    MESSAGE_EVENTS,
    MESSAGE_EXPUNGE,
    MESSAGE_NEW,
    NAME_EVENTS,
    SELECTED_KINDS,
    Filter,
    Notifier,
)
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Session
from mailserv.syntax.tokens import Atom, Command, ParenList, Token

_OFFERED = (MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, "MAILBOXNAME", "SUBSCRIPTIONCHANGE")
_SPELLING = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange"
_BADEVENT = b"BADEVENT (" + _SPELLING.encode() + b")"
_MAILBOX_KINDS = frozenset({"SUBTREE", "MAILBOXES"})
_PLAIN_KINDS = SELECTED_KINDS | {"INBOXES", "PERSONAL", "SUBSCRIBED"}
_MAX_NAMES = 1000
"""Mailbox names one SUBTREE or MAILBOXES filter may list."""


async def notify(session: Session, command: Command) -> Reply:
    args = list(command.args)
    verb = text_atom(args.pop(0)).upper() if args else ""
    if verb == "NONE":
        if args:
            raise Bad("NOTIFY NONE takes no arguments")
        stop(session)
        return Reply("NOTIFY completed, no more notifications")
    if verb != "SET":
        raise Bad("NOTIFY takes SET or NONE")
    initial = bool(args) and isinstance(args[0], Atom) and args[0].value.upper() == "STATUS"
    if initial:
        args.pop(0)
    if not args:
        raise Bad("NOTIFY SET needs at least one (filter (events))")
    filters = [_filter(session, arg) for arg in args]
    kinds = [f.kind for f in filters]
    plain = [kind for kind in kinds if kind not in _MAILBOX_KINDS]
    if len(plain) != len(set(plain)) or set(kinds) >= SELECTED_KINDS:
        raise Bad("A filter is given twice")
    stop(session)
    notifier = Notifier(session, filters)
    try:
        names = await notifier.start()
    except OverflowError as exc:
        notifier.close()
        limit = session.settings.max_notify_mailboxes
        raise No(f"Too many mailboxes to watch (limit {limit})", "LIMIT") from exc
    except BaseException:
        notifier.close()
        raise
    session.notifier = notifier
    if initial:
        await notifier.send_status(names)
    return Reply()


def stop(session: Session) -> None:
    """NOTIFY NONE, a new NOTIFY SET, or the end of the session."""
    notifier = session.notifier
    if notifier is None:
        return
    session.notifier = None
    notifier.close()


def _filter(session: Session, token: Token) -> Filter:
    """``(filter-kind [names] events)``, events being ``(event ...)`` or ``NONE``."""
    if not isinstance(token, ParenList) or len(token.items) < 2:
        raise Bad("Expected (filter (events))")
    items = list(token.items)
    kind = text_atom(items.pop(0)).upper()
    names: tuple[str, ...] = ()
    if kind in _MAILBOX_KINDS:
        if len(items) != 2:
            raise Bad(f"{kind} takes mailbox names and events")
        listed = items.pop(0)
        tokens = listed.items if isinstance(listed, ParenList) else (listed,)
        if not tokens or len(tokens) > _MAX_NAMES:
            raise Bad(f"{kind} takes 1 to {_MAX_NAMES} mailbox names")
        names = tuple(mailbox(t) for t in tokens)
    elif kind not in _PLAIN_KINDS:
        raise Bad(f"Unknown NOTIFY filter {kind[:40]}")
    if len(items) != 1:
        raise Bad(f"{kind} takes one list of events")
    events, fetch = _events(session, items[0], kind)
    return Filter(kind, names, events, fetch)


def _events(
    session: Session, token: Token, kind: str
) -> tuple[frozenset[str], tuple[FetchItem, ...]]:
    if isinstance(token, Atom) and token.value.upper() == "NONE":
        return frozenset(), ()
    if not isinstance(token, ParenList) or not token.items:
        raise Bad("Expected a list of events or NONE")
    events: list[str] = []
    fetch: tuple[FetchItem, ...] = ()
    items = list(token.items)
    while items:
        name = text_atom(items.pop(0)).upper()
        if name not in _OFFERED:
            raise No(f"Event {name[:40]} is not supported", _BADEVENT)
        if name in events:
            raise Bad(f"Event {name} given twice")
        events.append(name)
        if name == MESSAGE_NEW and items and isinstance(items[0], ParenList):
            if kind not in SELECTED_KINDS:
                raise Bad("FETCH items go with MessageNew of SELECTED only")
            fetch = tuple(parse_fetch_items(items.pop(0), session.services.registry.fetch_items))
            if sets_seen(fetch):
                raise Bad("MessageNew items may not set \\Seen: use BODY.PEEK")
    chosen = frozenset(events)
    if FLAG_CHANGE in chosen and not {MESSAGE_NEW, MESSAGE_EXPUNGE} <= chosen:
        raise Bad("FlagChange needs MessageNew and MessageExpunge")
    if kind in SELECTED_KINDS and chosen & NAME_EVENTS:
        raise Bad(f"{kind} takes message events only")
    if not chosen & (MESSAGE_EVENTS | NAME_EVENTS):
        raise Bad("No event given")
    return chosen, fetch


EXTENSION = Extension(
    "NOTIFY",
    capabilities=(Capability(b"NOTIFY"),),
    commands=(CommandSpec("NOTIFY", notify, AUTH),),
    response_codes=frozenset({"BADEVENT", "NOTIFICATIONOVERFLOW", "LIMIT"}),
)
