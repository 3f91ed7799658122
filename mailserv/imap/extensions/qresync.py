"""QRESYNC (RFC 7162 section 3.2): resynchronising a mailbox in the SELECT itself.

After ``ENABLE QRESYNC`` (which turns CONDSTORE on too):

* ``SELECT/EXAMINE box (QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]]))`` answers,
  after the usual responses, ``* VANISHED (EARLIER) uids`` and ``* n FETCH (UID FLAGS
  MODSEQ)`` for the messages changed since ``modseq``; with another UIDVALIDITY it is a
  plain SELECT.  Without ``known-uids`` the UIDs are those the backend logged as expunged
  since ``modseq`` (``IMailbox.changes_since``).  With them, they are the known UIDs the
  mailbox no longer holds, worked out by ranges from the UID list: the same UIDs when the
  client's list is exact, and right even where a store's log does not reach that far back;
  RFC 7162 lets VANISHED (EARLIER) name UIDs the client already forgot.  Where the
  backend says its log is too short (``Changes.complete`` false: a proxy's mirror starts
  when the mailbox is opened), every UID below UIDNEXT the mailbox lacks is named.  The
  sequence-match data, meant for servers that forget expunges, is checked, not needed.
* ``UID FETCH set items (CHANGEDSINCE n VANISHED)`` first says which UIDs of ``set``
  vanished since ``n``.
* The engine tells removals as ``* VANISHED uids`` instead of EXPUNGE
  (``SelectedView.reports_vanished``) and says ``* OK [CLOSED]`` when a SELECT/EXAMINE
  closes the mailbox selected before.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailserv.imap.arguments import number, text_atom
from mailserv.imap.extensions.condstore import modseq_value
from mailserv.imap.registry import (
    Capability,
    Extension,
    FetchModifier,
    FetchRequest,
    SelectParameter,
)
from mailserv.imap.replies import Bad
from mailserv.imap.session import Session
from mailserv.imap.view import VANISHED_NAME, SelectedView
from mailserv.interfaces import MailboxStatus, MessageMeta
from mailserv.slicing import TimeSlices
from mailserv.syntax.errors import ParseError
from mailserv.syntax.sequences import SequenceSet, format_set, parse_sequence_set, uids_in
from mailserv.syntax.tokens import Atom, ParenList, Token

_SHAPE = "QRESYNC takes (uidvalidity modseq [known-uids [(known-seqs known-uids)]])"
_STEP = 1000
"""FETCH responses of a resync written between two pauses for other sessions."""


@dataclass(frozen=True, slots=True)
class Resync:
    """The client's state of the mailbox, from the QRESYNC SELECT parameter."""

    uidvalidity: int
    modseq: int
    known: SequenceSet | None


def _set_without_star(token: Token, what: str) -> SequenceSet:
    try:
        found = parse_sequence_set(text_atom(token))
    except ParseError as exc:
        raise Bad(f"Invalid QRESYNC {what}: {exc.text}") from exc
    if found.has_star:
        raise Bad(f"QRESYNC {what} may not contain *")
    return found


def parse_resync(value: Token | None) -> Resync:
    if not isinstance(value, ParenList) or not 2 <= len(value.items) <= 4:
        raise Bad(_SHAPE)
    items = list(value.items)
    if not isinstance(items[0], Atom):
        raise Bad(_SHAPE)
    try:
        uidvalidity = number(items[0], nonzero=True)
    except ParseError as exc:
        raise Bad(f"QRESYNC uidvalidity: {exc.text}") from exc
    modseq = modseq_value(items[1], "QRESYNC")
    rest = items[2:]
    known = None
    if rest and not isinstance(rest[0], ParenList):
        known = _set_without_star(rest.pop(0), "known-uids")
    if rest:
        match = rest.pop(0)
        if rest or not isinstance(match, ParenList) or len(match.items) != 2:
            raise Bad(_SHAPE)
        seqs = _set_without_star(match.items[0], "known-sequence-set")
        uids = _set_without_star(match.items[1], "known-uid-set")
        if _count(seqs) != _count(uids):
            raise Bad("QRESYNC sequence-match sets differ in size")
    return Resync(uidvalidity, modseq, known)


def _count(numbers: SequenceSet) -> int:
    return sum(high - low + 1 for low, high in numbers.resolve(1))


# -- SELECT/EXAMINE (QRESYNC (...)) -------------------------------------------------------


def _require_enabled(session: Session, what: str) -> None:
    if VANISHED_NAME not in session.enabled:
        raise Bad(f"{what} needs ENABLE QRESYNC first")


def _check(session: Session, value: Token | None) -> None:
    _require_enabled(session, "QRESYNC")
    parse_resync(value)


