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
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailserv.imap import encode
from mailserv.imap.replies import Bad
from mailserv.imap.sequence import SequenceSet, uids_for_seqs, uids_in
from mailserv.interfaces import FlagChange, IMailbox, IMailboxListener

if TYPE_CHECKING:
    from mailserv.imap.server import IMAPServerProtocol

_log = Logger()

SYSTEM_FLAGS: tuple[str, ...] = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_ALWAYS_KNOWN = frozenset(SYSTEM_FLAGS)


def flags_responses(keywords: Iterable[str], readonly: bool) -> bytes:
    """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the system flags and ``keywords``.

    SELECT/EXAMINE send them first, the view again whenever a keyword joins the list.  A
    read-only session may change nothing: its PERMANENTFLAGS is empty.
    """
    names = " ".join([*SYSTEM_FLAGS, *sorted(keywords)]).encode("ascii", "replace")
    permanent = b"" if readonly else names + b" \\*"
    return b"* FLAGS (%s)\r\n* OK [PERMANENTFLAGS (%s)] Flags permitted\r\n" % (names, permanent)


@implementer(IMailboxListener)
class SelectedView:
    """Sequence numbers are positions in ``uids`` (ascending), as the client knows them."""

    def __init__(
        self,
        session: IMAPServerProtocol,
        mailbox: IMailbox,
        readonly: bool,
        uids: Sequence[int],
        recent: Sequence[int],
    ) -> None:
        self.session = session
        self.mailbox = mailbox
        self.readonly = readonly
        self.uids: list[int] = list(uids)
        self.recent: set[int] = set(recent)
        self._added: list[int] = []
        self._flags: dict[int, FlagChange] = {}
        self._expunged: list[int] = []
        self._flushing = False
        self._again = False
        self._told: frozenset[str] = _ALWAYS_KNOWN
        """Flags of the last FLAGS response (SELECT/EXAMINE sent the system flags)."""
        self._untold: set[str] = set()
        """Flags rendered into FETCH responses that the client has not been told of yet."""
        mailbox.add_listener(self)

    def close(self) -> None:
        self.mailbox.remove_listener(self)

    # -- addressing ---------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def select(self, sequence: SequenceSet, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending."""
        if uid:
            return uids_in(sequence.resolve(self.uids[-1] if self.uids else 0), self.uids)
        if sequence.has_star and not self.uids:
            raise Bad("Invalid message sequence number: the mailbox is empty")
        try:
            return uids_for_seqs(sequence.resolve(len(self.uids)), self.uids)
        except ValueError as exc:
            raise Bad("Invalid message sequence number") from exc

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def seqs_of(self, uids: Sequence[int]) -> list[int]:
        """Sequence numbers of ``uids`` (ascending) that are in the view, ascending."""
        mine = self.uids
        count = len(mine)
        if count and mine[-1] == count:  # UIDs 1..n without gaps: a UID is its number
            return [uid for uid in uids if 0 < uid <= count]
        out = []
        low = 0
        for uid in uids:
            low = bisect_left(mine, uid, low)
            if low == count:
                break
            if mine[low] == uid:
                out.append(low + 1)
        return out

    def flags_with_recent(self, uid: int, flags: frozenset[str]) -> bytes:
        """A FETCH FLAGS value; notes the keywords not announced yet.

        Whatever writes the result must write ``announcement()`` before it (``write_fetches``
        does).  Usually every flag is known and the cost is one subset test.
        """
        if not flags <= self._told:
            self._untold.update(flags - self._told)
        if uid in self.recent:
            return encode.flag_list(flags | {"\\Recent"})
        return encode.flag_list(flags)

    def announcement(self) -> bytes:
        """The FLAGS/PERMANENTFLAGS owed for flags rendered since the last call, or ``b""``."""
        if not self._untold:
            return b""
        self._told = self._told.union(self._untold)
        self._untold = set()
        return flags_responses(self._told - _ALWAYS_KNOWN, self.readonly)

    def write_fetches(self, lines: list[bytes]) -> None:
        """Write responses rendered with ``flags_with_recent``, announcing new keywords first."""
        self.session.write(self.announcement() + b"".join(lines))

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
        if origin is not self.session:
            for change in changes:
                self._flags[change.uid] = change
            self._wake()

    def mailbox_lost(self, mailbox: IMailbox, reason: str) -> None:
        """The backend can no longer follow the mailbox: the session ends with BYE."""
        self.session.disconnect(f"Mailbox lost: {reason}")

    def _wake(self) -> None:
        if self.session.idling:
            d = defer.Deferred.fromCoroutine(self.flush(expunges=True))
            d.addErrback(lambda f: _log.failure("IDLE update failed", f))

    # -- reporting ----------------------------------------------------------------------

    async def flush(self, expunges: bool) -> None:
        """Write the pending updates that may go out now."""
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        try:
            self._again = True
            while self._again:
                self._again = False
                await self._flush_once(expunges)
        finally:
            self._flushing = False

    async def _flush_once(self, expunges: bool) -> None:
        out: list[bytes] = []
        if self._added:
            added, self._added = sorted(self._added), []
            last = self.uids[-1] if self.uids else 0
            fresh = [uid for uid in added if uid > last]
            if fresh:
                self.uids.extend(fresh)
                out.append(b"* %d EXISTS\r\n" % len(self.uids))
                if not self.readonly:
                    self.recent.update(await self.mailbox.claim_recent())
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        if self._flags:
            changes, self._flags = self._flags, {}
            for change in changes.values():
                seq = self.seq_of(change.uid)
                if seq is not None:
                    flags = self.flags_with_recent(change.uid, change.flags)
                    out.append(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, change.uid, flags))
        if expunges and self._expunged:
            gone, self._expunged = self._expunged, []
            out.extend(self.remove(gone))
        if out:
            self.write_fetches(out)

    def remove(self, uids: Sequence[int]) -> list[bytes]:
        """Drop expunged UIDs from the view; the EXPUNGE lines to send, highest first."""
        seqs = sorted({s for s in map(self.seq_of, uids) if s is not None}, reverse=True)
        for seq in seqs:
            uid = self.uids.pop(seq - 1)
            self.recent.discard(uid)
        return [b"* %d EXPUNGE\r\n" % seq for seq in seqs]
