"""The selected-mailbox view is an IMailboxListener; it holds back EXPUNGE as RFC 3501 says."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from mailserv.backends.memory import factory as memory
from mailserv.imap.view import SelectedView, as_columns, flag_fetch_lines
from mailserv.interfaces import FlagChange, FlagChangeColumns, IMailboxListener, StoreMode
from mailserv.slicing import TimeSlices, Turns
from mailserv.syntax import encode
from mailserv.syntax.sequences import parse_sequence_set, uids_in
from mailserv.testing import resolve


class Session:
    """The things a view uses of its session."""

    def __init__(self) -> None:
        self.idling = False
        self.enabled: set[str] = set()  # no ENABLE: EXPUNGE, and FETCH without MODSEQ
        self.out: list[bytes] = []
        clock = Clock()  # turned by run() when a slice is used up
        self.services = SimpleNamespace(clock=clock, turns=Turns(clock))

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def disconnect(self, text: str) -> None:
        self.out.append(b"* BYE " + text.encode() + b"\r\n")


def run(coroutine: Any, clock: Clock | None = None) -> None:
    """Run ``coroutine`` to its end: where its slices pause (a loaded machine can use up
    4 ms), ``clock`` is turned until it is done."""
    done = Deferred.fromCoroutine(coroutine)
    while clock is not None and not done.called:
        clock.advance(0)
    assert done.called


def flush(view: SelectedView, expunges: bool) -> None:
    run(view.flush(expunges=expunges), view.session.services.clock)


def test_view_provides_listener_and_defers_expunges() -> None:
    account = resolve(memory.build({}, ".", reactor).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(3):
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None))
    session, other = Session(), object()
    view = SelectedView(session, box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    assert verifyObject(IMailboxListener, view)

    resolve(box.store([2], StoreMode.ADD, frozenset({"\\Deleted"}), other))
    resolve(box.expunge(None, other))
    resolve(box.append(b"Subject: new\r\n\r\nbody\r\n", frozenset(), None, other))
    flush(view, expunges=False)  # after FETCH/STORE/SEARCH: no EXPUNGE yet
    sent = b"".join(session.out)
    assert b"EXPUNGE" not in sent
    assert b"* 4 EXISTS" in sent
    assert b"* 2 FETCH (UID 2 FLAGS (\\Deleted))" in sent

    session.out.clear()
    flush(view, expunges=True)
    assert b"".join(session.out) == b"* 2 EXPUNGE\r\n"
    assert view.uids == [1, 3, 4]
    view.close()


def test_sequence_numbers_of_uids_with_and_without_gaps() -> None:
    account = resolve(memory.build({}, ".", reactor).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(6):
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None))
    dense = SelectedView(Session(), box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    assert dense.seqs_of([0, 2, 3, 6, 7]) == [2, 3, 6]
    resolve(box.store([2, 5], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    gapped = SelectedView(Session(), box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    assert list(gapped.uids) == [1, 3, 4, 6]
    assert gapped.seqs_of([1, 2, 4, 5, 6, 9]) == [1, 3, 4]
    assert gapped.seqs_of([]) == []


def test_views_share_the_snapshot_until_one_changes() -> None:
    """SELECT copies no UID list: the views of one snapshot hold the backend's tuple
    itself; a view that is told of a change takes a list of its own, the others keep
    theirs as it was."""
    account = resolve(memory.build({}, ".", reactor).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(4):
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None))
    snapshot = resolve(box.uids())
    assert resolve(box.uids()) is snapshot  # nothing changed: the same one
    one, two = Session(), Session()
    first = SelectedView(one, box, False, snapshot, [])  # type: ignore[arg-type]
    second = SelectedView(two, box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    assert first.uids is snapshot and second.uids is snapshot
    other = object()
    resolve(box.store([2], StoreMode.ADD, frozenset({"\\Deleted"}), other))
    resolve(box.expunge(None, other))
    resolve(box.append(b"Subject: new\r\n\r\nbody\r\n", frozenset(), None, other))
    flush(first, expunges=True)
    assert list(first.uids) == [1, 3, 4, 5]
    assert second.uids is snapshot and list(snapshot) == [1, 2, 3, 4]
    assert second.seq_of(4) == 4 and first.seq_of(4) == 3
    assert list(resolve(box.uids())) == [1, 3, 4, 5]
    flush(second, expunges=False)  # after FETCH: EXISTS, no EXPUNGE yet
    assert list(second.uids) == [1, 2, 3, 4, 5] and list(snapshot) == [1, 2, 3, 4]
    flush(second, expunges=True)
    assert list(second.uids) == [1, 3, 4, 5] and list(first.uids) == [1, 3, 4, 5]
    first.close()
    second.close()


def test_a_lost_mailbox_ends_the_session() -> None:
    account = resolve(memory.build({}, ".", reactor).account("alice"))
    box = resolve(account.open("INBOX"))
    session = Session()
    view = SelectedView(session, box, False, [], [])  # type: ignore[arg-type]
    view.mailbox_lost(box, "gone upstream")
    assert session.out == [b"* BYE Mailbox lost: gone upstream\r\n"]


def three_messages() -> tuple[Any, SelectedView, Session]:
    account = resolve(memory.build({}, ".", reactor).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(3):
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None))
    session = Session()
    view = SelectedView(session, box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    return box, view, session


def test_a_flag_update_older_than_what_was_sent_is_dropped() -> None:
    """Events may come late (a backend answering from threads): queued or arriving after the
    newer flags were sent, an older update is never written."""
    box, view, session = three_messages()
    other = object()
    older = FlagChange(1, frozenset({"\\Seen"}), 10)
    view.flags_changed(box, [older], other)  # queued
    view.flags_with_recent(1, frozenset({"\\Seen", "\\Flagged"}), 11)  # a STORE's answer
    flush(view, expunges=True)
    assert session.out == []
    view.flags_changed(box, [FlagChange(2, frozenset({"\\Seen"}), 12)], other)
    clock = Clock()
    run(view.own_changes([FlagChange(2, frozenset({"\\Answered"}), 13)], TimeSlices(clock)), clock)
    view.flags_changed(box, [older], other)  # arriving after
    flush(view, expunges=True)
    assert session.out == []
    view.flags_changed(box, [FlagChange(1, frozenset(), 14)], other)  # newer: sent
    flush(view, expunges=True)
    assert session.out == [b"* 1 FETCH (UID 1 FLAGS ())\r\n"]


def test_a_message_expunged_before_it_was_announced_is_never_announced() -> None:
    box, view, session = three_messages()
    other = object()
    view.messages_added(box, [4], other)
    assert view.remove([4]) == []  # our EXPUNGE took it before any EXISTS
    flush(view, expunges=True)
    view.messages_expunged(box, [6], other)  # the expunge event before the append's
    flush(view, expunges=True)
    view.messages_added(box, [5, 6], other)
    view.messages_added(box, [4], other)
    flush(view, expunges=True)
    assert session.out == [b"* 4 EXISTS\r\n* 3 RECENT\r\n"]
    assert view.uids == [1, 2, 3, 5]
    view.messages_added(box, [7], other)
    view.messages_expunged(box, [7], other)  # both pending: neither is sent
    flush(view, expunges=False)
    assert view.uids == [1, 2, 3, 5]
    assert session.out == [b"* 4 EXISTS\r\n* 3 RECENT\r\n"]


def test_nothing_is_written_for_a_closed_view_or_after_idle() -> None:
    box, view, session = three_messages()
    session.idling = True
    view.messages_expunged(box, [2], object())  # while IDLE: at once
    assert session.out == [b"* 2 EXPUNGE\r\n"]
    session.idling = False
    view.close()
    view.messages_added(box, [9], object())
    flush(view, expunges=True)
    assert session.out == [b"* 2 EXPUNGE\r\n"]


def one_by_one(
    seqs: list[int],
    changes: FlagChangeColumns,
    recent: set[int],
    show_uid: bool,
    show_modseq: bool,
    with_flags: bool,
) -> bytes:
    """The FETCH responses of ``flag_fetch_lines``, written one message at a time."""
    out = []
    for seq, uid, flags, modseq in zip(
        seqs, changes.uids, changes.flags, changes.modseqs, strict=True
    ):
        items = [b"UID %d" % uid] if show_uid else []
        if with_flags:
            shown = flags | {"\\Recent"} if uid in recent else flags
            items.append(b"FLAGS (" + " ".join(sorted(shown)).encode() + b")")
        if show_modseq:
            items.append(b"MODSEQ (%d)" % modseq)
        out.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items)))
    return b"".join(out)


@pytest.mark.parametrize("show_uid", [False, True])
@pytest.mark.parametrize("show_modseq", [False, True])
@pytest.mark.parametrize("with_flags", [True, False])
def test_runs_of_equal_flags_are_formatted_as_one_message_at_a_time(
    show_uid: bool, show_modseq: bool, with_flags: bool
) -> None:
    """Runs break at a gap in the numbers or the UIDs, other flags (equal sets made apart
    do not break one), another \\Recent state or modseq; a '%' in a keyword is text."""
    rng = random.Random(5)
    sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "$100%d"})]
    seqs, uids, flags, modseqs = [], [], [], []
    seq, uid = 0, 10
    for _ in range(400):
        seq += 1 if rng.random() < 0.9 else 2
        uid += 1 if rng.random() < 0.9 else 3
        seqs.append(seq)
        uids.append(uid)
        flags.append(
            frozenset(set(rng.choice(sets)))
            if rng.random() < 0.1
            else flags[-1]
            if flags
            else sets[0]
        )
        modseqs.append(7 if rng.random() < 0.95 else 9)
    recent = {u for u in uids if rng.random() < 0.05 or 100 < u < 200}
    changes = FlagChangeColumns(uids, flags, modseqs)
    values: list[tuple[frozenset[str], bool]] = []

    def value(these: frozenset[str], marked: bool) -> bytes:
        values.append((these, marked))
        return encode.flag_list(these | {"\\Recent"} if marked else these)

    lines = flag_fetch_lines(seqs, changes, recent, value, show_uid, show_modseq, with_flags)
    assert b"".join(lines) == one_by_one(seqs, changes, recent, show_uid, show_modseq, with_flags)
    assert len(lines) < 200  # runs, not one chunk per message
    assert len(values) == len(set(values))  # each (flags, recent) rendered once


def test_flag_columns_read_as_flag_changes() -> None:
    seen = frozenset({"\\Seen"})
    columns = FlagChangeColumns([2, 5, 9], [seen, frozenset(), seen], [4, 4, 6])
    assert len(columns) == 3
    assert columns[1] == FlagChange(5, frozenset(), 4)
    assert list(columns) == [
        FlagChange(2, seen, 4),
        FlagChange(5, frozenset(), 4),
        FlagChange(9, seen, 6),
    ]
    part = columns[1:]
    assert isinstance(part, FlagChangeColumns) and part.uids == [5, 9]
    with pytest.raises(ValueError, match="lengths"):
        FlagChangeColumns([1, 2], [seen], [3, 3])
    unsorted = [FlagChange(9, seen, 6), FlagChange(2, seen, 4)]
    got = resolve(as_columns(unsorted, TimeSlices(reactor)))
    assert (got.uids, got.modseqs) == ([2, 9], [4, 6])


def test_flag_fetches_number_a_gapped_view_and_leave_out_unknown_uids() -> None:
    box, view, session = three_messages()
    resolve(box.store([2], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    view.remove([2])  # the view now holds UIDs 1 and 3
    view.recent = {3}
    seen = frozenset({"\\Seen"})
    changes = FlagChangeColumns([1, 2, 3, 8], [seen, seen, seen, frozenset({"$Hot"})], [20] * 4)
    lines = view.flag_fetches(changes, show_uid=True, note=True)
    assert b"".join(lines) == (
        b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 2 FETCH (UID 3 FLAGS (\\Recent \\Seen))\r\n"
    )
    view.flags_changed(box, [FlagChange(3, frozenset(), 19)], object())  # older: dropped
    flush(view, expunges=True)
    assert session.out == []


def test_own_changes_are_noted_at_once_and_older_queued_updates_dropped() -> None:
    box, view, session = three_messages()
    other = object()
    view.flags_changed(box, [FlagChange(1, frozenset(), 30)], other)
    flush(view, expunges=True)
    session.out.clear()
    seen = frozenset({"\\Seen"})
    resolve(
        view.own_changes(
            FlagChangeColumns([1, 2, 3], [seen] * 3, [29, 31, 31]), TimeSlices(reactor)
        )
    )
    view.flags_changed(box, [FlagChange(n, frozenset(), 30) for n in (1, 2, 3)], other)
    flush(view, expunges=True)  # 1 was told 30 (29 is older), 2 and 3 have 31
    assert session.out == []
    resolve(view.own_changes(FlagChangeColumns([1, 3], [seen] * 2, [40, 40]), TimeSlices(reactor)))
    view.flags_changed(box, [FlagChange(n, frozenset(), 35) for n in (1, 2, 3)], other)
    flush(view, expunges=True)  # all at once: 1 and 3 have 40; 2 has 31 only
    assert session.out == [b"* 2 FETCH (UID 2 FLAGS ())\r\n"]
    session.out.clear()
    for uid in (1, 2):  # left queued by a flush cut short (IDLE ended)
        view._queued_flags[uid], view._queued_modseq[uid] = frozenset({"$Old"}), 45
    resolve(view.own_changes(FlagChangeColumns([2, 3], [seen] * 2, [50, 50]), TimeSlices(reactor)))
    flush(view, expunges=True)  # 2's queued update is older than what the client has
    sent = b"".join(session.out)  # after the FLAGS that announce $Old
    assert sent.startswith(b"* FLAGS (") and sent.endswith(
        b"Flags permitted\r\n* 1 FETCH (UID 1 FLAGS ($Old))\r\n"
    )


def test_memory_store_tells_columns_with_shared_flag_sets() -> None:
    box, view, session = three_messages()
    highest = resolve(box.status()).highestmodseq
    result = resolve(box.store([1, 2, 3], StoreMode.ADD, frozenset({"\\Seen"}), None))
    assert isinstance(result.changed, FlagChangeColumns)
    assert result.changed.uids == [1, 2, 3]
    after = resolve(box.fetch([1, 2, 3]))
    assert [m.flags for m in after] == [frozenset({"\\Seen"})] * 3
    assert after[0].flags is after[1].flags is after[2].flags
    assert [m.modseq for m in after] == [highest + 1] * 3
    flush(view, expunges=True)
    assert b"".join(session.out) == b"".join(
        b"* %d FETCH (UID %d FLAGS (\\Seen))\r\n" % (n, n) for n in (1, 2, 3)
    )


def told_one_by_one(uids: list[int], gone: set[int]) -> tuple[list[int], list[bytes]]:
    """What the view must end with and write for ``gone``: an EXPUNGE per message it
    holds, highest number first (the numbers of the lower ones stay valid)."""
    left = list(uids)
    lines = []
    for seq in range(len(left), 0, -1):
        if left[seq - 1] in gone:
            lines.append(b"* %d EXPUNGE\r\n" % seq)
            del left[seq - 1]
    return left, lines


def big_view(count: int, rng: random.Random) -> tuple[Any, SelectedView, Session]:
    """A view of ``count`` messages with gaps in their UIDs (the mailbox behind it is
    only listened to: the view's own bookkeeping is tested)."""
    box, view, session = three_messages()
    uids, uid = [], 0
    for _ in range(count):
        uid += 1 if rng.random() < 0.9 else rng.randint(2, 40)
        uids.append(uid)
    view.load(uids, [u for u in uids if rng.random() < 0.1], 1, uids[-1] + 1)
    return box, view, session


@pytest.mark.parametrize("shape", ["runs", "scattered", "all", "top"])
def test_removing_many_messages_tells_each_in_steps_from_the_top(shape: str) -> None:
    """An EXPUNGE of thousands: the view drops them in steps with a pause between, each
    step written with its map change, and ends as one EXPUNGE at a time would (before:
    one ``pop`` per message, in one turn of the reactor)."""
    rng = random.Random(shape)
    _, view, session = big_view(30000, rng)
    uids = list(view.uids)
    if shape == "runs":
        gone = {u for start in rng.sample(uids, 80) for u in range(start, start + 600)}
    elif shape == "scattered":
        gone = set(rng.sample(uids, 12000))
    elif shape == "all":
        gone = set(uids)
    else:
        gone = set(uids[-9000:])
    gone |= {uids[-1] + 5}  # not announced yet: never will be
    view._told_modseq.update((u, 9) for u in uids[::7])
    recent = set(view.recent)
    left, lines = told_one_by_one(uids, gone)
    told = list(uids)

    def write(data: bytes) -> None:  # each step's lines, written with its map change
        session.out.append(data)
        for line in data.splitlines():
            del told[int(line.split()[1]) - 1]
        assert told == view.uids

    session.write = write  # type: ignore[method-assign]
    clock = session.services.clock
    run(view.tell_removed(sorted(gone), TimeSlices(clock, length=0)), clock)
    assert len(session.out) > 1
    assert view.uids == left
    assert b"".join(session.out) == b"".join(lines)
    assert view.recent == recent - gone
    assert not gone & set(view._told_modseq)
    assert uids[-1] + 5 in view._gone_ahead


def test_removal_as_vanished_and_all_at_once() -> None:
    """With QRESYNC on, the UIDs are told as VANISHED (one line a step); ``remove`` does
    it all in one go (a small EXPUNGE)."""
    rng = random.Random(11)
    _, view, session = big_view(20000, rng)
    uids = list(view.uids)
    gone = set(rng.sample(uids, 15000))
    session.enabled.add("QRESYNC")
    clock = session.services.clock
    run(view.tell_removed(sorted(gone), TimeSlices(clock, length=0)), clock)
    vanished = []
    for line in session.out:
        assert line.startswith(b"* VANISHED ") and line.endswith(b"\r\n")
        vanished += uids_in(parse_sequence_set(line[11:-2].decode()).resolve(uids[-1]), uids)
    assert sorted(vanished) == sorted(gone) and len(session.out) > 1
    assert view.uids == [u for u in uids if u not in gone]
    _, view, session = big_view(5000, random.Random(12))
    uids = list(view.uids)
    gone = set(uids[100:2000]) | set(uids[3000::3])
    assert view.remove(sorted(gone)) == told_one_by_one(uids, gone)[1]
    assert view.uids == told_one_by_one(uids, gone)[0]


def test_a_removal_cut_short_by_the_end_of_idle_leaves_the_rest_pending() -> None:
    """IDLE ended at a pause between two steps: what was not told waits for the next
    flush (whose command may tell EXPUNGE), none is lost or told twice."""
    _, view, session = big_view(30000, random.Random(13))
    uids = list(view.uids)
    session.idling = True
    clock = Clock()
    done = Deferred.fromCoroutine(
        view.tell_removed(uids[:20000], TimeSlices(clock, length=0), idle=True)
    )
    session.idling = False  # DONE came while the first step's pause waited
    clock.advance(0)
    assert done.called
    told = b"".join(session.out).count(b"EXPUNGE")
    assert 0 < told < 20000
    assert view.uids == uids[: 20000 - told] + uids[20000:]
    assert sorted(view._expunged) == uids[: 20000 - told]
    session.out.clear()
    flush(view, expunges=True)
    assert view.uids == uids[20000:]
    assert b"".join(session.out) == b"".join(
        b"* %d EXPUNGE\r\n" % seq for seq in range(20000 - told, 0, -1)
    )
