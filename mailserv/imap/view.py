"""A session's view of its selected mailbox: the seq ↔ UID map and the updates it owes.

Changes made by other sessions arrive as listener events and wait here until RFC 3501
section 7.4.1 allows them out: after a command, or at once while IDLE; EXPUNGE never after
FETCH, STORE or SEARCH.  Changes the session made itself are reported by its own command
handler, so their events are skipped here (the session is not told twice).

The view also keeps the flag list the client was last given (RFC 3501 7.2.6).  SELECT and
EXAMINE list the system flags; a keyword is announced with a new ``* FLAGS`` (and
``PERMANENTFLAGS``) just before the first FETCH response that carries it, whoever set it.
The backends have no "keywords of a mailbox" call, so the list grows from the flags the
session is about to be sent; it never shrinks while the mailbox stays selected.

Events may come late and out of order (a backend that commits in threads reports each change
when its own transaction returns), so the view keeps what it needs to stay consistent with
what the client was told:

* the mod-sequence of the flags last sent per message (above the mailbox's HIGHESTMODSEQ at
  SELECT; older ones need no entry): a flag update no newer than what the client has is
  dropped, whether queued or arriving after;
* the UIDs expunged before the client was told they exist: they are never announced, so an
  EXPUNGE the client cannot place (or a message that stays forever) cannot happen;
* one flush at a time (a lock): IDLE's updates and a command's are never interleaved, and
  an update computed while IDLE is written only if the session is still idling, so no
  EXPUNGE slips into a later FETCH, STORE or SEARCH and nothing of a mailbox closed since is
  written at all.  The sequence map changes only in the same reactor turn as the write that
  tells the client (no await in between), so a command never uses a number not yet sent.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Container, Generator, Iterable, Sequence
from itertools import chain, islice, pairwise
from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer
from twisted.internet.defer import DeferredLock
from twisted.logger import Logger
from zope.interface import implementer

from mailserv.imap.replies import Bad
from mailserv.imap.session import is_rev2
from mailserv.imap.shared import ALL_RIGHTS, permanent_flags
from mailserv.interfaces import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    RECENT,
    SEEN,
    SYSTEM_FLAGS,
    FlagChange,
    FlagChangeColumns,
    IMailbox,
    IMailboxListener,
    IRefreshMailbox,
    ISharedMailbox,
)
from mailserv.slicing import TimeSlices
from mailserv.syntax import encode
from mailserv.syntax.sequences import SequenceSet, format_set, uids_for_seqs, uids_in

if TYPE_CHECKING:
    from mailserv.imap.session import Session

_log = Logger()

FLAGS_ORDER: tuple[str, ...] = (ANSWERED, FLAGGED, DELETED, SEEN, DRAFT)
"""The system flags in the order FLAGS and PERMANENTFLAGS list them."""
_ALWAYS_KNOWN = SYSTEM_FLAGS
MODSEQ_NAMES = frozenset({"CONDSTORE", "QRESYNC"})
"""ENABLE names after which FETCH responses about flags carry UID and MODSEQ (RFC 7162 3.1;
QRESYNC implies CONDSTORE).  The CONDSTORE enabling commands turn on ``CONDSTORE``."""
VANISHED_NAME = "QRESYNC"
"""ENABLE name after which removals are told with VANISHED, not EXPUNGE (RFC 7162 3.2.10)."""
_STEP = 1024
"""Flag changes queued or formatted between two pauses for other sessions."""
_NOTE_STEP = 8192
"""Own flag changes noted between two pauses (a dict update for a whole step)."""
_REMOVE_STEP = 8192
"""Expunged messages taken out of the view (and their EXPUNGE lines made) between two
pauses."""
_RUN_PROBE, _RUN_MAX = 32, 1 << 16
"""How far ahead ``seqs_of`` first looks for a run of consecutive UIDs, and at most."""


class ResultWatch(Protocol):
    """Results kept up to date with the view (RFC 5267's search contexts,
    :mod:`mailserv.imap.extensions.contextsearch`): told which messages may have entered
    or left them, and given their turn in each flush."""

    def touched(self, uids: Sequence[int]) -> None:
        """These messages (ascending) arrived or changed flags."""

    async def refresh(self, slices: TimeSlices) -> None:
        """Write what changed, after the flush's EXISTS and FETCH, before its expunges."""

    def removing(self, uids: Sequence[int]) -> bytes:
        """What to write before the view drops ``uids`` (still numbered)."""

    def close(self) -> None: ...


