"""The collector policy of a server process (mailserv.collector), with CPython's real
garbage collector and a test clock; and the factory's count of commands in flight that it
asks, over real sockets."""

from __future__ import annotations

import gc
import imaplib
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from inprocess import InProcessServerTests
from twisted.internet import defer, reactor, threads
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.logger import capturedLogs
from zope.interface import implementer

from bench.harness import BackendSpec, ServerProcess
from mailserv.backends.kit.textindex import TextIndex
from mailserv.backends.maildir import mailbox as maildir_mailbox
from mailserv.collector import CollectorPolicy, IQuiet, NoSessions, keep_out_of_sight
from mailserv.delivery.deliver import Decision, DefaultPolicy, Envelope, IDeliveryPolicy
from mailserv.delivery.service import deliverer_for
from mailserv.imap.factory import CommandsInFlight
from mailserv.slicing import Turns

CHECK = 60.0


class Cycle:
    """An object that refers to itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def _untracked(obj: object) -> bool:
    """Out of the collector's sight (frozen): in none of its generations."""
    return not any(o is obj for o in gc.get_objects())


def _frozen_then_dropped(more: int = 0) -> weakref.ref[Cycle]:
    """A cycle (and ``more`` others) that lived through a full pass, so frozen, and was then
    dropped: only a sweep frees it.  A weak reference to the first."""
    first = Cycle()
    gone = weakref.ref(first)
    others = [Cycle() for _ in range(more)]
    gc.collect()
    del first, others
    return gone


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Give back the collector as it was: thresholds, hooks, nothing frozen."""
    thresholds = gc.get_threshold()
    hooks = list(gc.callbacks)
    gc.unfreeze()
    try:
        yield
    finally:
        gc.callbacks[:] = hooks
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        gc.collect()


def _policy(
    clock: Clock, quiet: IQuiet | None = None, size: Callable[[], int] = lambda: 1, **kw: Any
) -> CollectorPolicy:
    policy = CollectorPolicy(clock, quiet or NoSessions(), size=size, **kw)
    policy.start()
    return policy


@pytest.mark.usefixtures("collector_state")
def test_what_a_full_pass_leaves_is_frozen_and_its_garbage_freed() -> None:
    policy = _policy(Clock())
    try:
        kept = [Cycle() for _ in range(100)]
        dropped = weakref.ref(Cycle())  # garbage already: the pass frees it, never frozen
        assert not _untracked(kept[0])
        gc.collect()
        assert _untracked(kept[0])
        assert dropped() is None
        assert policy.passes >= 1
    finally:
        policy.stop()
    gc.collect()  # the hook is gone: a pass freezes nothing now
    later = Cycle()
    gc.collect()
    assert not _untracked(later)


@pytest.mark.usefixtures("collector_state")
def test_what_lives_after_a_big_load_leaves_sight_only_under_a_policy() -> None:
    loaded = Cycle()
    assert not keep_out_of_sight()  # an embedding application's collector: left alone
    assert not _untracked(loaded)
    policy = _policy(Clock())
    try:
        made = Cycle()
        assert keep_out_of_sight()
        assert _untracked(made)
    finally:
        policy.stop()


@pytest.mark.usefixtures("collector_state")
def test_a_big_maildir_state_leaves_sight_as_it_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any pass walks it (the next full pass would, holding every thread)."""
    from test_maildir_backend import Store, append

    monkeypatch.setattr(maildir_mailbox, "FREEZE_LOADED", 3)
    store = Store(tmp_path)
    store.start()
    try:
        inbox = store.open()
        for n in range(3):
            append(inbox, n)
        store.restart()
        entries = list(store.open()._state.entries.values())
        assert not any(_untracked(entry) for entry in entries)  # no policy: no freeze
        policy = _policy(Clock())
        try:
            store.restart()
            entries = list(store.open()._state.entries.values())
            assert len(entries) == 3 and all(_untracked(entry) for entry in entries)
            monkeypatch.setattr(maildir_mailbox, "FREEZE_LOADED", 4)
            store.restart()
            assert not any(_untracked(e) for e in store.open()._state.entries.values())
        finally:
            policy.stop()
    finally:
        store.stop()


@pytest.mark.usefixtures("collector_state")
def test_full_after_sets_the_third_threshold_until_stopped() -> None:
    before = gc.get_threshold()
    policy = _policy(Clock(), full_after=3)
    try:
        assert gc.get_threshold() == (before[0], before[1], 3)
    finally:
        policy.stop()
    assert gc.get_threshold() == before


