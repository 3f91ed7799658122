"""A big mailbox's first load: the snapshot of its index rows, and the files checked anyway.

The snapshot (``mailserv.backends.maildir.snapshot``) is written when a mailbox is closed
and read at the next load instead of the index's rows, only while those rows are exactly
what it copies; the directories are compared with it as with the rows."""

from __future__ import annotations

import os
import sqlite3
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_maildir_backend import Store, message, resolve

from mailserv.backends.maildir import disk, snapshot
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.interfaces import StoreMode


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(disk, "SNAPSHOT_MIN", 1)  # every mailbox keeps one
    made = Store(tmp_path)
    made.start()
    yield made
    made.stop()


def _fill(box: Any, count: int) -> None:
    for n in range(count):
        flags = frozenset(f for i, f in enumerate(["\\Seen", "\\Flagged", "$Work"]) if n % (i + 2))
        zone = timezone(timedelta(hours=(n % 7) * 4 - 11))
        when = datetime(2021, 3, 1, tzinfo=UTC) + timedelta(hours=7 * n)
        resolve(box.append(message(n), flags, when.astimezone(zone), None))


def _seen(box: Any) -> tuple[Any, list[tuple[int, frozenset[str], datetime, int, int]]]:
    uids = list(resolve(box.uids()))
    metas = resolve(box.fetch(uids))
    return resolve(box.status()), [
        (m.uid, m.flags, m.internaldate, m.size, m.modseq) for m in metas
    ]


def _db(store: Store) -> sqlite3.Connection:
    return sqlite3.connect(store.root() / INDEX, isolation_level=None)


def _tamper(db: sqlite3.Connection) -> None:
    """Add 1000 to every modseq the snapshot holds (the files cannot tell them)."""
    for part, packed in db.execute("SELECT part, modseq FROM snapshot").fetchall():
        column = array("q")
        column.frombytes(packed)
        column = array("q", [modseq + 1000 for modseq in column])
        db.execute("UPDATE snapshot SET modseq = ? WHERE part = ?", (column.tobytes(), part))


def test_a_restart_loads_the_snapshot_and_the_same_state(store: Store) -> None:
    box = store.open()
    _fill(box, 30)
    uids = list(resolve(box.uids()))
    resolve(box.store(uids[::4], StoreMode.REMOVE, frozenset({"\\Seen"}), None))
    resolve(box.store(uids[::5], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    before = _seen(box)
    store.restart()
    with _db(store) as db:
        assert db.execute("SELECT count(*) FROM snapshot").fetchone()[0] == 1
        _tamper(db)  # then it shows: the load reads the copy, not the rows
    box = store.open()
    status, metas = _seen(box)
    assert status == before[0]
    assert [m[:4] for m in metas] == [m[:4] for m in before[1]]
    assert [m[4] for m in metas] == [m[4] + 1000 for m in before[1]]


def test_the_snapshot_is_ignored_once_the_rows_changed(store: Store) -> None:
    """Another process changed the index meanwhile (a worker): its HIGHESTMODSEQ moved."""
    box = store.open()
    _fill(box, 12)
    before = _seen(box)
    store.stop()
    with _db(store) as db:
        _tamper(db)  # would show if it were read
        db.execute("UPDATE flag SET flags = '', modseq = 99 WHERE uid = 3")
        db.execute("UPDATE meta SET value = '99' WHERE key = 'highestmodseq'")
    store.start()
    box = store.open()
    _, metas = _seen(box)
    # The rows were read, not the (tampered) copy; the file's flags win over the row's.
    assert [m[:4] for m in metas] == [m[:4] for m in before[1]]
    assert [m[4] for m in metas if m[0] != 3] == [m[4] for m in before[1] if m[0] != 3]
    assert [m[4] for m in metas if m[0] == 3] == [100]


def test_files_changed_while_down_are_seen_with_the_snapshot(store: Store) -> None:
    box = store.open()
    _fill(box, 10)
    before = {m[0]: m[1] for m in _seen(box)[1]}
    store.stop()
    with _db(store) as db:
        _tamper(db)  # shows in the messages no file change touched: the copy was read
    cur = store.root() / "cur"
    names = sorted(os.listdir(cur))
    os.rename(cur / names[0], cur / (names[0].split(":2,")[0] + ":2,FRS"))  # flags
    os.unlink(cur / names[1])  # expunged by another program
    (store.root() / "new" / "1700000000.M1P1.other").write_bytes(message(99))  # delivered
    store.start()
    box = store.open()
    metas = _seen(box)[1]
    after = {m[0]: m[1] for m in metas}
    assert sum(m[4] > 1000 for m in metas) == len(metas) - 2  # not the changed nor the new
    assert len(after) == len(before)  # one gone, one new
    assert max(after) > max(before)
    changed = [uid for uid in before if uid in after and after[uid] != before[uid]]
    assert len(changed) == 1
    assert after[changed[0]] >= {"\\Flagged", "\\Answered", "\\Seen"}


def _to_format_1(db: sqlite3.Connection) -> None:
    """The index as mailserv wrote it before ``flag`` (format 1: flags and modseq in
    ``message``, the narrow index over them)."""
    db.execute("ALTER TABLE message ADD COLUMN flags TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE message ADD COLUMN modseq INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE message SET flags = (SELECT f.flags FROM flag f WHERE f.uid = message.uid),"
        " modseq = (SELECT f.modseq FROM flag f WHERE f.uid = message.uid)"
    )
    db.execute("DROP TABLE flag")
    db.execute("DROP INDEX message_meta")
    db.execute("CREATE INDEX message_meta ON message (uid, flags, modseq, size, date, tz)")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'format'")


def test_an_index_of_format_1_is_converted_not_rebuilt(store: Store) -> None:
    box = store.open()
    _fill(box, 12)
    resolve(box.store([2, 5], StoreMode.ADD, frozenset({"\\Flagged"}), None))
    before = _seen(box)
    store.stop()
    with _db(store) as db:
        _to_format_1(db)
        snapshot.drop(db)  # the rows are read, not the copy
    store.start()
    box = store.open()
    assert _seen(box)[1] == before[1]  # flags and modseqs kept (a rebuild renumbers them)
    with _db(store) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(message)")}
        assert "flags" not in columns and "modseq" not in columns
        assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == ("2",)
        assert db.execute("SELECT count(*) FROM flag").fetchone() == (12,)
    late = frozenset({"$Late"})
    changed = resolve(box.store([7], StoreMode.REPLACE, late, None)).changed
    assert [(c.uid, c.flags) for c in changed] == [(7, late)]
