"""The backend kit on its own: hierarchy rules, listener set, modseq log, options schema."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from mailserv.backends.kit import (
    Bool,
    Choice,
    Hierarchy,
    Int,
    Lane,
    Listened,
    ListenerSet,
    ModseqLog,
    Number,
    OptionSchema,
    Path,
    Tally,
    Text,
    expungeable,
    plan_store,
)
from mailserv.errors import (
    BackendOptionError,
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxNotSelectable,
)
from mailserv.interfaces import NOSELECT, FlagChange, MessageMeta, StoreMode
from mailserv.slicing import TimeSlices
from mailserv.testing import Recorder

# -- hierarchy ------------------------------------------------------------------------------


def test_create_plans_parents_and_takes_over_a_noselect_name() -> None:
    rules = Hierarchy({"a": False, "a/b": True})
    plan = rules.create("a/")
    assert (plan.name, plan.parents, plan.replaces) == ("a", [], True)
    plan = rules.create("x/y/z")
    assert (plan.name, plan.parents, plan.replaces) == ("x/y/z", ["x", "x/y"], False)
    assert rules.create("INBOX/kid").parents == []
    for taken in ("INBOX", "a/b"):
        with pytest.raises(MailboxExists):
            rules.create(taken)
    for bad in ("", "/a", "a//b"):
        with pytest.raises(InvalidMailboxName):
            rules.create(bad)


def test_implied_parents_are_listed_noselect_and_count_as_existing() -> None:
    rules = Hierarchy({"p/q": True})
    assert [(i.name, NOSELECT in i.attributes) for i in rules.listing(lambda n: frozenset())] == [
        ("INBOX", False),
        ("p", True),
        ("p/q", False),
    ]
    with pytest.raises(MailboxHasChildren):
        rules.delete("p")
    with pytest.raises(MailboxNotSelectable):
        rules.opening("p")
    with pytest.raises(MailboxNotFound):
        rules.opening("nowhere")
    with pytest.raises(MailboxExists):
        rules.rename("INBOX", "p")


def test_delete_rules() -> None:
    rules = Hierarchy({"a": True, "a/b": True, "n": False, "n/c": True, "gone": False})
    assert rules.delete("a").keep and rules.delete("a").selectable
    leaf = rules.delete("a/b")
    assert (leaf.keep, leaf.selectable) == (False, True)
    assert rules.delete("gone").selectable is False  # an empty \Noselect name can go
    with pytest.raises(MailboxHasChildren):
        rules.delete("n")
    with pytest.raises(InvalidMailboxName):
        rules.delete("INBOX")
    with pytest.raises(MailboxNotFound):
        rules.delete("zz")


def test_rename_rules() -> None:
    rules = Hierarchy({"a": True, "a/b": False, "a/b/c": True, "z": True})
    plan = rules.rename("a", "m/n")
    assert plan.moves == [("a", "m/n"), ("a/b", "m/n/b"), ("a/b/c", "m/n/b/c")]
    assert (plan.parents, plan.inbox) == (["m"], None)
    inbox = rules.rename("INBOX", "Old/2024")
    assert inbox.moves == [] and inbox.inbox is not None
    assert (inbox.inbox.name, inbox.inbox.parents) == ("Old/2024", ["Old"])
    with pytest.raises(InvalidMailboxName):
        rules.rename("a", "a/x")
    with pytest.raises(MailboxExists):
        rules.rename("a", "z")
    with pytest.raises(MailboxNotFound):
        rules.rename("q", "r")


def test_a_backend_check_applies_to_every_name() -> None:
    def no_dots(name: str) -> str:
        if "." in name:
            raise InvalidMailboxName("no dots")
        return name

    rules = Hierarchy({"a": True}, no_dots)
    for call in (lambda: rules.create("x.y"), lambda: rules.rename("a", "b.c")):
        with pytest.raises(InvalidMailboxName, match="no dots"):
            call()


# -- listeners and modseqs --------------------------------------------------------------------


class Broken(Recorder):
    def messages_added(self, mailbox: Any, uids: Any, origin: object) -> None:
        raise RuntimeError("listener bug")


def test_listener_set_fans_out_past_a_failing_listener() -> None:
    listeners, first, second = ListenerSet(), Recorder(), Recorder()
    broken = Broken()
    for listener in (first, broken, second, first):
        listeners.add(listener)
    assert len(listeners) == 3
    origin = object()
    with capturedLogs() as logged:
        listeners.added(None, [1, 2], origin)  # type: ignore[arg-type]
    assert first.events == second.events == [("added", [1, 2], origin)]
    assert any("listener bug" in str(event.get("log_failure")) for event in logged)
    listeners.remove(first)
    listeners.added(None, [], origin)  # type: ignore[arg-type]  # nothing: no event
    change = FlagChange(1, frozenset(), 3)
    listeners.flags_changed(None, [change], None)  # type: ignore[arg-type]
    listeners.lost(None, "gone")  # type: ignore[arg-type]
    assert [kind for kind, _, _ in second.events] == ["added", "flags", "lost"]
    assert len(first.events) == 1


def test_modseq_log() -> None:
    log = ModseqLog()
    assert log.highest == 1
    first = log.bump()
    log.expunged([7, 3], first)
    second = log.bump()
    log.expunged([5], second)
    assert log.vanished_since(0) == [3, 5, 7]
    assert log.vanished_since(first) == [5]
    assert log.vanished_since(second) == []


def test_a_change_in_slices_stamps_the_upcoming_modseq_and_reports_an_early_highest() -> None:
    log = ModseqLog()
    assert log.upcoming == 2 and log.highest == 1  # a change under way: not announced yet
    assert log.bump() == 2
    metas = [MessageMeta(uid, frozenset(), None, 0, uid, None) for uid in (1, 2, 3)]  # type: ignore[arg-type]
    changes = log.changes(metas, 1, highest=1)  # HIGHESTMODSEQ read before the messages
    assert [m.uid for m in changes.changed] == [2, 3] and changes.highestmodseq == 1
    assert log.changes(metas, 1).highestmodseq == 2


# -- lane and slices --------------------------------------------------------------------------


def test_the_lane_runs_changes_one_after_the_other() -> None:
    clock = Clock()
    lane = Lane(clock)
    order: list[str] = []

    async def change(name: str, pauses: int) -> None:
        async with lane.held() as slices:
            order.append(f"{name} starts")
            for _ in range(pauses):
                await TimeSlices(clock, length=0).pause()  # gives way to the reactor
            assert isinstance(slices, TimeSlices)
            order.append(f"{name} ends")

    first = Deferred.fromCoroutine(change("first", 2))
    assert lane.busy
    second = Deferred.fromCoroutine(change("second", 0))
    assert order == ["first starts"] and not second.called  # waits its turn
    clock.advance(0)
    clock.advance(0)
    assert first.called and second.called and not lane.busy
    assert order == ["first starts", "first ends", "second starts", "second ends"]


def test_a_small_change_in_the_lane_needs_no_reactor() -> None:
    lane = Lane(Clock())  # never advanced

    async def change() -> int:
        async with lane.held() as slices:
            return sum([len(part) async for part in slices.batches(range(10))])

    assert Deferred.fromCoroutine(change()).result == 10


def test_the_lane_is_let_go_when_a_change_fails() -> None:
    lane = Lane(Clock())

    async def change() -> None:
        async with lane.held():
            raise ValueError("bad")

    failed = Deferred.fromCoroutine(change())
    failed.addErrback(lambda f: f.trap(ValueError))
    assert not lane.busy


def test_batches_pause_between_pieces_once_the_slice_is_used_up() -> None:
    clock = Clock()
    got: list[list[int]] = []

    async def walk(slices: TimeSlices) -> None:
        async for part in slices.batches(list(range(25)), size=10):
            got.append(list(part))

    done = Deferred.fromCoroutine(walk(TimeSlices(clock, length=3600)))
    assert done.called and [len(p) for p in got] == [10, 10, 5]  # within the slice: at once
    got.clear()
    done = Deferred.fromCoroutine(walk(TimeSlices(clock, length=0)))
    assert not done.called and got == [list(range(10))]  # the first piece, then a pause
    clock.advance(0)
    clock.advance(0)
    assert done.called and [len(p) for p in got] == [10, 10, 5]


# -- options ----------------------------------------------------------------------------------

FLAG = Bool("a flag", True)
COUNT = Int("a count", 4, 0, 64)
RATE = Number("a rate", 1.0, 0.5)
MODE = Choice("a mode", "auto", ("auto", "poll"))
WHERE = Path("a path", "cache")
NAME = Text[str | None]("a name", None)
SCHEMA = OptionSchema(
    "demo",
    {"flag": FLAG, "count": COUNT, "rate": RATE, "mode": MODE, "where": WHERE, "name": NAME},
)


def test_options_take_defaults_and_types() -> None:
    values = SCHEMA.parse({}, "/data")
    assert (values[FLAG], values[COUNT], values[RATE], values[MODE]) == (True, 4, 1.0, "auto")
    assert (values[WHERE], values[NAME]) == ("/data/cache", None)
    given = {"flag": "Off", "count": "64", "rate": "2.5", "mode": "poll", "where": "none"}
    values = SCHEMA.parse({**given, "name": "x"}, "/data")
    assert (values[FLAG], values[COUNT], values[RATE], values[MODE]) == (False, 64, 2.5, "poll")
    assert (values[WHERE], values[NAME]) == (None, "x")
    assert SCHEMA.parse({"where": "/abs"}, "/data")[WHERE] == "/abs"
    assert SCHEMA.help["count"] == "a count"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"flag": "maybe"}, "flag must be true or false, got 'maybe'"),
        ({"count": "4.5"}, "count must be a whole number"),
        ({"count": "65"}, "count must be between 0 and 64, got '65'"),
        ({"rate": "0.1"}, "rate must be at least 0.5"),
        ({"rate": "nan"}, "rate must be a finite number"),
        ({"mode": "fast"}, "mode must be one of auto, poll, got 'fast'"),
        ({"colour": "blue"}, "The demo backend has no option 'colour'"),
    ],
)
def test_bad_options_are_named(given: dict[str, str], message: str) -> None:
    with pytest.raises(BackendOptionError) as info:
        SCHEMA.parse(given, "/data")
    assert message in str(info.value)


class _Msg:
    def __init__(self, uid: int, flags: set[str], modseq: int) -> None:
        self.uid, self.flags, self.modseq = uid, frozenset(flags), modseq


def test_plan_store_skips_non_changes_and_refuses_what_changed_since() -> None:
    messages = [_Msg(1, {"\\Seen"}, 3), _Msg(2, set(), 9), _Msg(3, set(), 4)]
    plan, failed = plan_store(messages, StoreMode.ADD, frozenset({"\\Seen"}), 5)
    assert [(m.uid, new) for m, new in plan] == [(3, {"\\Seen"})]
    assert failed == [2]
    plan, failed = plan_store(messages, StoreMode.REMOVE, frozenset({"$X"}), None)
    assert (plan, failed) == ([], [])
    assert [m.uid for m in expungeable([_Msg(1, {"\\Deleted"}, 1), _Msg(2, set(), 1)])] == [1]


def test_tally_counts_what_status_reports() -> None:
    tally = Tally()
    tally.add(1, frozenset(), 10)
    tally.add(2, frozenset({"\\Seen"}), 5, recent=False)
    tally.reflag(frozenset(), frozenset({"\\Seen"}), [1])
    status = tally.status(7, 3, 2, 4)
    assert (status.size, status.unseen, status.recent, status.uidnext) == (15, 0, 1, 3)
    assert tally.claim() == [1] and tally.claim() == []
    tally.remove(2, 5)
    assert (tally.size, tally.unseen) == (10, 0)


def test_listened_gives_a_mailbox_its_listener_methods() -> None:
    class Box(Listened):
        def __init__(self) -> None:
            self.listeners = ListenerSet()

    box, listener = Box(), object()
    box.add_listener(listener)  # type: ignore[arg-type]
    assert listener in box.listeners
    box.remove_listener(listener)  # type: ignore[arg-type]
    assert listener not in box.listeners


def test_a_big_stores_changes_are_columns_ascending_by_uid() -> None:
    """``kit.flagchanges``: the groups of a STORE become the engine's columns (no object
    per message for the collector to walk), ascending by UID across groups."""
    from mailserv.backends.kit.flagchanges import FlagChanges
    from mailserv.interfaces import FlagChangeColumns

    seen, flagged, none = frozenset({"\\Seen"}), frozenset({"\\Flagged"}), frozenset()
    changes = FlagChanges({seen: [2, 5, 9], flagged: [1, 7], none: [3, 4, 10]}, 42)
    assert isinstance(changes, FlagChangeColumns)
    assert list(changes.uids) == [1, 2, 3, 4, 5, 7, 9, 10]
    assert list(changes.flags) == [flagged, seen, none, none, seen, flagged, seen, none]
    assert set(changes.modseqs) == {42}
    single = FlagChanges({seen: [3, 8]}, 7)
    assert [(c.uid, c.flags, c.modseq) for c in single] == [(3, seen, 7), (8, seen, 7)]
    assert len(FlagChanges({seen: []}, 1)) == 0


def test_a_big_stores_changes_are_merged_in_steps() -> None:
    """``kit.flagchanges.changes_in_steps``: the groups of a STORE of many messages are
    merged a step at a time (the reactor runs other work at each ``yield``), into the same
    columns as at once."""
    from mailserv.backends.kit import flagchanges

    seen, flagged, none = frozenset({"\\Seen"}), frozenset({"\\Flagged"}), frozenset()
    sets = (seen, flagged, none)
    groups: dict[frozenset[str], list[int]] = {seen: [], flagged: [], none: []}
    for uid in range(1, 4 * flagchanges.STEP):
        groups[sets[uid % 7 % 3]].append(uid)
    steps = flagchanges.changes_in_steps(groups, 9)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            changes = done.value
            break
        pauses += 1
    assert pauses > 4
    assert isinstance(changes, flagchanges.FlagChanges)
    assert list(changes.uids) == list(range(1, 4 * flagchanges.STEP))
    assert list(changes.flags) == [sets[uid % 7 % 3] for uid in changes.uids]
    assert list(changes.flags) == list(flagchanges.FlagChanges(groups, 9).flags)
    assert set(changes.modseqs) == {9}