@pytest.mark.usefixtures("collector_state")
def test_the_next_full_pass_comes_soon_whatever_the_heap() -> None:
    """After the start (and each sweep) CPython's next full pass is due after a few
    collections of the young generations, not after a quarter of the heap more: each pass
    walks what came lately."""
    heap = [[i] for i in range(800_000)]  # lives through the start: frozen then
    policy = _policy(Clock())
    try:
        passes, made = policy.passes, []
        for _ in range(150_000):  # 800k / 4 objects would be due without the policy
            made.append([0])
            if policy.passes > passes:
                break
        assert policy.passes > passes, "no full pass in 150k new objects"
        assert len(made) < 150_000
    finally:
        policy.stop()
    del heap


@pytest.mark.usefixtures("collector_state")
def test_a_cycle_frozen_then_dropped_is_freed_by_a_quiet_sweep() -> None:
    clock = Clock()
    policy = _policy(clock, grow=-1.0)  # no growth asked: the count may drift down
    try:
        session = Cycle()
        gone = weakref.ref(session)
        gc.collect()  # it lived through a full pass: frozen
        assert _untracked(session)
        del session
        gc.collect()
        assert gone() is not None  # out of the collector's sight
        clock.advance(CHECK)
        assert gone() is None
        assert policy.sweeps == 1
    finally:
        policy.stop()


@pytest.mark.usefixtures("collector_state")
def test_no_sweep_while_a_command_is_in_flight() -> None:
    clock = Clock()
    commands = CommandsInFlight(clock)
    policy = _policy(clock, commands, grow=-1.0)  # no growth asked: the count may drift down
    try:
        gone = _frozen_then_dropped()
        commands.begin()
        clock.pump([CHECK / 10] * 30)  # three check periods with a command running
        assert gone() is not None
        assert policy.sweeps == 0
        commands.end()
        clock.advance(0.5)  # quiet, but not for long enough yet
        assert gone() is not None
        clock.advance(1.0)
        assert gone() is None
        assert policy.sweeps == 1
    finally:
        policy.stop()


@pytest.mark.usefixtures("collector_state")
def test_no_quiet_sweep_until_the_frozen_objects_grew() -> None:
    clock = Clock()
    policy = _policy(clock)  # grow 25%: a few dead cycles are not worth a pass over all
    try:
        gone = _frozen_then_dropped()
        clock.advance(CHECK)
        assert gone() is not None
        assert policy.sweeps == 0
        _frozen_then_dropped(gc.get_freeze_count())  # 2 objects each
        clock.advance(CHECK)
        assert gone() is None
        assert policy.sweeps == 1
    finally:
        policy.stop()


@pytest.mark.usefixtures("collector_state")
def test_a_forced_sweep_when_the_size_doubled_and_no_quiet_came() -> None:
    """Measured here by the permanent generation itself (the default measure, the peak
    resident memory, cannot be doubled at will by a test)."""
    clock = Clock()
    commands = CommandsInFlight(clock)
    policy = _policy(clock, commands, size=gc.get_freeze_count, grace=10 * CHECK)
    try:
        commands.begin()  # busy all along
        gone = _frozen_then_dropped(gc.get_freeze_count() // 3)  # +2/3: not doubled
        clock.advance(CHECK)
        assert gone() is not None
        _frozen_then_dropped(gc.get_freeze_count())  # 2 objects each: doubled
        clock.advance(CHECK)  # seen doubled: a quiet moment may come yet
        clock.pump([CHECK] * 9)
        assert gone() is not None
        assert policy.sweeps == 0
        clock.advance(CHECK)
        assert gone() is None
        assert policy.sweeps == 1
    finally:
        policy.stop()


@pytest.mark.usefixtures("collector_state")
def test_a_quiet_moment_sweeps_at_once_once_the_size_doubled() -> None:
    clock = Clock()
    commands = CommandsInFlight(clock)
    policy = _policy(clock, commands, size=gc.get_freeze_count, grow=100.0)
    try:
        commands.begin()
        gone = _frozen_then_dropped(gc.get_freeze_count())
        clock.advance(CHECK)  # doubled; the frozen objects did not grow a hundredfold
        assert policy.sweeps == 0
        commands.end()
        clock.pump([1.0] * 2)
        assert gone() is None
        assert policy.sweeps == 1
    finally:
        policy.stop()


@pytest.mark.usefixtures("collector_state")
def test_a_sweep_is_logged_with_its_counts() -> None:
    policy = _policy(Clock())
    try:
        with capturedLogs() as events:
            policy.sweep()
        (event,) = [e for e in events if "sweep" in e["log_format"]]
        assert event["log_level"].name == "info"
        assert event["before"] > 0 and event["after"] > 0
    finally:
        policy.stop()


POLICY_ON = re.compile(r"\[mailserv\.collector#info\] Collector policy on: \d+ objects frozen")


def _policy_lines(server: ServerProcess, count: int) -> list[str]:
    deadline = time.monotonic() + 60
    while True:
        found = POLICY_ON.findall(server.log_text())
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_twistd_imapserv_puts_the_policy_on(server: ServerProcess) -> None:
    """The shared server (twistd imapserv, one process) says so once its backend is up."""
    assert len(_policy_lines(server, 1)) == 1


def test_each_worker_puts_the_policy_on(tmp_path: Path) -> None:
    """With --workers 2, each child is a process of ours (the master serves nothing)."""
    proc = ServerProcess(tmp_path / "data", BackendSpec("maildir"), extra_args=["--workers", "2"])
    proc.start()
    try:
        assert len(_policy_lines(proc, 2)) == 2
    finally:
        proc.stop()


def _background(call: Any) -> bool:
    """A delayed call of a memory store's text indexing (its timers, its pauses)."""
    func = call.func
    owner = getattr(func, "__self__", None)
    return isinstance(owner, (defer.Deferred, TextIndex, Turns))


async def background_settled() -> None:
    """Until no text indexing of a memory store runs on the shared reactor: other tests of
    this process (pytest's, which do not check the reactor is left clean) may have left
    some, and trial's check at the end of a test here would count its next pause."""
    for _ in range(3000):
        if not any(_background(call) for call in reactor.getDelayedCalls()):  # type: ignore[attr-defined]
            return
        await deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]


