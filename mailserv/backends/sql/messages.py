"""Messages in one mailbox: transaction functions for APPEND, STORE, COPY/MOVE, EXPUNGE and
\\Recent (reading them is ``reads``).

Every write first locks the mailbox row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` has locked the database) and takes UIDs and the next modseq from it, so
concurrent writers through any number of frontends queue up per mailbox: UIDs are never
shared, and they become visible in ascending order.  Bytes live once per distinct message
(``messages.refs`` counts the ``mail`` rows that use it; the last one to go deletes it).
Each write queues a change notice that PostgreSQL delivers to the other frontends at commit.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailserv.backends.kit import uidlist
from mailserv.backends.kit.flagchanges import changes_of
from mailserv.backends.sql import fulltext, sortkeys, unseen
from mailserv.backends.sql.reads import where_uids
from mailserv.backends.sql.rows import (
    ADDED,
    EXPUNGED,
    FLAGS,
    Notice,
    When,
    flag_probe,
    flags_text,
    mark_test,
    marks_of,
    uid_notices,
)
from mailserv.backends.sql.tx import Tx
from mailserv.errors import MailboxNotFound
from mailserv.interfaces import (
    DELETED,
    RECENT,
    SEEN,
    FlagChange,
    StoreMode,
)
from mailserv.message import heads, store
from mailserv.message.parse import parse_message
from mailserv.syntax.sequences import merge


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message ready to store: parsed, serialised and hashed before any lock is taken."""

    raw: bytes
    digest: bytes
    info: bytes
    heads: bytes
    flags: frozenset[str]
    when: When
    sent_day: int | None
    subject: str
    from_: str
    to: str
    cc: str
    bcc: str
    header_text: str
    body_text: str
    keys: sortkeys.KeyRow

    @classmethod
    def prepare(cls, raw: bytes, flags: frozenset[str], internaldate: datetime | None) -> Incoming:
        info = parse_message(raw)
        header_text, body_text = fulltext.texts(raw, info)
        return cls(
            raw=raw,
            digest=hashlib.sha256(raw).digest(),
            info=store.dumps(info),
            heads=heads.of_info(info),
            flags=flags - {RECENT},
            when=When.of(internaldate or datetime.now(UTC)),
            sent_day=None if info.sent is None else info.sent.date().toordinal(),
            subject=info.subject.casefold(),
            from_=info.from_.casefold(),
            to=info.to.casefold(),
            cc=info.cc.casefold(),
            bcc=info.bcc.casefold(),
            header_text=header_text,
            body_text=body_text,
            keys=sortkeys.row_of(info),
        )


@dataclass(frozen=True, slots=True)
class Transfer:
    """What COPY or MOVE did, for COPYUID and the listeners of both mailboxes."""

    source_id: int
    target_id: int
    uidvalidity: int
    pairs: Sequence[tuple[int, int]]
    modseq: int
    removed: Sequence[int] = ()
    removed_modseq: int = 0


@dataclass(frozen=True, slots=True)
class _Box:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    unseen: int
    unseen_uids: str | None  # see the module ``unseen``


_BOX_COLUMNS = "uidvalidity, uidnext, highestmodseq, unseen, unseen_uids"


def _lock_sql(tx: Tx, flags_only: bool = False, columns: str = _BOX_COLUMNS) -> str:
    """The statement locking a mailbox row and reading ``columns``; ``flags_only``: the
    transaction changes flags and nothing else (see ``Dialect.lazy_flag_commit``)."""
    lazy = tx.dialect.lazy_flag_commit if flags_only else ""
    return (
        f"SELECT {columns}{lazy} FROM mailboxes WHERE id = ? AND selectable = 1"
        + tx.dialect.for_update
    )


def _lock(tx: Tx, box_id: int, flags_only: bool = False) -> _Box:
    row = tx.one(_lock_sql(tx, flags_only), (box_id,))
    if row is None:
        raise MailboxNotFound("the mailbox was deleted")
    return _Box(int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4])