def turn_on_modseq(session: Session) -> None:
    """A CONDSTORE enabling command ran (RFC 7162 3.1): CONDSTORE is on from now, and the
    first such command with a mailbox selected tells its HIGHESTMODSEQ (the one read at
    SELECT: every change after it has been or will be reported to this session)."""
    if not session.enabled.isdisjoint(MODSEQ_NAMES):
        return
    session.enable(["CONDSTORE"])
    tell_highestmodseq(session)


def tell_highestmodseq(session: Session) -> None:
    """CONDSTORE was just turned on: the selected mailbox's HIGHESTMODSEQ, if any."""
    if session.selected is not None:
        modseq = session.selected.base_modseq
        session.write(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % modseq)


def flags_responses(
    keywords: Iterable[str], readonly: bool, rights: frozenset[str] = ALL_RIGHTS
) -> bytes:
    """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the system flags and ``keywords``.

    SELECT/EXAMINE send them first, the view again whenever a keyword joins the list.  A
    read-only session may change nothing: its PERMANENTFLAGS is empty; in another user's
    mailbox it lists the flags the user's ``rights`` let it change (RFC 4314 4).
    """
    flags = [*FLAGS_ORDER, *sorted(keywords)]
    names = " ".join(flags).encode("ascii", "replace")
    allowed = [] if readonly else permanent_flags(flags, rights)
    permanent = " ".join(allowed).encode("ascii", "replace")
    return b"* FLAGS (%s)\r\n* OK [PERMANENTFLAGS (%s)] Flags permitted\r\n" % (names, permanent)


def flag_fetch_lines(
    seqs: Sequence[int],
    changes: FlagChangeColumns,
    recent: Container[int],
    flag_value: Callable[[frozenset[str], bool], bytes],
    show_uid: bool,
    show_modseq: bool,
    with_flags: bool = True,
) -> list[bytes]:
    """``* seq FETCH (UID FLAGS MODSEQ)`` for each message of ``changes`` (``seqs[i]`` is
    the number of ``changes.uids[i]``), as chunks to join.

    A run of messages with consecutive numbers and UIDs, the same flags, the same
    \\Recent state (``recent``) and the same modseq is formatted from one template: the
    flags of a run are rendered once (``flag_value(flags, is_recent)``, called once per
    distinct pair) and each line is one C-level ``%`` (``STORE 1:*`` changes long runs).
    """
    uids, flags, modseqs = changes.uids, changes.flags, changes.modseqs
    values: tuple[dict[frozenset[str], bytes], dict[frozenset[str], bytes]] = ({}, {})
    out: list[bytes] = []
    count = len(seqs)
    i = 0
    while i < count:
        seq, uid, these, modseq = seqs[i], uids[i], flags[i], modseqs[i]
        marked = uid in recent
        j = i + 1
        while (
            j < count
            and seqs[j] == seq + j - i
            and uids[j] == uid + j - i
            and modseqs[j] == modseq
            and (flags[j] is these or flags[j] == these)
            and (uids[j] in recent) is marked
        ):
            j += 1
        items = [b"UID %d"] if show_uid else []
        if with_flags:
            value = values[marked].get(these)
            if value is None:
                value = values[marked][these] = flag_value(these, marked).replace(b"%", b"%%")
            items.append(b"FLAGS " + value)
        if show_modseq:
            items.append(b"MODSEQ (%d)" % modseq)
        template = b"* %d FETCH (" + b" ".join(items) + b")\r\n"
        numbers: Iterable[object] = range(seq, seq + j - i)
        if show_uid:
            numbers = zip(numbers, range(uid, uid + j - i), strict=True)
        out.append(b"".join(map(template.__mod__, numbers)))
        i = j
    return out


