"""Reading one mailbox's messages: transaction functions for STATUS, SELECT's UID list,
FETCH, message contents and the changes since a modseq."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailserv.backends.kit.flagchanges import changes_of
from mailserv.backends.sql.rows import Zones, flag_test
from mailserv.backends.sql.tx import Tx
from mailserv.errors import MailboxNotFound
from mailserv.interfaces import SEEN, Changes, FlagChange, MailboxStatus, MessageMeta
from mailserv.message import heads
from mailserv.message.info import NO_INFO, MessageInfo
from mailserv.message.lazyinfo import LazyInfo, is_current
from mailserv.message.parse import parse_message
from mailserv.syntax.sequences import merge

if TYPE_CHECKING:
    from mailserv.backends.sql.dialect import Dialect

IN_CHUNK = 500
"""UIDs per ``IN (...)`` list (SQLite); well under its parameter limit."""

_META_COLUMNS = (
    "m.uid, m.flags, m.internaldate, m.tz, m.size, m.modseq, i.info, m.message_id,"
    " coalesce(m.savedate, m.internaldate), i.heads"  # stored before save dates were kept
)
_META_JOIN = "mail m JOIN message_info i ON i.message_id = m.message_id"


def where_uids(
    tx: Tx, select: str, params: Sequence[Any], uids: Sequence[int], column: str = "uid"
) -> list[Any]:
    """Rows of ``select`` (ending in a WHERE clause, ``params`` its values) for ``uids``.

    Ascending by UID, which must be the first column.  A dense list is read as one range and
    filtered here; a sparse one as one array on PostgreSQL (one statement of constant text,
    prepared once: a list of 500 placeholders cost the driver more to convert than the
    server to answer), in ``IN`` chunks on SQLite.
    """
    wanted = sorted(set(uids))
    if not wanted:
        return []
    low, high = wanted[0], wanted[-1]
    if high - low < 4 * len(wanted) + 64:
        rows = tx.all(
            f"{select} AND {column} BETWEEN ? AND ? ORDER BY {column}", (*params, low, high)
        )
        if high - low + 1 == len(wanted):
            return rows
        keep = set(wanted)
        return [row for row in rows if row[0] in keep]
    if tx.dialect.is_postgres:
        select += f" AND {column} = ANY(?::bigint[]) ORDER BY {column}"
        listed = "{" + ",".join(map(str, wanted)) + "}"  # the driver's list dumper is slower
        return tx.all(select, (*params, listed))
    out: list[Any] = []
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        out += tx.all(f"{select} AND {column} IN ({marks}) ORDER BY {column}", (*params, *chunk))
    return out


def status(tx: Tx, box_id: int) -> MailboxStatus:
    return look(tx, box_id, None).status


@dataclass(frozen=True, slots=True)
class Look:
    """What SELECT needs of a mailbox, read in one transaction (one snapshot): the status,
    the UID list (a known one confirmed or brought up to date), whether every message
    below UIDNEXT was claimed for \\Recent already, and the first unseen UID."""

    status: MailboxStatus
    uids: UidList | None
    """None when no list was known (it is read whole on its own) or it could not be
    brought up to date."""
    all_claimed: bool
    first_unseen: int | None
    unseen_known: bool
    """``first_unseen`` is known (the kept runs were there, see the module ``unseen``)."""


def look_columns(dialect: Dialect) -> str:
    """The ``mailboxes`` columns a :class:`Look` is made of (:func:`look_of`): the status,
    and of the unseen runs (``unseen.py``, up to 25 KB) only the first number."""
    runs = "unseen_uids"
    first = (
        f"split_part({runs}, ',', 1)"
        if dialect.is_postgres
        else f"substr({runs}, 1, instr({runs} || ',', ',') - 1)"
    )
    return (
        "uidvalidity, uidnext, messages, unseen, recent_mark, highestmodseq, size, mailboxid, "
        + first
    )


def look(tx: Tx, box_id: int, known: UidList | None) -> Look:
    """``status``, and in the same snapshot (one round trip when nothing changed): the UID
    list ``known`` brought up to date (see :func:`uids_since`), whether anything is left to
    claim (``messages.unclaimed``), the first unseen UID from the kept runs."""
    if known is not None:  # one snapshot for the statements
        tx.snapshot()
    row = tx.one(
        f"SELECT {look_columns(tx.dialect)} FROM mailboxes WHERE id = ? AND selectable = 1",
        (box_id,),
    )
    if row is None:
        raise MailboxNotFound("the mailbox was deleted")
    uidnext, count, mark, modseq = int(row[1]), int(row[2]), int(row[4]), int(row[5])
    recent = 0
    if mark < uidnext - 1:
        recent = int(
            tx.scalar("SELECT count(*) FROM mail WHERE mailbox_id = ? AND uid > ?", (box_id, mark))
        )
    current = None if known is None else _brought_up(tx, box_id, known, modseq, uidnext, count)
    return _look(row, recent, current)


def look_of(row: Sequence[Any], known: UidList | None) -> Look | None:
    """The :class:`Look` of a row of :func:`look_columns` read elsewhere (opening the
    mailbox), when it needs no other statement: every message claimed for \\Recent, and
    ``known`` current as of the row (see :func:`_brought_up`); else None."""
    uidnext, count, mark, modseq = int(row[1]), int(row[2]), int(row[4]), int(row[5])
    if known is None or mark < uidnext - 1:
        return None
    current = _unchanged(known, modseq, uidnext, count)
    return None if current is None else _look(row, 0, current)


def _unchanged(known: UidList, modseq: int, uidnext: int, count: int) -> UidList | None:
    """``known`` (restamped) when no message came or went since it was read, as a row that
    found ``modseq``, ``uidnext`` and ``count`` tells; else None."""
    if known.modseq == modseq:
        return known
    if known.uidnext == uidnext and len(known.uids) == count:
        # UIDNEXT grows with every message added and the count drops with every one
        # expunged: neither happened, only flags changed.
        return UidList(modseq, known.uids, uidnext)
    return None


def _look(row: Sequence[Any], recent: int, current: UidList | None) -> Look:
    validity, uidnext, count, unseen, mark, modseq, size = (int(v) for v in row[:7])
    found = MailboxStatus(validity, uidnext, count, unseen, recent, modseq, size, row[7])
    first_run = row[8]  # the low end of the first run, or NULL when no runs are kept
    first = int(first_run) if first_run else None
    return Look(found, current, mark >= uidnext - 1, first, first_run is not None or unseen == 0)


def _brought_up(
    tx: Tx, box_id: int, known: UidList, modseq: int, uidnext: int, count: int
) -> UidList | None:
    """``known`` as of the mailbox row just read (``modseq``, ``uidnext``, ``count``): itself
    (restamped) when no message came or went since, else brought up to date; None when the
    counts then disagree."""
    unchanged = _unchanged(known, modseq, uidnext, count)
    if unchanged is not None:
        return unchanged
    top = known.uids[-1] if known.uids else 0
    added = tx.all(
        "SELECT uid FROM mail WHERE mailbox_id = ? AND uid > ? ORDER BY uid", (box_id, top)
    )
    gone = tx.all(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? AND uid <= ?",
        (box_id, known.modseq, top),
    )
    kept = known.uids
    if gone:
        dropped = {uid for (uid,) in gone}
        kept = tuple(uid for uid in kept if uid not in dropped)
    fresh = kept + tuple(uid for (uid,) in added)
    if len(fresh) != count:
        return None
    return UidList(modseq, fresh, uidnext)


def first_unseen(tx: Tx, box_id: int) -> int | None:
    """The lowest UID without \\Seen: from the kept runs, else from the rows."""
    row = tx.one("SELECT unseen, unseen_uids FROM mailboxes WHERE id = ?", (box_id,))
    if row is None:
        raise MailboxNotFound("the mailbox was deleted")
    if int(row[0]) == 0:
        return None
    if row[1] is not None:
        return int(row[1].split(",", 1)[0]) if row[1] else None
    test = flag_test(tx.dialect.find, SEEN, present=False)
    found = tx.scalar(
        f"SELECT uid FROM mail WHERE mailbox_id = ? AND {test} ORDER BY uid LIMIT 1", (box_id,)
    )
    return None if found is None else int(found)


def account_usage(tx: Tx, account_id: int) -> tuple[int, int]:
    """Octets and messages of all the account's mailboxes, from their kept counts."""
    row = tx.one(
        "SELECT coalesce(sum(size), 0), coalesce(sum(messages), 0) FROM mailboxes"
        " WHERE account_id = ? AND selectable = 1",
        (account_id,),
    )
    assert row is not None  # an aggregate always has its one row
    return int(row[0]), int(row[1])


