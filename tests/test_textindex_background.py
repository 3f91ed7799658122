"""The memory backend's word index (``kit.textindex``) indexes new messages in the background
a slice at a time, waiting between slices (other sessions' commands run at full speed
meanwhile), and a SEARCH that comes first indexes what still waits in its own slices.
Driven by a ``Clock``: what runs at each step of time is seen, not timed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mailserv.backends.kit import textindex
from mailserv.backends.kit.textindex import TextIndex
from mailserv.message.parse import parse_message
from mailserv.search import Contains, StringField
from mailserv.slicing import TimeSlices

pytestmark = pytest.mark.one_backend  # no server: the index alone

T = TypeVar("T")
COUNT = 400


def _message(n: int) -> bytes:
    word = "zebra" if n % 7 == 0 else "horse"
    return (
        f"From: a{n}@example.org\r\nSubject: note {n}\r\n\r\n"
        f"Line one of message {n}, about the {word} seen.\r\n" + "Filler text here.\r\n" * 40
    ).encode()


def _filled(clock: Clock) -> TextIndex:
    index = TextIndex(clock)
    for n in range(1, COUNT + 1):
        raw = _message(n)
        index.added(n, raw, parse_message(raw))
    return index


def _waiting(index: TextIndex) -> int:
    return index.waiting


def _now(clock: Clock, make: Callable[[], Deferred[T]]) -> T:
    """What ``make`` gives once every call due now ran, the clock's time unmoved."""
    results: list[T] = []
    make().addCallback(results.append)
    for _ in range(100000):
        if results:
            return results[0]
        clock.advance(0)
    raise AssertionError("never done without time passing")


def _zebras() -> set[int]:
    return {n for n in range(1, COUNT + 1) if n % 7 == 0}


def test_background_indexing_waits_between_its_slices() -> None:
    """Once the mailbox is quiet, one slice is indexed, then the index waits (a delayed
    call, not one due at once): the reactor runs other work meanwhile."""
    clock = Clock()
    index = _filled(clock)
    clock.advance(textindex.QUIET)
    assert 0 < len(index._pending) < COUNT  # one slice decoded, not all of them
    calls = clock.getDelayedCalls()
    assert calls and all(call.getTime() > clock.seconds() for call in calls)
    for _ in range(100000):  # with time passing, it goes to the end by itself
        if not clock.getDelayedCalls():
            break
        clock.advance(textindex.LONGEST_PAUSE)
    assert _waiting(index) == 0
    node = Contains(StringField.BODY, "zebra")
    found = _now(clock, lambda: Deferred.fromCoroutine(
        index.matching(node, range(1, COUNT + 1), TimeSlices(clock))))  # fmt: skip
    assert found == _zebras()


def test_search_does_not_wait_for_the_background_pauses() -> None:
    """A SEARCH TEXT that comes while the background waits indexes the rest itself, in
    its slices, with no time passing: the background's pauses are not its own."""
    clock = Clock()
    index = _filled(clock)
    clock.advance(textindex.QUIET)
    assert _waiting(index)
    node = Contains(StringField.TEXT, "ZEBRA seen")
    found = _now(clock, lambda: Deferred.fromCoroutine(
        index.matching(node, range(1, COUNT + 1), TimeSlices(clock))))  # fmt: skip
    assert found == _zebras()
    assert _waiting(index) == 0
    for _ in range(1000):  # the background loop wakes, merges what the writes left, ends
        if not clock.getDelayedCalls():
            break
        clock.advance(textindex.LONGEST_PAUSE)
    assert not clock.getDelayedCalls()
    assert not index._merging


def test_stopped_index_leaves_the_reactor_and_still_answers() -> None:
    """Once stopped (its mailbox deleted, its backend stopped inside an application that
    goes on), nothing of the index waits on the clock: not the loop in a pause, not the
    quiet timer of messages added or removed later.  A query still finds every text."""
    clock = Clock()
    index = _filled(clock)
    clock.advance(textindex.QUIET)
    assert clock.getDelayedCalls()  # the loop pauses between its slices
    index.stop()
    clock.advance(textindex.LONGEST_PAUSE)  # the pause ends, and the loop with it
    assert not clock.getDelayedCalls()
    assert _waiting(index)  # it stopped before the end
    raw = _message(COUNT + 6)
    index.added(COUNT + 6, raw, parse_message(raw))
    index.removed([7])
    assert not clock.getDelayedCalls()
    node = Contains(StringField.BODY, "zebra")
    found = _now(clock, lambda: Deferred.fromCoroutine(
        index.matching(node, range(1, COUNT + 7), TimeSlices(clock))))  # fmt: skip
    assert found == _zebras() - {7} | {COUNT + 6}
    assert not clock.getDelayedCalls()


def _state(index: TextIndex) -> tuple[int, int]:
    """Messages waiting to be decoded, texts written in the open transaction."""
    return len(index._pending), len(index._written)


