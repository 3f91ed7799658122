"""What the engine tells ``Services.events`` after a command changed the store.

One call per command family, made after the backend said the change is done: APPEND (and
MULTIAPPEND), COPY/MOVE, STORE (and FETCH's implicit \\Seen), EXPUNGE/UID EXPUNGE/CLOSE,
CREATE/DELETE/RENAME.  Each process tells its own sessions' changes, so each change is told
once per server.  Not told: changes made behind the server's back (a file dropped into a
Maildir by another program, rows written into the SQL store by hand).

A change another user makes in a shared mailbox (``Other Users/OWNER/NAME``) is told as one
of the owner's mailbox: ``user`` is the owner, ``mailbox`` the owner's own name for it, and
``by`` the user who made it.

Nothing is read or built for an event type no sink wants.  ``message-added`` carries an
envelope summary read back from the mailbox (one fetch per chunk of messages); the other
types carry what the command already has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from twisted.logger import Logger

from mailserv.events.sink import (
    EXPUNGED,
    FLAGS_CHANGED,
    MAILBOX_RENAMED,
    MESSAGE_ADDED,
    Event,
    IEventSink,
)
from mailserv.imap import shared
from mailserv.interfaces import FlagChange, IMailbox, MessageMeta
from mailserv.slicing import TimeSlices, Turns

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from mailserv.imap.session import Session

__all__ = [
    "added",
    "expunged",
    "flags_changed",
    "mailbox_changed",
    "message_summary",
    "tell_added",
    "transferred",
]

_log = Logger()

CHUNK = 500
"""Messages read back, or UIDs put in one event, at a time."""


def _sink(
    session: Session, type: str, name: str, box: IMailbox | None = None
) -> tuple[IEventSink, str, str, dict[str, object]] | None:
    """Where an event about the mailbox ``name`` (``box`` when open) goes, whose mailbox it
    is and under which name, and the fields naming the actor when that is another user."""
    sink = session.services.events
    actor = session.username
    if actor is None or not sink.wants(type):
        return None
    owned = shared.owner_of(session, name, box)
    if owned is None:
        return sink, actor, name, {}
    return sink, owned[0], owned[1], {"by": actor}


def _chunks(items: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def message_summary(meta: MessageMeta) -> dict[str, object]:
    """The envelope summary of a ``message-added`` event (what delivery code tells too)."""
    info = meta.info
    return {
        "uid": meta.uid,
        "size": meta.size,
        # the search fields add address forms, a line each, after the header's text
        "from": info.from_.partition("\n")[0],
        "to": info.to.partition("\n")[0],
        "subject": info.subject,
        "date": _iso(info.sent),
        "message-id": f"<{info.message_id}>" if info.message_id else None,
        "internaldate": _iso(meta.internaldate),
        "flags": sorted(meta.flags),
    }


async def added(session: Session, name: str, uids: Sequence[int]) -> None:
    """``uids`` were added to the mailbox ``name`` (APPEND, COPY, MOVE)."""
    found = _sink(session, MESSAGE_ADDED, name)
    if found is None or not uids:
        return
    sink, user, told, by = found
    box: IMailbox | None = None
    try:
        box = await session.account.open(name)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - gone already (a race): told without a summary
        _log.info("message-added in {name}: the mailbox cannot be read back", name=name)
    await tell_added(sink, user, told, box, uids, session.services.turns, by)


async def tell_added(
    sink: IEventSink,
    user: str,
    name: str,
    box: IMailbox | None,
    uids: Sequence[int],
    turns: Turns | IReactorTime,
    extra: Mapping[str, object] | None = None,
) -> None:
    """``message-added`` for ``uids`` of ``user``'s mailbox ``name``, each with its summary
    read back from ``box`` (None, or a message gone meanwhile: the UID alone) and the
    fields of ``extra``.  The entry point of code that adds mail outside a session
    (delivery): call it once the messages are stored, with the sink and the turns of
    ``Services`` (or a reactor: a budget of its own)."""
    if not uids or not sink.wants(MESSAGE_ADDED):
        return
    turns = Turns.of(turns)
    slices = TimeSlices(turns)
    for chunk in _chunks(sorted(uids)):
        metas: dict[int, MessageMeta] = {}
        if box is not None:
            try:
                metas = {meta.uid: meta for meta in await box.fetch(chunk)}
            except Exception:  # noqa: BLE001 - as above
                _log.info("message-added in {name}: messages not readable", name=name)
        for uid in chunk:
            meta = metas.get(uid)
            data: dict[str, object] = message_summary(meta) if meta is not None else {"uid": uid}
            data.update(extra or {})
            sink.publish(Event(MESSAGE_ADDED, user, name, turns.clock.seconds(), data))
        await slices.pause()


async def transferred(
    session: Session,
    source: IMailbox,
    destination: str,
    pairs: Sequence[tuple[int, int]],
    move: bool,
) -> None:
    """COPY (or MOVE) put ``pairs``' sources from ``source`` into ``destination``."""
    await added(session, destination, [new for _, new in pairs])
    if move:
        expunged(session, source, [old for old, _ in pairs])


def expunged(session: Session, box: IMailbox, uids: Sequence[int]) -> None:
    """``uids`` of ``box`` were expunged (EXPUNGE, UID EXPUNGE, CLOSE, MOVE)."""
    _per_chunk(session, EXPUNGED, box, sorted(uids), lambda part: {"uids": list(part)})


def flags_changed(session: Session, box: IMailbox, changes: Sequence[FlagChange]) -> None:
    """The flags of messages of ``box`` are now as ``changes`` say (STORE, FETCH)."""
    if not changes or not session.services.events.wants(FLAGS_CHANGED):
        return
    by_uid = {change.uid: change for change in changes}

    def data(part: Sequence[int]) -> dict[str, object]:
        told = [by_uid[uid] for uid in part]
        return {
            "changes": [{"uid": c.uid, "flags": sorted(c.flags), "modseq": c.modseq} for c in told]
        }

    _per_chunk(session, FLAGS_CHANGED, box, sorted(by_uid), data)


def _per_chunk(
    session: Session,
    type: str,
    box: IMailbox,
    uids: Sequence[int],
    data: Callable[[Sequence[int]], dict[str, object]],
) -> None:
    found = _sink(session, type, box.name, box)
    if found is None:
        return
    sink, user, mailbox, by = found
    now = session.services.clock.seconds()
    for part in _chunks(uids):
        sink.publish(Event(type, user, mailbox, now, {**data(part), **by}))


def mailbox_changed(session: Session, type: str, name: str, new_name: str | None = None) -> None:
    """``name`` was created, deleted or (``new_name``) renamed."""
    found = _sink(session, type, name)
    if found is None:
        return
    sink, user, told, by = found
    data: dict[str, object] = dict(by)
    if type == MAILBOX_RENAMED:  # RENAME keeps a mailbox with its owner
        renamed = shared.owner_of(session, new_name) if new_name is not None else None
        data["new-name"] = new_name if renamed is None else renamed[1]
    sink.publish(Event(type, user, told, session.services.clock.seconds(), data))