LOG_KEEP = 20_000
"""Modseqs of a mailbox ``modseq_log`` covers: older entries are pruned (every
LOG_PRUNE_EVERY modseqs), and a CHANGEDSINCE older than that reads the mailbox's rows."""
LOG_PRUNE_EVERY = 1000
LOG_CHUNK = 200
"""UID ranges per INSERT of the log."""


def _log(tx: Tx, box_id: int, modseq: int, runs: Sequence[tuple[int, int]]) -> None:
    """Record in ``modseq_log`` that the mail rows in ``runs`` (UID ranges, disjoint) may
    have been written at ``modseq`` (see ``reads.logged_ranges``), pruning it now and then."""
    for start in range(0, len(runs), LOG_CHUNK):
        chunk = runs[start : start + LOG_CHUNK]
        tx.later(
            "INSERT INTO modseq_log (mailbox_id, modseq, low, high) VALUES "
            + ", ".join("(?, ?, ?, ?)" for _ in chunk),
            [value for low, high in chunk for value in (box_id, modseq, low, high)],
        )
    if modseq % LOG_PRUNE_EVERY == 0 and modseq > LOG_KEEP:
        floor = modseq - LOG_KEEP
        tx.later("DELETE FROM modseq_log WHERE mailbox_id = ? AND modseq <= ?", (box_id, floor))
        tx.later("UPDATE mailboxes SET log_from = ? WHERE id = ?", (floor, box_id))


# -- content ------------------------------------------------------------------------------


def _store_content(tx: Tx, message: Incoming) -> int:
    """The id of the message's content row, adding a reference (or the row) as needed."""
    row = tx.one(
        "INSERT INTO messages (digest, refs, size, sent_day, subject, from_addr,"
        " to_addr, cc_addr, bcc_addr) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (digest) DO UPDATE SET refs = messages.refs + 1 RETURNING id, refs",
        (
            message.digest,
            len(message.raw),
            message.sent_day,
            message.subject,
            message.from_,
            message.to,
            message.cc,
            message.bcc,
        ),
    )
    message_id, refs = int(row[0]), int(row[1])
    if refs == 1:
        tx.later(
            "INSERT INTO message_info (message_id, info, heads) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (message_id, message.info, message.heads),
        )
        tx.later(
            "INSERT INTO message_data (message_id, raw) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (message_id, message.raw),
        )
        fulltext.insert(tx, message_id, message.header_text, message.body_text)
        sortkeys.insert(tx, message_id, message.keys)
    return message_id


def _release(tx: Tx, message_ids: Sequence[int]) -> None:
    """Drop one reference per entry; content nobody uses any more goes."""
    counts = Counter(message_ids)
    tx.many(
        "UPDATE messages SET refs = refs - ? WHERE id = ?",
        [(n, message_id) for message_id, n in sorted(counts.items())],
    )
    tx.many(
        "DELETE FROM messages WHERE id = ? AND refs <= 0",
        [(message_id,) for message_id in sorted(counts)],
    )


# -- writing ------------------------------------------------------------------------------


def append(tx: Tx, box_id: int, message: Incoming, sender: str) -> tuple[int, int, int]:
    """(UIDVALIDITY, UID, modseq) of the stored message."""
    return append_all(tx, box_id, [message], sender)[0]


def append_all(
    tx: Tx, box_id: int, batch: Sequence[Incoming], sender: str
) -> list[tuple[int, int, int]]:
    """Each message of ``batch`` stored in turn (a UID and a modseq each), in the caller's
    one transaction: the mailbox row is locked and read once and written once, so a
    MULTIAPPEND or an import costs one round trip per message (its content row's id), not
    two.  PostgreSQL, one message: three round trips (BEGIN and the lock; the content row;
    the writes held back, the notices and COMMIT)."""
    box = _lock(tx, box_id)
    uid, modseq = box.uidnext, box.highestmodseq
    done: list[tuple[int, int, int]] = []
    fresh: list[tuple[int, int]] = []
    for message in batch:
        modseq += 1
        message_id = _store_content(tx, message)
        when = message.when
        tx.later(
            "INSERT INTO mail (mailbox_id, uid, message_id, modseq, flags, marks, internaldate,"
            " tz, internal_day, size, savedate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                box_id,
                uid,
                message_id,
                modseq,
                flags_text(message.flags),
                marks_of(message.flags),
                when.seconds,
                when.tz,
                when.day,
                len(message.raw),
                int(time.time()),
            ),
        )
        if SEEN not in message.flags:
            fresh.append((uid, uid))
        _log(tx, box_id, modseq, [(uid, uid)])
        tx.notify(Notice(sender, ADDED, box_id, modseq, str(uid)).encode())
        done.append((box.uidvalidity, uid, modseq))
        uid += 1
    kept = unseen.changed(box.unseen_uids, box.unseen + len(fresh), fresh)
    tx.later(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, messages = messages + ?,"
        " unseen = unseen + ?, size = size + ?, unseen_uids = ? WHERE id = ?",
        (uid, modseq, len(batch), len(fresh), sum(len(m.raw) for m in batch), kept, box_id),
    )
    return done