async def _resync(
    session: Session, view: SelectedView, counts: MailboxStatus, value: Token | None
) -> None:
    """What changed since the client's modseq: VANISHED (EARLIER), then FETCH lines."""
    resync = parse_resync(value)
    if resync.uidvalidity != counts.uidvalidity:
        return  # RFC 7162 3.2.5.1: another mailbox by that name; a full sync is due
    changes = await view.mailbox.changes_since(resync.modseq)
    if resync.known is None and changes.complete:
        write_vanished(view, changes.vanished, None)
    else:  # every known UID below UIDNEXT the mailbox lacks
        known = resync.known.resolve(1) if resync.known is not None else [(1, counts.uidnext)]
        write_absent(view, known, counts.uidnext - 1)
    await write_changed(session, view, changes.changed)


def write_absent(view: SelectedView, ranges: Sequence[tuple[int, int]], last: int) -> None:
    """``* VANISHED (EARLIER)`` for the UIDs of ``ranges`` up to ``last`` that the view
    lacks, worked out and written as ranges (never one number per UID)."""
    clipped = [(low, min(high, last)) for low, high in ranges if low <= last]
    gone = absent(clipped, view.uids)
    if gone:
        text = ",".join(str(a) if a == b else f"{a}:{b}" for a, b in gone)
        view.session.write(b"* VANISHED (EARLIER) %s\r\n" % text.encode())


def absent(ranges: Sequence[tuple[int, int]], uids: Sequence[int]) -> list[tuple[int, int]]:
    """The parts of the ascending, merged ``ranges`` that hold none of the ascending
    ``uids`` (a message expunged after the view's snapshot is still in ``uids``: its
    removal goes out as a plain VANISHED later)."""
    out: list[tuple[int, int]] = []
    count = len(uids)
    for low, high in ranges:
        i = bisect_left(uids, low)
        start = low
        while i < count and uids[i] <= high:
            if uids[i] > start:
                out.append((start, uids[i] - 1))
            start = uids[i] + 1
            i += 1
        if start <= high:
            out.append((start, high))
    return out


def write_vanished(
    view: SelectedView, vanished: Iterable[int], within: Sequence[tuple[int, int]] | None
) -> None:
    """``* VANISHED (EARLIER)`` for the UIDs ``within`` the ranges (all when None).

    A UID still in the view went after the view's snapshot: its removal is pending, and
    goes out as a plain VANISHED that also lowers the message count.
    """
    gone = sorted(set(vanished))
    if within is not None:
        gone = uids_in(within, gone)
    gone = [uid for uid in gone if view.seq_of(uid) is None]
    if gone:
        view.session.write(b"* VANISHED (EARLIER) %s\r\n" % format_set(gone).encode())


async def write_changed(
    session: Session, view: SelectedView, changed: Sequence[MessageMeta]
) -> None:
    slices = TimeSlices(session.services.turns)
    ordered = sorted(changed, key=lambda meta: meta.uid)
    for start in range(0, len(ordered), _STEP):
        lines = []
        for meta in ordered[start : start + _STEP]:
            seq = view.seq_of(meta.uid)
            if seq is not None:
                flags = view.flags_with_recent(meta.uid, meta.flags, meta.modseq)
                lines.append(
                    b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                    % (seq, meta.uid, flags, meta.modseq)
                )
        view.write_fetches(lines)
        await session.drain()
        await slices.pause()


# -- UID FETCH ... (CHANGEDSINCE n VANISHED) ----------------------------------------------


async def _vanished_since(request: FetchRequest, value: Token | None) -> None:
    if not request.uid:
        raise Bad("VANISHED is a UID FETCH modifier")
    _require_enabled(request.session, "VANISHED")
    if "CHANGEDSINCE" not in request.modifiers:
        raise Bad("VANISHED needs CHANGEDSINCE")
    since = modseq_value(request.modifiers["CHANGEDSINCE"], "CHANGEDSINCE")
    view = request.view
    changes = await view.mailbox.changes_since(since)
    if not changes.complete:  # the store's log is too short: what the view lacks
        last = view.uids[-1] if view.uids else 0
        write_absent(view, request.sequence.resolve(last), last)
        return
    if not changes.vanished:
        return
    # ``*`` is the largest UID in use; one that vanished may have been larger.
    largest = max(view.uids[-1] if view.uids else 0, max(changes.vanished))
    write_vanished(view, changes.vanished, request.sequence.resolve(largest))


EXTENSION = Extension(
    "QRESYNC",
    capabilities=(Capability(b"QRESYNC"),),
    enable=frozenset({VANISHED_NAME}),
    fetch_modifiers=(
        FetchModifier("VANISHED", lambda value: lambda meta: True, False, prepare=_vanished_since),
    ),
    select_parameters=(SelectParameter("QRESYNC", _check, True, opened=_resync),),
    response_codes=frozenset({"CLOSED"}),
)