def uids(tx: Tx, box_id: int) -> list[int]:
    """Both drivers give integers back: no conversion per row."""
    rows = tx.all("SELECT uid FROM mail WHERE mailbox_id = ? ORDER BY uid", (box_id,))
    return [uid for (uid,) in rows]


@dataclass(frozen=True, slots=True)
class UidList:
    """Every UID of a mailbox (ascending) when its HIGHESTMODSEQ was ``modseq``; the list
    is never changed in place (a newer one is made), so it may be shared and read anywhere."""

    modseq: int
    uids: tuple[int, ...]
    uidnext: int = 0
    """The mailbox's UIDNEXT then (0: not known)."""


KEPT_UIDS = 500_000
"""UIDs of the lists :class:`KeptUidLists` keeps at most, all mailboxes together."""


class KeptUidLists:
    """The UID lists of the mailboxes read last, kept after their mailbox objects go: a
    client that selects again the mailbox only it had selected (its SELECT drops the old
    view first, and with it the object) has it brought up to date, not read whole again.

    By ``(mailbox id, account id, UIDVALIDITY)``: a mailbox made again (SQLite may reuse
    the id) is another key.  Least recently used first out, past :data:`KEPT_UIDS`.
    """

    def __init__(self, limit: int = KEPT_UIDS) -> None:
        self._limit = limit
        self._lists: OrderedDict[tuple[int, int, int], UidList] = OrderedDict()
        self._total = 0

    def get(self, key: tuple[int, int, int]) -> UidList | None:
        found = self._lists.get(key)
        if found is not None:
            self._lists.move_to_end(key)
        return found

    def put(self, key: tuple[int, int, int], kept: UidList) -> None:
        old = self._lists.pop(key, None)
        if old is not None:
            self._total -= len(old.uids)
        self._lists[key] = kept
        self._total += len(kept.uids)
        while self._total > self._limit and len(self._lists) > 1:
            _, dropped = self._lists.popitem(last=False)
            self._total -= len(dropped.uids)