def store_flags(
    tx: Tx,
    box_id: int,
    uids: Sequence[int],
    mode: StoreMode,
    flags: frozenset[str],
    unchangedsince: int | None,
    sender: str,
) -> tuple[Sequence[FlagChange], list[int]]:
    """:func:`store_and_show`'s (changes, UIDs refused by UNCHANGEDSINCE)."""
    done = store_and_show(tx, box_id, uids, mode, flags, unchangedsince, sender)
    return done.changed, done.failed


@dataclass(frozen=True, slots=True)
class Stored:
    """What a STORE did (see ``StoreResult``)."""

    changed: Sequence[FlagChange]
    failed: list[int]
    unchanged: Sequence[FlagChange] | None = None
    """The messages the STORE left as they were, with their flags and modseqs, read in its
    transaction when it named at most :data:`SHOWN_MAX` messages (the engine answers the
    STORE's FETCH responses from them, without another transaction); None otherwise."""
    highestmodseq: int | None = None
    """The mailbox's HIGHESTMODSEQ after the STORE, as its transaction read it under the
    mailbox's lock (the usual STORE; None otherwise)."""


SHOWN_MAX = 64
"""Messages of a STORE up to which it reads its rows one by one (not grouped by flag set),
and gives back the flags and modseqs of those it left unchanged."""