class InFlightOverSocketsTests(InProcessServerTests):
    """The factory counts a command while it runs (a LOGIN whose password is being
    checked), not while it waits for its client (IDLE); an LMTP delivery counts too."""

    async def before_start(self) -> None:
        await background_settled()  # what earlier tests of this process left running

    def test_counted_while_running_not_while_waiting(self) -> defer.Deferred[None]:
        in_flight = self.parts.factory.in_flight
        seen: set[int] = set()
        at_idle: list[tuple[int, float]] = []
        idling = threading.Event()
        address: Any = self.port.getHost()
        host, port = address.host, address.port

        def note_idle() -> None:
            at_idle.append((in_flight.running, in_flight.quiet_for()))
            idling.set()

        def client() -> None:
            with imaplib.IMAP4(host, port, timeout=30) as imap:
                imap.login("ann", "pw ann")  # argon2 at its real cost: a while in flight
                imap.select("INBOX")
                imap.send(b"i1 IDLE\r\n")
                assert imap.readline().startswith(b"+")
                reactor.callFromThread(note_idle)  # type: ignore[attr-defined]
                assert idling.wait(30)
                imap.send(b"DONE\r\n")
                assert imap.readline().startswith(b"i1 OK")
                imap.logout()

        async def run() -> None:
            watcher = LoopingCall(lambda: seen.add(in_flight.running))
            watcher.start(0.001)
            try:
                await threads.deferToThread(client)
            finally:
                watcher.stop()
            self.assertIn(1, seen)  # the LOGIN, while its password was checked
            self.assertEqual(at_idle[0][0], 0)  # IDLE waits for DONE: not running
            self.assertEqual(in_flight.running, 0)
            await deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
            self.assertGreater(in_flight.quiet_for(), 0.0)

        return defer.Deferred.fromCoroutine(run())

    def test_a_delivery_counts_while_it_runs(self) -> defer.Deferred[None]:
        """The LMTP side's deliverer joins the IMAP side's count while it stores a message
        (a sweep then waits for it, as for a command)."""
        in_flight = self.parts.factory.in_flight
        deliverer = deliverer_for(self.parts.backend, self.parts.factory, tempfile.mkdtemp())
        seen: list[int] = []

        @implementer(IDeliveryPolicy)
        class Noting:
            async def decide(self, account: Any, envelope: Envelope, message: bytes) -> Decision:
                seen.append(in_flight.running)
                return await DefaultPolicy().decide(account, envelope, message)

        deliverer.policy = Noting()

        async def run() -> None:
            recipient = await deliverer.resolve("ann")
            assert recipient is not None
            body = b"From: a@example.org\r\nSubject: counted\r\n\r\nhi\r\n"
            outcome = await deliverer.deliver(recipient, body)
            self.assertEqual(outcome.code, 250, outcome)
            self.assertEqual(seen, [1])
            self.assertEqual(in_flight.running, 0)
            await background_settled()  # the memory store indexes the new text meanwhile

        return defer.Deferred.fromCoroutine(run())