def uids_since(tx: Tx, box_id: int, known: UidList | None) -> UidList:
    """The mailbox's UIDs now: ``known`` itself when nothing was added or expunged since,
    else ``known`` brought up to date from the UIDs above its last one and the expunge
    log (or read whole when there is no ``known``, or the counts disagree)."""
    tx.snapshot()  # one snapshot for the statements below
    row = tx.one("SELECT highestmodseq, messages, uidnext FROM mailboxes WHERE id = ?", (box_id,))
    if row is None:
        raise MailboxNotFound("the mailbox was deleted")
    modseq, count, uidnext = int(row[0]), int(row[1]), int(row[2])
    if known is not None:
        current = _brought_up(tx, box_id, known, modseq, uidnext, count)
        if current is not None:
            return current
    return UidList(modseq, tuple(uids(tx, box_id)), uidnext)


def load_info(tx: Tx, message_id: int, blob: Any, kept: Any = None) -> MessageInfo:
    """The stored MessageInfo, decoded when first read (``kept``: its ``heads`` column,
    which FETCH ENVELOPE, BODY, BODYSTRUCTURE and whole-message sections read instead of
    the record, see the module ``heads``); a record of an unknown format (an older
    mailserv's) is parsed again from the message now."""
    record = bytes(blob)
    if is_current(record):
        return LazyInfo(record, heads.load(kept))
    raw = tx.scalar("SELECT raw FROM message_data WHERE message_id = ?", (message_id,))
    return parse_message(bytes(raw))


class _FlagSets(dict[str, frozenset[str]]):
    """A stored flags text -> its set, made once per distinct text of a read (the messages
    that have the same flags share one set)."""

    def __missing__(self, text: str) -> frozenset[str]:
        flags = self[text] = frozenset(text.split())
        return flags


def metas(tx: Tx, rows: Sequence[Any], zones: Zones) -> list[MessageMeta]:
    """The messages of ``rows``: the columns of ``_META_COLUMNS`` first (others may follow)."""
    flag_sets = _FlagSets()
    saved_at: dict[int, datetime] = {}  # a COPY saves many in one second
    out = []
    for uid, text, seconds, tz, size, modseq, blob, message_id, saved, kept, *_ in rows:
        flags = flag_sets[text]
        savedate = saved_at.get(saved)
        if savedate is None:
            savedate = saved_at[saved] = zones.datetime(saved, 0)
        out.append(
            MessageMeta(
                int(uid),
                flags,
                zones.datetime(seconds, tz),
                int(size),
                int(modseq),
                load_info(tx, int(message_id), blob, kept),
                savedate,
            )
        )
    return out


_FLAG_COLUMNS = (
    "m.uid, m.flags, m.internaldate, m.tz, m.size, m.modseq, coalesce(m.savedate, m.internaldate)"
)


def fetch_flags(tx: Tx, box_id: int, uids: Sequence[int], zones: Zones) -> list[MessageMeta]:
    """:func:`fetch` without the parsed messages (``NO_INFO``): the ``mail`` rows alone."""
    rows = where_uids(
        tx, f"SELECT {_FLAG_COLUMNS} FROM mail m WHERE m.mailbox_id = ?", (box_id,), uids, "m.uid"
    )
    flag_sets = _FlagSets()
    out = []
    for uid, text, seconds, tz, size, modseq, saved in rows:
        out.append(
            MessageMeta(
                int(uid),
                flag_sets[text],
                zones.datetime(seconds, tz),
                int(size),
                int(modseq),
                NO_INFO,
                zones.datetime(saved, 0),
            )
        )
    return out