def store_and_show(
    tx: Tx,
    box_id: int,
    uids: Sequence[int],
    mode: StoreMode,
    flags: frozenset[str],
    unchangedsince: int | None,
    sender: str,
) -> Stored:
    """STORE: one new modseq for all changes.

    The usual STORE (a few UID runs, no UNCHANGEDSINCE) reads the distinct old flag sets of
    its rows with their UIDs (a few strings, however many rows; a small STORE its rows, see
    :data:`SHOWN_MAX`) and writes one UPDATE per set that changes, without RETURNING
    (SQLite's costs more than the update itself).  PostgreSQL: two round trips (BEGIN, the
    lock and the read; the UPDATEs, the notices and COMMIT), the commit not waiting for its
    WAL flush with ``flag-durability=fast``."""
    wanted = sorted(set(uids))
    runs = _runs(wanted) if unchangedsince is None and wanted else None
    if runs is None:
        box = _lock(tx, box_id, flags_only=True)
        return Stored(*_store_each(tx, box, box_id, wanted, mode, flags, unchangedsince, sender))
    where = " OR ".join("uid BETWEEN ? AND ?" for _ in runs)
    bounds = [bound for run in runs for bound in run]
    if tx.dialect.is_postgres:
        # The lock and the read go in one round trip; the read is a statement of its own, so
        # it sees what the writers before the lock committed.  (SQLite: BEGIN IMMEDIATE
        # locked the database, and the read checks the row is there.)
        tx.later(_lock_sql(tx, flags_only=True, columns="id"), (box_id,))
    after = _seen_after(mode, flags)
    kept = "NULL" if after is None else "b.unseen_uids"  # read only when it may change
    small = len(wanted) <= SHOWN_MAX
    if small:  # the rows themselves (a few): the unchanged ones are given back
        rows = f"SELECT flags, uid AS members, modseq FROM mail WHERE mailbox_id = ? AND ({where})"
    else:
        rows = (
            f"SELECT flags, {tx.dialect.uid_list} AS members, 0 AS modseq FROM mail"
            f" WHERE mailbox_id = ? AND ({where}) GROUP BY flags"
        )
    read = tx.all(
        f"SELECT b.highestmodseq, b.unseen, {kept}, g.flags, g.members, g.modseq"
        f" FROM mailboxes b LEFT JOIN ({rows}) g ON 1 = 1 WHERE b.id = ? AND b.selectable = 1",
        (box_id, *bounds, box_id),
    )
    if not read:
        raise MailboxNotFound("the mailbox was deleted")
    box = _Box(0, 0, int(read[0][0]), int(read[0][1]), read[0][2])
    modseq = box.highestmodseq + 1
    row_modseqs: dict[int, int] = {}
    if small:
        members_of: dict[str, list[str]] = {}
        for row in read:
            if row[3] is not None:
                members_of.setdefault(row[3], []).append(str(row[4]))
                row_modseqs[int(row[4])] = int(row[5])
        sets = [(text, ",".join(members)) for text, members in members_of.items()]
    else:
        sets = [(row[3], row[4]) for row in read if row[3] is not None]
    if len(sets) > MAX_STORE_GROUPS:
        return Stored(*_store_each(tx, box, box_id, wanted, mode, flags, None, sender))
    groups: dict[frozenset[str], list[int]] = {}
    rewrite: list[tuple[str, str, list[int]]] = []  # (old flags text, new, its marks or [])
    unchanged: list[FlagChange] | None = [] if small else None
    delta = 0  # of the unseen count
    for text, members in sets:
        current = frozenset(text.split())
        new = mode.apply(current, flags)
        if new == current:
            if unchanged is not None:
                unchanged += [
                    FlagChange(uid, current, row_modseqs[uid])
                    for uid in map(int, members.split(","))
                ]
            continue
        changed = list(map(int, members.split(",")))
        delta += ((SEEN in current) - (SEEN in new)) * len(changed)
        # ``marks`` is written only when \Flagged or \Deleted changes (see rows.MARKS).
        marks = [marks_of(new)] if marks_of(new) != marks_of(current) else []
        rewrite.append((text, flags_text(new), marks))
        groups.setdefault(new, []).extend(changed)
    if unchanged is not None:
        unchanged.sort(key=lambda change: change.uid)
    if not groups:
        return Stored([], [], unchanged, box.highestmodseq)
    for old, new_text, marks in rewrite:
        update = "UPDATE mail SET flags = ?, modseq = ?" + ", marks = ?" * len(marks)
        update += f" WHERE mailbox_id = ? AND ({where})"
        if len(rewrite) == len(sets) == 1:  # every row of the runs changes alike
            tx.later(update, (new_text, modseq, *marks, box_id, *bounds))
        else:
            tx.later(update + " AND flags = ?", (new_text, modseq, *marks, box_id, *bounds, old))
    written: Sequence[tuple[int, int]] = runs
    if after is False and unseen.count(runs) != sum(m.count(",") + 1 for _, m in sets):
        # The runs have gaps (expunged UIDs): only the rows there become unseen.
        written = unseen.runs_of(sorted(uidlist.numbers(",".join(m for _, m in sets))))
    _count(tx, box, box_id, modseq, delta, after, written)
    _log(tx, box_id, modseq, runs)
    for group in groups.values():
        group.sort()
    _flag_notices(tx, box_id, modseq, groups, sender)
    return Stored(changes_of(groups, modseq), [], unchanged, modseq)


def _seen_after(mode: StoreMode, flags: frozenset[str]) -> bool | None:
    """Whether every message a STORE writes ends seen (True), unseen (False), or keeps its
    \\Seen as it was (None)."""
    if mode is StoreMode.REPLACE:
        return SEEN in flags
    return None if SEEN not in flags else mode is StoreMode.ADD