def _burn(seconds: float) -> None:
    """Work of the reactor thread for others (commands of other sessions)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_background_indexing_waits_longer_while_others_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the reactor thread worked for others while the background waited, it waits
    again (twice as long) before its next slice: commands that keep coming run on.

    The first slice decodes for its full ``BACKGROUND_SLICE`` (no write batch ends it
    early): the quiet wait is then ms long, so the CPU this test and the ``Clock`` spend
    around it stays under ``BUSY_SHARE`` of it.  A batch ended early makes a wait of a few
    hundred microseconds, and that overhead alone counts as others' work."""
    monkeypatch.setattr(textindex, "WRITE_BATCH", COUNT)
    clock = Clock()
    index = _filled(clock)
    clock.advance(textindex.QUIET)
    left = _state(index)
    (call,) = clock.getDelayedCalls()
    wait = call.getTime() - clock.seconds()
    _burn(wait)  # all of the wait, for other work
    clock.advance(wait)
    assert _state(index) == left  # no slice: it waits again
    (call,) = clock.getDelayedCalls()
    assert call.getTime() - clock.seconds() == pytest.approx(min(2 * wait, 0.2))
    clock.advance(call.getTime() - clock.seconds())  # nobody else worked meanwhile
    assert _state(index) != left


def test_segments_are_merged_in_steps_of_their_own() -> None:
    """FTS5 merges nothing by itself while it writes (a merge of big segments inside a
    write would hold the reactor tens of ms): the background merges in steps between
    writes, each a slice of its own, and the answers stay those of the scan."""
    clock = Clock()
    index = _filled(clock)
    steps: list[int] = []
    step = index._merge_step

    def counted(length: float) -> None:
        steps.append(len(index._written))
        step(length)

    index._merge_step = counted  # type: ignore[method-assign]
    clock.advance(textindex.QUIET)
    for _ in range(100000):
        if not clock.getDelayedCalls():
            break
        clock.advance(textindex.LONGEST_PAUSE)
    assert _waiting(index) == 0 and not index._merging
    assert steps and not any(steps)  # never inside a write transaction left open
    db = index._db
    assert db is not None
    for table in textindex.MERGED:
        (automerge,) = db.execute(f"SELECT v FROM {table}_config WHERE k = 'automerge'").fetchone()
        assert automerge == 0
    node = Contains(StringField.BODY, "zebra")
    found = _now(clock, lambda: Deferred.fromCoroutine(
        index.matching(node, range(1, COUNT + 1), TimeSlices(clock))))  # fmt: skip
    assert found == _zebras()


def test_a_write_of_texts_is_cut_into_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The texts of one write transaction (one FTS5 segment of ``WRITE_BATCH`` texts) go
    in over several steps, each of a slice, with the reactor's other calls run between
    them (before, one step wrote the whole batch: 4-20 ms at 100k messages); a SEARCH that
    comes while a write is open ends it and finds every text."""
    monkeypatch.setattr(textindex, "BACKGROUND_SLICE", 0.0)  # a step: one message
    monkeypatch.setattr(textindex, "STEP", 0.0, raising=False)  # a query's step too
    clock = Clock()
    index = _filled(clock)
    rows: list[int] = []
    step = index._index_some

    def counted(length: float) -> None:
        before = _rows(index)
        step(length)
        rows.append(_rows(index) - before)

    index._index_some = counted  # type: ignore[method-assign]
    clock.advance(textindex.QUIET)
    for _ in range(3 * textindex.WRITE_BATCH):  # steps of the first write, a turn each
        if _rows(index) > textindex.WRITE_BATCH // 2:
            break
        clock.advance(textindex.LONGEST_PAUSE)
    assert max(rows) == 1 and _rows(index) < textindex.WRITE_BATCH
    db = index._db
    assert db is not None and db.in_transaction  # open across the turns
    commits: list[str] = []
    db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    node = Contains(StringField.TEXT, "ZEBRA seen")
    found = _now(clock, lambda: Deferred.fromCoroutine(
        index.matching(node, range(1, COUNT + 1), TimeSlices(clock))))  # fmt: skip
    assert found == _zebras() and not index._pending and not db.in_transaction
    assert max(rows) == 1  # the query's steps too
    assert 0 < len(commits) <= COUNT // textindex.WRITE_BATCH + 1  # still in batches


def _rows(index: TextIndex) -> int:
    if index._db is None:
        return 0
    (count,) = index._db.execute("SELECT count(*) FROM texts").fetchone()
    return int(count)


def test_texts_of_messages_gone_leave_later_a_few_at_a_time() -> None:
    """A removal of many (a MOVE of 20k: 10-30 ms a thousand when their texts were moved
    out of ``texts`` at once) only notes the UIDs: no query finds them from then on, and
    their texts leave ``texts`` and the word index later, a few at a time."""
    clock = Clock()
    index = _filled(clock)
    node = Contains(StringField.BODY, "zebra")

    def search() -> set[int]:
        return _now(clock, lambda: Deferred.fromCoroutine(
            index.matching(node, range(1, COUNT + 1), TimeSlices(clock))))  # fmt: skip

    assert search() == _zebras()
    gone = range(1, COUNT - 50)
    index.removed(gone)
    assert _rows(index) == COUNT  # nothing done yet
    assert search() == {n for n in _zebras() if n not in gone}
    clock.advance(textindex.QUIET)
    assert COUNT - len(gone) < _rows(index) < COUNT  # a few at a time
    for _ in range(100000):
        if not clock.getDelayedCalls():
            break
        clock.advance(textindex.LONGEST_PAUSE)
    assert _rows(index) == COUNT - len(gone) and not index._merging
    db = index._db
    assert db is not None
    (left,) = db.execute("SELECT count(*) FROM words WHERE words MATCH 'zebra'").fetchone()
    assert left == len([n for n in _zebras() if n not in gone])
    assert search() == {n for n in _zebras() if n not in gone}