def fetch_with_sizes(
    tx: Tx, box_id: int, uids: Sequence[int], zones: Zones
) -> tuple[list[MessageMeta], list[tuple[int, int]], int | None]:
    """The messages ``uids``, the (uid, size) pairs of the result for the content
    read-ahead (made here, in the query's thread, not on the reactor), and the mailbox's
    HIGHESTMODSEQ as the same statement read it (None when it read no row)."""
    rows = where_uids(
        tx,
        f"SELECT {_META_COLUMNS}, b.highestmodseq FROM {_META_JOIN}"
        " JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.mailbox_id = ?",
        (box_id,),
        uids,
        "m.uid",
    )
    found = metas(tx, rows, zones)
    highest = int(rows[0][-1]) if rows else None
    return found, [(meta.uid, meta.size) for meta in found], highest


def contents(tx: Tx, box_id: int, uids: Sequence[int]) -> dict[int, bytes]:
    rows = where_uids(
        tx,
        "SELECT m.uid, d.raw FROM mail m JOIN message_data d ON d.message_id = m.message_id"
        " WHERE m.mailbox_id = ?",
        (box_id,),
        uids,
        "m.uid",
    )
    return {int(uid): bytes(raw) for uid, raw in rows}


MAX_LOG_RANGES = 200
"""UID ranges from ``modseq_log`` read as ranges; more are read as UIDs (up to
MAX_LOG_UIDS of them), beyond that the mailbox's rows are read instead."""
MAX_LOG_UIDS = 5000


def logged_ranges(
    tx: Tx, box_id: int, log_from: int, op: str, modseq: int
) -> list[tuple[int, int]] | None:
    """UID ranges (merged, ascending) holding every mail row whose modseq is ``op`` (``>``
    or ``=``) ``modseq``, from ``modseq_log`` (``log_from``: the mailbox's, the log holds
    every write above it); None when the log does not reach back so far."""
    if (modseq if op == ">" else modseq - 1) < log_from:
        return None
    rows = tx.all(
        f"SELECT low, high FROM modseq_log WHERE mailbox_id = ? AND modseq {op} ?",
        (box_id, modseq),
    )
    return merge((int(low), int(high)) for low, high in rows)


def _written(
    tx: Tx, columns: str, source: str, box_id: int, log_from: int, op: str, modseq: int
) -> list[Any]:
    """Rows (``columns`` of ``source``, alias ``m``) of the mail written at a modseq ``op``
    ``modseq``, ascending by UID: read in the ranges the log gives, else over the mailbox."""
    select = f"SELECT {columns} FROM {source} WHERE m.mailbox_id = ? AND m.modseq {op} ?"
    params: list[Any] = [box_id, modseq]
    ranges = logged_ranges(tx, box_id, log_from, op, modseq)
    if ranges is not None and len(ranges) > MAX_LOG_RANGES:
        if sum(high - low + 1 for low, high in ranges) <= MAX_LOG_UIDS:
            uids = [uid for low, high in ranges for uid in range(low, high + 1)]
            return where_uids(tx, select, params, uids, "m.uid")
        ranges = None
    if ranges is not None:
        if not ranges:
            return []
        select += " AND (" + " OR ".join("m.uid BETWEEN ? AND ?" for _ in ranges) + ")"
        params += [bound for run in ranges for bound in run]
    return tx.all(select + " ORDER BY m.uid", params)


def changes_since(tx: Tx, box_id: int, modseq: int, zones: Zones) -> Changes:
    """HIGHESTMODSEQ is read first, so no change can fall between it and the rows."""
    row = tx.one("SELECT highestmodseq, log_from FROM mailboxes WHERE id = ?", (box_id,))
    if row is None:
        raise MailboxNotFound("the mailbox was deleted")
    highest, log_from = int(row[0]), int(row[1])
    rows = _written(tx, _META_COLUMNS, _META_JOIN, box_id, log_from, ">", modseq)
    vanished = tx.all(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
        (box_id, modseq),
    )
    return Changes(metas(tx, rows, zones), [int(uid) for (uid,) in vanished], highest)


def flag_changes(tx: Tx, box_id: int, modseq: int) -> Sequence[FlagChange]:
    """The messages a STORE at ``modseq`` changed and nothing changed since (for notices)."""
    log_from = tx.scalar("SELECT log_from FROM mailboxes WHERE id = ?", (box_id,))
    if log_from is None:
        return []
    rows = _written(tx, "m.uid, m.flags", "mail m", box_id, int(log_from), "=", modseq)
    by_text: dict[str, list[int]] = {}
    for uid, text in rows:
        by_text.setdefault(text, []).append(int(uid))
    groups: dict[frozenset[str], list[int]] = {}
    for text, uids in by_text.items():
        groups.setdefault(frozenset(text.split()), []).extend(uids)
    for uids in groups.values():
        uids.sort()
    return changes_of(groups, modseq)