def _count(
    tx: Tx,
    box: _Box,
    box_id: int,
    modseq: int,
    delta: int,
    after: bool | None,
    written: Sequence[tuple[int, int]],
) -> None:
    """The mailbox row after a STORE: its modseq, its unseen count (``delta`` more) and, when
    the STORE set or cleared \\Seen (``after``) on the messages in ``written`` (UID runs,
    ascending), the kept unseen UIDs."""
    if after is None:
        tx.later(
            "UPDATE mailboxes SET highestmodseq = ?, unseen = unseen + ? WHERE id = ?",
            (modseq, delta, box_id),
        )
        return
    more, less = ((), written) if after else (written, ())
    tx.later(
        "UPDATE mailboxes SET highestmodseq = ?, unseen = unseen + ?, unseen_uids = ? WHERE id = ?",
        (modseq, delta, unseen.changed(box.unseen_uids, box.unseen + delta, more, less), box_id),
    )


MAX_STORE_RUNS = 200
"""UID runs a STORE is written for in SQL (one UPDATE per old flag set), not row by row."""
MAX_STORE_GROUPS = 16
"""Distinct old flag sets among them, beyond which the rows are rewritten one by one."""


def _runs(wanted: Sequence[int]) -> list[tuple[int, int]] | None:
    """``wanted`` (ascending, distinct) as inclusive runs; None for more than MAX_STORE_RUNS."""
    low, high = wanted[0], wanted[-1]
    if high - low + 1 == len(wanted):
        return [(low, high)]
    runs: list[tuple[int, int]] = []
    start = previous = low
    for uid in wanted[1:]:
        if uid != previous + 1:
            runs.append((start, previous))
            if len(runs) >= MAX_STORE_RUNS:
                return None
            start = uid
        previous = uid
    runs.append((start, previous))
    return runs


def _store_each(
    tx: Tx,
    box: _Box,
    box_id: int,
    wanted: list[int],
    mode: StoreMode,
    flags: frozenset[str],
    unchangedsince: int | None,
    sender: str,
) -> tuple[Sequence[FlagChange], list[int]]:
    """STORE row by row (UNCHANGEDSINCE, scattered UIDs, many distinct flag sets)."""
    modseq = box.highestmodseq + 1
    changed: list[FlagChange] = []
    failed: list[int] = []
    rewrite: dict[str, str] = {}  # old flags text -> new
    delta = 0  # of the unseen count
    rows, whole = _store_rows(tx, box_id, wanted)
    for uid, text, row_modseq in rows:
        if unchangedsince is not None and row_modseq > unchangedsince:
            failed.append(uid)
            continue
        current = frozenset(text.split())
        new = mode.apply(current, flags)
        if new == current:
            continue
        delta += (SEEN in current) - (SEEN in new)
        rewrite[text] = flags_text(new)
        changed.append(FlagChange(uid, new, modseq))
    if not changed:
        return changed, failed
    if whole and not failed and len(rewrite) <= MAX_REWRITES:
        # Every message of the UID range changes the same way per old flag set (1:* +FLAGS,
        # say): one UPDATE per distinct old set instead of one per message.
        low, high = rows[0][0], rows[-1][0]
        tx.many(
            "UPDATE mail SET flags = ?, modseq = ?, marks = ? WHERE mailbox_id = ?"
            " AND uid BETWEEN ? AND ? AND flags = ?",
            [
                (new, modseq, marks_of(new.split()), box_id, low, high, old)
                for old, new in rewrite.items()
            ],
        )
    else:
        tx.many(
            "UPDATE mail SET flags = ?, modseq = ?, marks = ? WHERE mailbox_id = ? AND uid = ?",
            [(flags_text(c.flags), modseq, marks_of(c.flags), box_id, c.uid) for c in changed],
        )
    refused = set(failed)
    written = unseen.runs_of(uid for uid, _, _ in rows if uid not in refused)
    _count(tx, box, box_id, modseq, delta, _seen_after(mode, flags), written)
    _log(tx, box_id, modseq, merge((c.uid, c.uid) for c in changed))
    groups: dict[frozenset[str], list[int]] = {}
    for change in changed:
        groups.setdefault(change.flags, []).append(change.uid)
    _flag_notices(tx, box_id, modseq, groups, sender)
    return changed, failed


MAX_REWRITES = 64


