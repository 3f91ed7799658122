"""The texts of messages gone leave the maildir index's trigram and word indexes later.

An EXPUNGE (or MOVE) deletes a message's rows at once but its texts only join
``forgetting``; a background loop takes them out of the indexes a batch at a time.  Until
then every SEARCH of TEXT and BODY leaves them out: the answers equal the scan's while the
deletes are owed (the loop held back: a clock that does not turn), after a restart that
left them owed, and in another process; once they are done the FTS5 indexes are intact.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_maildir_backend import Store, resolve
from test_maildir_search_index import NEEDLES, _scan, realistic
from twisted.internet.task import Clock

from mailserv.backends.maildir import texts
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.interfaces import StoreMode
from mailserv.search import Contains, Not, SearchProgram, StringField

HERE = Path(__file__).parent
MORE_NEEDLES = ["quarterly", "migration", "zebra secret", "finance", "lunch", "review"]


def _start(store: Store) -> Clock:
    clock = Clock()
    store.start(reactor=clock)
    return clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path, watch="poll", **{"poll-interval": "3600"})
    yield made
    made.stop()


def _owed(store: Store) -> int:
    db = sqlite3.connect(store.root() / INDEX)
    try:
        return int(db.execute("SELECT count(*) FROM forgetting").fetchone()[0])
    finally:
        db.close()


def _programs() -> list[SearchProgram]:
    needles = [n for n in NEEDLES + MORE_NEEDLES if n]
    found = [
        SearchProgram(Contains(field, needle))
        for field in (StringField.TEXT, StringField.BODY)
        for needle in needles
    ]
    return found + [SearchProgram(Not(Contains(StringField.TEXT, n))) for n in MORE_NEEDLES]


def _check(box: Any, span: list[int]) -> int:
    """The index answers as the scan of the messages still here; how many it answered
    with a match."""
    live = list(resolve(box.uids()))
    matched = 0
    for program in _programs():
        expected = _scan(box, program, live)
        assert resolve(box.search(program, live)) == expected, program.key
        got = box.disk.search(program, span, frozenset())
        assert got == expected, program.key
        matched += bool(expected)
    return matched


def _fill(store: Store, count: int) -> tuple[Any, list[int]]:
    rng = random.Random(7)
    box = store.open()
    for n in range(count):
        resolve(box.append(realistic(rng, n), frozenset(), None, None))
    while box.disk.flush_texts(1000):  # every text in the trigram and word indexes
        pass
    uids = list(resolve(box.uids()))
    return box, uids


def _integrity(store: Store) -> None:
    db = sqlite3.connect(store.root() / INDEX)
    try:
        for table in ("fulltext", "words"):  # raises if an index and its texts disagree
            db.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
        left = db.execute(
            "SELECT count(*) FROM texts WHERE uid NOT IN (SELECT uid FROM message)"
        ).fetchone()[0]
        assert left == 0
    finally:
        db.close()


def _expunge(box: Any, uids: list[int]) -> None:
    resolve(box.store(uids, StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(uids, None))


def _indexed(store: Store, uids: list[int]) -> int:
    """How many of ``uids`` have their texts in the trigram index (others are kept as
    bytes in ``search``, or still pending)."""
    db = sqlite3.connect(store.root() / INDEX)
    try:
        return sum(
            db.execute("SELECT count(*) FROM texts WHERE uid = ?", (uid,)).fetchone()[0]
            for uid in uids
        )
    finally:
        db.close()


def _forget_all(clock: Clock, store: Store) -> None:
    for _ in range(1000):
        if not _owed(store):
            return
        clock.advance(1)
    raise AssertionError("texts still owed")


def test_answers_leave_out_owed_texts_until_they_are_forgotten(store: Store) -> None:
    clock = _start(store)
    box, uids = _fill(store, 60)
    span = list(range(uids[0], uids[-1] + 1))
    gone = uids[10:40]
    indexed = _indexed(store, gone)
    _expunge(box, gone)
    assert _owed(store) == indexed > 20  # the reactor has not turned: nothing forgotten yet
    assert _check(box, span) > 20
    _forget_all(clock, store)
    assert _check(box, span) > 20
    _integrity(store)


def test_a_restart_goes_on_with_owed_texts(store: Store) -> None:
    clock = _start(store)
    box, uids = _fill(store, 60)
    span = list(range(uids[0], uids[-1] + 1))
    _expunge(box, uids[5:50:2])
    owed = _owed(store)
    assert owed > 0
    store.stop()
    clock = _start(store)
    box = store.open()
    assert _owed(store) == owed
    assert _check(box, span) > 20
    _forget_all(clock, store)  # the load started the loop again
    assert _check(box, span) > 20
    _integrity(store)


def test_a_move_of_many_leaves_its_texts_owed_in_batches(store: Store) -> None:
    clock = _start(store)
    box, uids = _fill(store, 3 * texts.FORGET_BATCH)
    resolve(store.account().create("Dest"))
    moved = uids[: 2 * texts.FORGET_BATCH + 30]
    indexed = _indexed(store, moved)
    assert indexed > 2 * texts.FORGET_BATCH
    resolve(box.move(moved, "Dest", None))
    assert _owed(store) == indexed
    clock.advance(texts.FORGET_DELAY)  # the first batch
    assert _owed(store) == indexed - texts.FORGET_BATCH
    _forget_all(clock, store)
    dest = store.open("Dest")
    assert _check(dest, list(resolve(dest.uids()))) > 20
    _integrity(store)


_OTHER = """
import json, sys
sys.path[:0] = [{here!r}, {root!r}]
from pathlib import Path
from twisted.internet.task import Clock
from test_maildir_backend import Store
from test_maildir_forget import _programs
store = Store(Path({data!r}), watch="poll", **{{"poll-interval": "3600"}})
store.start(reactor=Clock())
box = store.open()
span = list(range({low}, {high} + 1))
print(json.dumps([box.disk.search(p, span, frozenset()) for p in _programs()]))
store.stop()
"""


def test_another_process_leaves_out_owed_texts(store: Store) -> None:
    _start(store)
    box, uids = _fill(store, 60)
    span = list(range(uids[0], uids[-1] + 1))
    _expunge(box, uids[20:55])
    assert _owed(store) > 0
    live = list(resolve(box.uids()))
    expected = [_scan(box, program, live) for program in _programs()]
    script = _OTHER.format(
        here=str(HERE), root=str(HERE.parent), data=str(store.data_dir), low=span[0], high=span[-1]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=HERE
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == expected
    assert _owed(store) > 0  # its clock did not turn either