async def as_columns(changes: Sequence[FlagChange], slices: TimeSlices) -> FlagChangeColumns:
    """A backend's flag changes as columns ascending by UID (made in slices when the
    backend gave ``FlagChange`` objects)."""
    if isinstance(changes, FlagChangeColumns):
        return changes
    uids: list[int] = []
    flags: list[frozenset[str]] = []
    modseqs: list[int] = []
    for start in range(0, len(changes), _STEP):
        for change in changes[start : start + _STEP]:
            uids.append(change.uid)
            flags.append(change.flags)
            modseqs.append(change.modseq)
        await slices.pause()
    if any(a > b for a, b in pairwise(uids)):
        order = sorted(range(len(uids)), key=uids.__getitem__)
        uids = [uids[at] for at in order]
        flags = [flags[at] for at in order]
        modseqs = [modseqs[at] for at in order]
    return FlagChangeColumns(uids, flags, modseqs)


@implementer(IMailboxListener)
class SelectedView:
    """Sequence numbers are positions in ``uids`` (ascending), as the client knows them.

    The view listens from its creation; SELECT creates it before reading the mailbox and
    then calls :meth:`load`, so no change falls between the snapshot and the first event.
    """

    def __init__(
        self,
        session: Session,
        mailbox: IMailbox,
        readonly: bool,
        uids: Sequence[int] = (),
        recent: Sequence[int] = (),
        base_modseq: int = 0,
    ) -> None:
        self.session = session
        self.mailbox = mailbox
        self.readonly = readonly
        self.rights = ALL_RIGHTS
        """The user's rights on the mailbox at SELECT (another user's: RFC 4314)."""
        self.uids: Sequence[int] = ()
        """Ascending.  SELECT's snapshot as the backend gave it (shared with the other
        sessions, never changed in place: no copy of a 20k list per SELECT) until the
        view's first own change of it (:meth:`_own_uids`)."""
        self._uids_owned = False
        self.recent: set[int] = set()
        """The session's \\Recent messages among ``uids``."""
        self._recent_ahead: set[int] = set()
        """Claimed as \\Recent before the event that announces them came."""
        self._added: list[int] = []
        self._queued_flags: dict[int, frozenset[str]] = {}
        self._queued_modseq: dict[int, int] = {}
        """The flag update owed per UID and its modseq (two columns: no object per message)."""
        self._flag_batches: list[Sequence[FlagChange]] = []
        """Other sessions' flag changes not sorted into the queue yet (see flags_changed)."""
        self._expunged: list[int] = []
        self._gone_ahead: set[int] = set()
        """UIDs above the last one announced that were expunged before being announced."""
        self._base_modseq = 0
        self._floor = 0
        """UIDs up to this one are announced or gone (the SELECT's UIDNEXT - 1)."""
        self._told_modseq: dict[int, int] = {}
        """Mod-sequence of the flags last sent per UID, when above ``_base_modseq``."""
        self._told_top = 0
        """No value of ``_told_modseq`` (nor ``_base_modseq``) is above this one."""
        self._lock = DeferredLock()
        self._wake_pending = False
        self.closed = False
        self._told: frozenset[str] = _ALWAYS_KNOWN
        """Flags of the last FLAGS response (SELECT/EXAMINE sent the system flags)."""
        self._untold: set[str] = set()
        """Flags rendered into FETCH responses that the client has not been told of yet."""
        self.saved: list[int] = []
        """RFC 5182's ``$``: the UIDs a SEARCH saved, ascending (a new view starts empty,
        so SELECT, EXAMINE, CLOSE and UNSELECT reset it; expunged messages leave it)."""
        self.contexts: ResultWatch | None = None
        """RFC 5267's UPDATE contexts, once one was asked for; they end with the view."""
        self.load(uids, recent, base_modseq)
        mailbox.add_listener(self)

    def load(
        self, uids: Sequence[int], recent: Sequence[int], base_modseq: int, uidnext: int = 0
    ) -> None:
        """The mailbox as SELECT read it, after the view started listening.

        ``base_modseq``: a HIGHESTMODSEQ read before ``uids``; any flag change at or below
        it happened before the client could have been told a message's flags.
        ``uidnext``: the UIDNEXT the client is told; a message below it that is not in
        ``uids`` was expunged before the snapshot, whenever its event comes.
        """
        self.uids = uids
        self._uids_owned = False
        self.recent = set()
        self._recent_ahead = set()
        self._base_modseq = base_modseq
        self._told_top = max(self._told_top, base_modseq)
        self._floor = max(uidnext - 1, 0)
        self._claimed(recent)

    async def refresh(self) -> None:
        """NOOP and CHECK: a mailbox that hears of changes made elsewhere late asks now
        (``IRefreshMailbox``); the events come to this view before the command's answer."""
        late = IRefreshMailbox(self.mailbox, None)
        if late is not None:
            await late.refresh()

    def close(self) -> None:
        """No more events; whatever is pending or being computed is never written."""
        self.closed = True
        self.mailbox.remove_listener(self)
        if self.contexts is not None:
            self.contexts.close()

    # -- what the client turned on (RFC 7162) -------------------------------------------

    @property
    def shows_modseq(self) -> bool:
        """Whether FETCH responses about flags carry UID and MODSEQ (CONDSTORE is on)."""
        return not self.session.enabled.isdisjoint(MODSEQ_NAMES)

    @property
    def reports_vanished(self) -> bool:
        """Whether removals are told as ``* VANISHED uids`` (QRESYNC is on)."""
        return VANISHED_NAME in self.session.enabled

    @property
    def base_modseq(self) -> int:
        """The HIGHESTMODSEQ read at SELECT: every later change is reported to the client."""
        return self._base_modseq

    # -- addressing ---------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def select(self, sequence: SequenceSet, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending."""
        if sequence.saved:
            return list(self.saved)
        if uid:
            return uids_in(sequence.resolve(self.uids[-1] if self.uids else 0), self.uids)
        if sequence.has_star and not self.uids:
            raise Bad("Invalid message sequence number: the mailbox is empty")
        try:
            return uids_for_seqs(sequence.resolve(len(self.uids)), self.uids)
        except ValueError as exc:
            raise Bad("Invalid message sequence number") from exc

    def expunge_pending(self) -> frozenset[int]:
        """Messages other sessions expunged that the client has not been told of yet."""
        return frozenset(self._expunged)

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def seqs_of(self, uids: Sequence[int]) -> list[int]:
        """Sequence numbers of ``uids`` (ascending) that are in the view, ascending."""
        return self._shown(uids, numbers=True)

    def shown(self, uids: Sequence[int]) -> list[int]:
        """Those of ``uids`` (ascending) that are in the view (the session was told of)."""
        return self._shown(uids, numbers=False)

    def _shown(self, uids: Sequence[int], numbers: bool) -> list[int]:
        mine = self.uids
        count = len(mine)
        if count and mine[-1] == count:  # UIDs 1..n without gaps: a UID is its number
            return list(uids[bisect_right(uids, 0) : bisect_right(uids, count)])
        # One pass over both: where the view holds a run of consecutive UIDs, the found
        # UIDs inside it are taken (numbered by an offset) at once, at C speed; the runs are
        # tried longer while they hold (a mailbox has few gaps, not many).
        out: list[int] = []
        low = i = 0
        total = len(uids)
        step = _RUN_PROBE
        while i < total:
            uid = uids[i]
            low = bisect_left(mine, uid, low)
            if low == count:
                break
            if mine[low] != uid:  # not in the view: skip to the next that may be
                i = bisect_left(uids, mine[low], i + 1)
                continue
            span = min(step, count - 1 - low)
            if span and mine[low + span] - uid == span:  # mine[low:low+span+1] is uid..uid+span
                end = bisect_right(uids, uid + span, i)
                offset = low + 1 - uid if numbers else 0
                out += map(offset.__add__, uids[i:end]) if offset else uids[i:end]
                i, low, step = end, low + span, min(step * 2, _RUN_MAX)
            else:
                out.append(low + 1 if numbers else uid)
                i, low, step = i + 1, low + 1, _RUN_PROBE
        return out

    # -- flags --------------------------------------------------------------------------

    def flags_with_recent(self, uid: int, flags: frozenset[str], modseq: int = 0) -> bytes:
        """A FETCH FLAGS value; notes the keywords not announced yet, and that the client
        now has the flags of ``modseq`` (a queued update no newer is dropped).

        Whatever writes the result must write ``announcement()`` before it (``write_fetches``
        does).  Usually every flag is known and the cost is one subset test.
        """
        if modseq:
            self._note_told(uid, modseq)
        # RFC 9051: no \Recent once IMAP4rev2 is enabled
        return self._flag_value(flags, uid in self.recent and not is_rev2(self.session))

    def _flag_value(self, flags: frozenset[str], recent: bool) -> bytes:
        """The FETCH FLAGS value, noting the keywords not announced yet."""
        if not flags <= self._told:
            self._untold.update(flags - self._told)
        return encode.flag_set_list(flags | {RECENT} if recent else flags)

    async def own_changes(
        self, changes: Sequence[FlagChange], slices: TimeSlices, silent: bool = False
    ) -> FlagChangeColumns:
        """Flag changes this session made: the client knows them (it asked), so an older
        update from another session, queued or still to come, is not sent after them.
        (Other sessions' events may come between two slices: those older than a change
        noted later are dropped from the queue then.)  The changes as columns.

        ``silent`` (STORE .SILENT): the client was not sent the resulting flags, so it
        knows them only where no other session changed the message meanwhile.  Where an
        update of another session is pending, the resulting flags take its place, told
        at the command's end (RFC 3501 6.4.6: a change from an external source is told,
        .SILENT or not); sending the older update instead would undo the client's own."""
        columns = await as_columns(changes, slices)
        if silent and self._flag_batches:
            await self._absorb_flags(slices)
        for start in range(0, len(columns), _NOTE_STEP):
            part = columns[start : start + _NOTE_STEP]
            if silent and self._queued_flags:
                part = self._owe_flags(part)
            self._note_told_all(part.uids, part.modseqs)
            if self.contexts is not None:
                self.contexts.touched(part.uids)
            await slices.pause()
        return columns

    def _owe_flags(self, part: FlagChangeColumns) -> FlagChangeColumns:
        """Of a silent STORE's ``part``, queue the flags of the messages with another
        session's update pending (not newer than the STORE's); the rest, which the client
        knows."""
        queued, uids = self._queued_modseq, part.uids
        owed: set[int] = set()
        for uid in queued.keys() & uids:  # (in C: a STORE 1:* pays no loop per message)
            at = bisect_left(uids, uid)
            pending, modseq = queued[uid], part.modseqs[at]
            if not (pending and modseq and pending > modseq):
                self._queued_flags[uid] = part.flags[at]
                queued[uid] = modseq
                owed.add(at)
        if not owed:
            return part
        known = [at for at in range(len(uids)) if at not in owed]
        return FlagChangeColumns(
            [uids[at] for at in known],
            [part.flags[at] for at in known],
            [part.modseqs[at] for at in known],
        )

    def flag_fetches(
        self,
        changes: FlagChangeColumns,
        show_uid: bool,
        with_flags: bool = True,
        note: bool = False,
    ) -> list[bytes]:
        """FETCH responses giving the flags of ``changes`` (ascending UIDs) to the client,
        with MODSEQ once CONDSTORE is on; messages not in the view are left out.  ``note``:
        the client has these flags from now on (own changes were noted already).  Write
        them with ``write_fetches`` (it announces new keywords first)."""
        seqs, changes = self._numbered(changes)
        if note:
            self._note_told_all(changes.uids, changes.modseqs)
        recent = () if is_rev2(self.session) else self.recent  # RFC 9051: no \Recent
        return flag_fetch_lines(
            seqs, changes, recent, self._flag_value, show_uid, self.shows_modseq, with_flags
        )

    def _numbered(self, changes: FlagChangeColumns) -> tuple[Sequence[int], FlagChangeColumns]:
        """The sequence numbers of ``changes`` (ascending UIDs); those not in the view are
        dropped from the changes returned."""
        uids = changes.uids
        mine = self.uids
        count = len(mine)
        if not uids or (count and mine[-1] == count and uids[0] >= 1 and uids[-1] <= count):
            return uids, changes  # UIDs 1..n without gaps: a UID is its number
        seqs: list[int] = []
        kept: list[int] = []
        low = 0
        for at, uid in enumerate(uids):
            low = bisect_left(mine, uid, low)
            if low == count:
                break
            if mine[low] == uid:
                seqs.append(low + 1)
                kept.append(at)
        if len(kept) == len(uids):
            return seqs, changes
        flags, modseqs = changes.flags, changes.modseqs
        return seqs, FlagChangeColumns(
            [uids[at] for at in kept], [flags[at] for at in kept], [modseqs[at] for at in kept]
        )

    def _note_told_all(self, uids: Sequence[int], modseqs: Sequence[int]) -> None:
        """``_note_told`` for many: one dict update when no modseq is below one noted (an
        equal one changes nothing).  An update still queued for one of them is then older
        than what the client has: ``_flag_lines`` drops it."""
        if not uids or min(modseqs) < self._told_top:
            for uid, modseq in zip(uids, modseqs, strict=True):
                if modseq:
                    self._note_told(uid, modseq)
            return
        self._told_modseq.update(zip(uids, modseqs, strict=True))
        self._told_top = max(self._told_top, max(modseqs))

    def _note_told(self, uid: int, modseq: int) -> None:
        if modseq > self._told_modseq.get(uid, self._base_modseq):
            self._told_modseq[uid] = modseq
            if modseq > self._told_top:
                self._told_top = modseq
        queued = self._queued_modseq.get(uid)
        if queued and queued <= modseq:
            del self._queued_flags[uid], self._queued_modseq[uid]

    def _stale(self, uid: int, modseq: int) -> bool:
        """Whether the client already has the flags of ``modseq`` or newer ones."""
        return bool(modseq) and modseq <= self._told_modseq.get(uid, self._base_modseq)

    def announcement(self) -> bytes:
        """The FLAGS/PERMANENTFLAGS owed for flags rendered since the last call, or ``b""``."""
        if not self._untold:
            return b""
        self._told = self._told.union(self._untold)
        self._untold = set()
        return flags_responses(self._told - _ALWAYS_KNOWN, self.readonly, self.rights)

    def write_fetches(self, lines: list[bytes]) -> None:
        """Write responses rendered with ``flags_with_recent``, announcing new keywords first."""
        data = self.announcement() + b"".join(lines)
        if data:
            self.session.write(data)

    # -- listener events ----------------------------------------------------------------

    def messages_added(self, mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        self._added.extend(uids)
        self._wake()

    def messages_expunged(self, mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        if origin is not self.session:
            self._expunged.extend(uids)
            self._wake()

    def flags_changed(
        self, mailbox: IMailbox, changes: Sequence[FlagChange], origin: object
    ) -> None:
        """Kept as they come (a STORE 1:* of another session may bring 100k): sorted into
        the queue at the next flush, in slices."""
        if origin is not self.session and changes:
            self._flag_batches.append(changes)
            self._wake()

    async def _absorb_flags(self, slices: TimeSlices) -> None:
        """Queue the newest update per message from the batches received; drop the stale."""
        while self._flag_batches:
            changes = self._flag_batches.pop(0)
            for start in range(0, len(changes), _STEP):
                part = changes[start : start + _STEP]
                if isinstance(part, FlagChangeColumns):
                    triples: Iterable[tuple[int, frozenset[str], int]] = zip(
                        part.uids, part.flags, part.modseqs, strict=True
                    )
                else:
                    triples = [(change.uid, change.flags, change.modseq) for change in part]
                for uid, flags, modseq in triples:
                    if self._stale(uid, modseq):
                        continue
                    queued = self._queued_modseq.get(uid)
                    if queued is None or not (modseq and queued > modseq):
                        self._queued_flags[uid] = flags
                        self._queued_modseq[uid] = modseq
                await slices.pause()

    def mailbox_lost(self, mailbox: IMailbox, reason: str) -> None:
        """The backend can no longer follow the mailbox: the session ends with BYE."""
        self.session.disconnect(f"Mailbox lost: {reason}")

    def _wake(self) -> None:
        if self.session.idling and not self._wake_pending and not self.closed:
            self._wake_pending = True
            d = defer.Deferred.fromCoroutine(self.flush_idle())
            d.addErrback(lambda f: _log.failure("IDLE update failed", f))

    # -- reporting ----------------------------------------------------------------------

    async def flush(self, expunges: bool, since: float | None = None) -> None:
        """Write the pending updates that may go out now (after the flush in progress),
        including what other processes did before ``since`` (the command's start, a
        ``time.perf_counter()`` reading; None: now) (``ISharedMailbox``)."""
        shared = ISharedMailbox(self.mailbox, None)
        if shared is not None:
            await shared.catch_up(since)
        async with self._lock:
            await self._flush_locked(expunges, idle=False)

    async def flush_idle(self) -> None:
        """While IDLE: write what is pending once the flush in progress ended (nothing
        once IDLE ended: the next command's end flushes then)."""
        async with self._lock:
            self._wake_pending = False
            if self.session.idling:
                await self._flush_locked(True, idle=True)

    async def _flush_locked(self, expunges: bool, idle: bool) -> None:
        slices = TimeSlices(self.session.services.turns)
        await self._absorb_flags(slices)
        if not self.readonly and self._fresh_pending():
            # Claimed before anything changes, so nothing awaits between the claim, the
            # change to the sequence map and the write that tells the client of it.
            self._claimed(await self.mailbox.claim_recent())
        if self._gone_away(idle):
            return
        if self._added:
            self.write_fetches(self._announce_added())
        while self._queued_flags:
            # Flag updates leave the sequence map alone: written in slices.
            uids = sorted(islice(self._queued_flags, _STEP))
            flags = [self._queued_flags.pop(uid) for uid in uids]
            modseqs = [self._queued_modseq.pop(uid) for uid in uids]
            self.write_fetches(self._flag_lines(uids, flags, modseqs))
            if self.contexts is not None:
                self.contexts.touched(uids)
            await slices.pause()
            if self._gone_away(idle):
                return
        if self.contexts is not None:
            await self.contexts.refresh(slices)
            if self._gone_away(idle):
                return
        if expunges and self._expunged:
            gone, self._expunged = self._expunged, []
            await self.tell_removed(gone, slices, idle)

    def _own_uids(self) -> list[int]:
        """``uids`` as a list of the view's own, to change (copied on the first change)."""
        if not self._uids_owned or not isinstance(self.uids, list):
            self.uids = list(self.uids)
            self._uids_owned = True
        return self.uids

    def _gone_away(self, idle: bool) -> bool:
        """Another mailbox is selected, or IDLE ended: that command flushes what is left."""
        return self.closed or (idle and not self.session.idling)

    def _claimed(self, uids: Iterable[int]) -> None:
        """``uids`` are recent to this session: those in the view now, the others when the
        client is told they exist (set operations: a first SELECT may claim them all)."""
        claimed = sorted(uids)
        last = self.uids[-1] if self.uids else 0
        cut = bisect_right(claimed, last)
        self._recent_ahead.update(claimed[cut:])
        if cut:
            self.recent.update(set(claimed[:cut]).intersection(self.uids))

    def _last(self) -> int:
        """The highest UID the client knows of, or was told is below UIDNEXT."""
        return max(self.uids[-1], self._floor) if self.uids else self._floor

    def _fresh_pending(self) -> bool:
        last = self._last()
        return any(uid > last for uid in self._added)

    def _flag_lines(
        self, uids: list[int], flags: list[frozenset[str]], modseqs: list[int]
    ) -> list[bytes]:
        """Queued updates (ascending UIDs) still newer than what the client has."""
        fresh = [at for at, uid in enumerate(uids) if not self._stale(uid, modseqs[at])]
        if len(fresh) < len(uids):
            uids = [uids[at] for at in fresh]
            flags = [flags[at] for at in fresh]
            modseqs = [modseqs[at] for at in fresh]
        return self.flag_fetches(FlagChangeColumns(uids, flags, modseqs), True, note=True)

    def _announce_added(self) -> list[bytes]:
        added, self._added = self._added, []
        last = self._last()
        fresh = sorted({uid for uid in added if uid > last} - self._gone_ahead)
        if self._expunged and fresh:
            # Expunged before the client heard of them: neither EXISTS nor EXPUNGE.
            pending = set(self._expunged)
            dead = [uid for uid in fresh if uid in pending]
            if dead:
                self._gone_ahead.update(dead)
                self._recent_ahead.difference_update(dead)
                fresh = [uid for uid in fresh if uid not in pending]
        if not fresh:
            return []
        self._own_uids().extend(fresh)
        if self.contexts is not None:
            self.contexts.touched(fresh)
        last = fresh[-1]
        if self._gone_ahead:
            self._gone_ahead = {uid for uid in self._gone_ahead if uid > last}
        if self._recent_ahead:
            self.recent.update(self._recent_ahead.intersection(fresh))
            self._recent_ahead = {uid for uid in self._recent_ahead if uid > last}
        exists = b"* %d EXISTS\r\n" % len(self.uids)
        return (
            [exists] if is_rev2(self.session) else [exists, b"* %d RECENT\r\n" % len(self.recent)]
        )

    def remove(self, uids: Sequence[int]) -> list[bytes]:
        """Drop expunged UIDs from the view; the EXPUNGE lines to send, highest first (or
        ``* VANISHED`` lines of their UIDs once QRESYNC is on), all at once.

        A UID not announced yet is remembered, so that it is never announced.  Search
        contexts' REMOVEFROM go first, while the numbers are still valid (RFC 5267 4.3.4).
        """
        return [line for lines in self._removal(uids, max(len(uids), 1)) for line in lines]

    async def tell_removed(
        self, uids: Sequence[int], slices: TimeSlices, idle: bool = False
    ) -> None:
        """:meth:`remove`, each step's lines written at once (an EXPUNGE or MOVE of 100k
        messages): ``_REMOVE_STEP`` messages at a time, from the highest number down, with
        a pause for other sessions between steps.  The numbers of a step stay valid after
        the steps above it, and the map changes in the turn its lines are written.  When
        the view is gone away (``idle``: IDLE ended) at a pause, the rest stays pending."""
        steps = self._removal(uids, _REMOVE_STEP)
        for lines in steps:
            if lines:
                self.session.write(b"".join(lines))
            await slices.pause()
            if self._gone_away(idle):
                steps.close()
                return

    def _removal(self, uids: Sequence[int], step: int) -> Generator[list[bytes], None, None]:
        """The steps of a removal: each changes the map and yields the lines telling it,
        to be written before the next step (the generator must be run to its end).  Per
        step the work is in C but for its own messages: the map is cut by slices, not by
        a ``pop`` per message (which moved the rest of a 100k list each time)."""
        gone = sorted(set(uids))
        first = self.contexts.removing(gone) if self.contexts is not None else b""
        cut = bisect_right(gone, self._last())
        if cut < len(gone):  # never announced: they never will be
            ahead = gone[cut:]
            self._gone_ahead.update(ahead)
            self._recent_ahead.difference_update(ahead)
            self._forget(ahead)
        if self.saved:
            doomed = set(gone)
            self.saved = [uid for uid in self.saved if uid not in doomed]
        seqs = self._shown(gone[:cut], numbers=True)
        if len(seqs) < cut:  # some were not in the view (told already)
            self._forget(gone[:cut])
        mine = self._own_uids() if seqs else []
        lines = [first] if first else []
        end = len(seqs)
        try:
            while end:
                part = seqs[max(end - step, 0) : end]
                low = prev = part[0] - 1
                kept: list[list[int]] = []
                for seq in part:
                    if seq - 1 > prev:
                        kept.append(mine[prev : seq - 1])
                    prev = seq
                known = [mine[seq - 1] for seq in part]
                kept.append(mine[prev:])
                mine[low:] = kept[0] if len(kept) == 1 else chain.from_iterable(kept)
                end -= len(part)
                self.recent.difference_update(known)
                self._forget(known)
                if self.reports_vanished:
                    lines.append(b"* VANISHED %s\r\n" % format_set(known).encode())
                else:
                    lines += map(b"* %d EXPUNGE\r\n".__mod__, reversed(part))
                yield lines
                lines = []
        finally:
            if end:  # closed early: the messages still numbered are expunged later
                self._expunged[:0] = [mine[seq - 1] for seq in seqs[:end]]
        if lines:
            yield lines

    def _forget(self, uids: Sequence[int]) -> None:
        """No flags of ``uids`` are owed or remembered any more."""
        for table in (self._told_modseq, self._queued_flags, self._queued_modseq):
            if table:
                for uid in table.keys() & uids:
                    del table[uid]