def _store_rows(tx: Tx, box_id: int, wanted: list[int]) -> tuple[list[Any], bool]:
    """(uid, flags, modseq) rows of ``wanted`` (ascending, distinct), and whether they are
    every row of their range."""
    if not wanted:
        return [], False
    low, high = wanted[0], wanted[-1]
    select = "SELECT uid, flags, modseq FROM mail WHERE mailbox_id = ?"
    if high - low >= 4 * len(wanted) + 64:
        return where_uids(tx, select, (box_id,), wanted), False
    every = tx.all(f"{select} AND uid BETWEEN ? AND ? ORDER BY uid", (box_id, low, high))
    keep = set(wanted)
    rows = [row for row in every if row[0] in keep]
    return rows, len(rows) == len(every)


MAX_FLAG_GROUPS = 16
MAX_FLAGS_TEXT = 2000


def _flag_notices(
    tx: Tx, box_id: int, modseq: int, groups: dict[frozenset[str], list[int]], sender: str
) -> None:
    """The new flags travel in the notices, per flag set (``groups``: the UIDs, ascending,
    that now have it; a STORE usually makes few distinct sets); too many sets, and the other
    frontends read the rows at ``modseq``."""
    if not tx.dialect.is_postgres:
        return  # no other frontend to tell
    texts = {flags: "".join(" " + flag for flag in sorted(flags)) for flags in groups}
    if len(groups) > MAX_FLAG_GROUPS or any(len(t) > MAX_FLAGS_TEXT for t in texts.values()):
        tx.notify(Notice(sender, FLAGS, box_id, modseq).encode())
        return
    for flags, uids in groups.items():
        for payload in uid_notices(sender, FLAGS, box_id, modseq, uids, texts[flags]):
            tx.notify(payload)


def expunge(tx: Tx, box_id: int, uids: Sequence[int] | None, sender: str) -> tuple[list[int], int]:
    """Remove messages flagged \\Deleted (among ``uids`` when given): (UIDs, modseq)."""
    _lock(tx, box_id)
    select = "SELECT uid, message_id, size, flags FROM mail WHERE mailbox_id = ?"
    select += " AND " + mark_test(DELETED, present=True)
    params = (box_id,)
    if uids is None:
        rows = tx.all(select + " ORDER BY uid", params)
    else:
        rows = where_uids(tx, select, params, uids)
    return _remove(tx, box_id, rows, sender)


def _remove(tx: Tx, box_id: int, rows: Sequence[Any], sender: str) -> tuple[list[int], int]:
    """Take (uid, message_id, size, flags) rows out under one new modseq, logging them."""
    if not rows:
        return [], 0
    box = tx.one("SELECT highestmodseq, unseen, unseen_uids FROM mailboxes WHERE id = ?", (box_id,))
    modseq = int(box[0]) + 1
    uids = [int(row[0]) for row in rows]
    tx.many("DELETE FROM mail WHERE mailbox_id = ? AND uid = ?", [(box_id, uid) for uid in uids])
    tx.many(
        "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
        [(box_id, uid, modseq) for uid in uids],
    )
    _release(tx, [int(row[1]) for row in rows])
    size = sum(int(row[2]) for row in rows)
    gone = unseen.runs_of(int(row[0]) for row in rows if flag_probe(SEEN) not in row[3])
    lost = unseen.count(gone)
    kept = unseen.changed(box[2], int(box[1]) - lost, (), gone)
    tx.execute(
        "UPDATE mailboxes SET highestmodseq = ?, messages = messages - ?, unseen = unseen - ?,"
        " size = size - ?, unseen_uids = ? WHERE id = ?",
        (modseq, len(uids), lost, size, kept, box_id),
    )
    for payload in uid_notices(sender, EXPUNGED, box_id, modseq, uids):
        tx.notify(payload)
    return uids, modseq


def remove_all(tx: Tx, box_id: int, sender: str) -> list[int]:
    """Empty a mailbox that is about to be deleted (no expunge log: it goes with the row)."""
    _lock(tx, box_id)
    rows = tx.all("SELECT uid, message_id FROM mail WHERE mailbox_id = ? ORDER BY uid", (box_id,))
    if not rows:
        return []
    tx.execute("DELETE FROM mail WHERE mailbox_id = ?", (box_id,))
    _release(tx, [int(row[1]) for row in rows])
    uids = [int(row[0]) for row in rows]
    for payload in uid_notices(sender, EXPUNGED, box_id, 0, uids):
        tx.notify(payload)
    return uids


def transfer(
    tx: Tx,
    source_id: int,
    uids: Sequence[int],
    target_id: int,
    move: bool,
    sender: str,
) -> Transfer:
    """COPY (or MOVE) ``uids`` to ``target_id``, keeping flags and internal dates (the
    save date is now)."""
    locked = {box_id: _lock(tx, box_id) for box_id in sorted({source_id, target_id})}
    target = locked[target_id]  # both locked in id order above: no deadlock
    rows = where_uids(
        tx,
        "SELECT uid, message_id, flags, internaldate, tz, internal_day, size, marks FROM mail"
        " WHERE mailbox_id = ?",
        (source_id,),
        uids,
    )
    if not rows:
        return Transfer(source_id, target_id, target.uidvalidity, [], target.highestmodseq)
    modseq = target.highestmodseq + 1
    first = target.uidnext
    saved = int(time.time())
    tx.many(
        "INSERT INTO mail (mailbox_id, uid, message_id, modseq, flags, internaldate, tz,"
        " internal_day, size, marks, savedate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(target_id, first + i, *row[1:2], modseq, *row[2:], saved) for i, row in enumerate(rows)],
    )
    counts = Counter(int(row[1]) for row in rows)
    tx.many(
        "UPDATE messages SET refs = refs + ? WHERE id = ?",
        [(n, message_id) for message_id, n in sorted(counts.items())],
    )
    fresh = unseen.runs_of(
        first + i for i, row in enumerate(rows) if flag_probe(SEEN) not in row[2]
    )
    added = unseen.count(fresh)
    tx.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, messages = messages + ?,"
        " unseen = unseen + ?, size = size + ?, unseen_uids = ? WHERE id = ?",
        (
            first + len(rows),
            modseq,
            len(rows),
            added,
            sum(int(row[6]) for row in rows),
            unseen.changed(target.unseen_uids, target.unseen + added, fresh),
            target_id,
        ),
    )
    _log(tx, target_id, modseq, [(first, first + len(rows) - 1)])
    pairs = [(int(row[0]), first + i) for i, row in enumerate(rows)]
    for payload in uid_notices(sender, ADDED, target_id, modseq, [new for _, new in pairs]):
        tx.notify(payload)
    removed: list[int] = []
    removed_modseq = 0
    if move:
        moved = [(row[0], row[1], row[6], row[2]) for row in rows]
        removed, removed_modseq = _remove(tx, source_id, moved, sender)
    return Transfer(
        source_id, target_id, target.uidvalidity, pairs, modseq, removed, removed_modseq
    )


def unclaimed(tx: Tx, box_id: int) -> bool:
    """Whether some UID is above the mailbox's recent mark (a read: no lock, no write)."""
    row = tx.one("SELECT recent_mark, uidnext FROM mailboxes WHERE id = ?", (box_id,))
    if row is None:
        raise MailboxNotFound("the mailbox was deleted")
    return int(row[0]) < int(row[1]) - 1


def claim_recent(tx: Tx, box_id: int) -> list[int]:
    """UIDs above the mailbox's recent mark, which moves past them (for one session only)."""
    row = tx.one(
        "SELECT recent_mark, uidnext FROM mailboxes WHERE id = ?" + tx.dialect.for_update,
        (box_id,),
    )
    if row is None:
        raise MailboxNotFound("the mailbox was deleted")
    mark, uidnext = int(row[0]), int(row[1])
    if mark >= uidnext - 1:
        return []
    uids = [
        int(uid)
        for (uid,) in tx.all(
            "SELECT uid FROM mail WHERE mailbox_id = ? AND uid > ? ORDER BY uid", (box_id, mark)
        )
    ]
    tx.execute("UPDATE mailboxes SET recent_mark = ? WHERE id = ?", (uidnext - 1, box_id))
    return uids
