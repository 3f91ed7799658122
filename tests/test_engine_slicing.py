"""Long commands share the reactor: one user's big SEARCH does not hold up another's NOOP."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from imapserver import new_user
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess
from mailserv.auth.portal import build_portal
from mailserv.backends.memory import factory as memory
from mailserv.backends.memory.mailbox import MemoryMailbox
from mailserv.imap.commands import messages as commands
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.settings import ServerSettings
from mailserv.interfaces import MessageMeta
from mailserv.search import All, SearchProgram
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.slicing import TimeSlices, Turns


def test_a_slice_returns_at_once_until_it_is_used_up() -> None:
    clock = Clock()
    slices = TimeSlices(clock, length=3600)
    d = Deferred.fromCoroutine(slices.pause())
    assert d.called  # within the slice: no turn of the reactor
    spent = TimeSlices(clock, length=0)
    d = Deferred.fromCoroutine(spent.pause())
    assert not d.called  # used up: waits for the reactor's next turn
    clock.advance(0)
    assert d.called


class Reactor(Clock):
    """A test clock turned as a reactor turns: :meth:`turn` runs the calls due when it
    begins, not those they make meanwhile (those wait for the next turn, after the reactor
    has polled its sockets; ``Clock.advance`` would run them at once)."""

    def turn(self) -> None:
        for call in [c for c in self.calls if c.getTime() <= self.seconds()]:
            if call.active():
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class Work:
    """Time that passes only when the work of a test's loops says so (a fake timer)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def loop(slices: TimeSlices, name: str, steps: int, log: list[str], work: Work | None = None,
         cost: float = 0.0) -> Deferred[None]:  # fmt: skip
    """A long command: ``steps`` pieces of work of ``cost`` seconds, a pause after each."""

    async def run() -> None:
        for step in range(steps):
            if work is not None:
                work.now += cost
            log.append(f"{name}{step}")
            await slices.pause()

    return Deferred.fromCoroutine(run())


def turns_of(clock: Reactor, log: list[str], done: list[Deferred[None]]) -> list[list[str]]:
    """Turn the clock until every loop is done: what each turn ran."""
    turns: list[list[str]] = []
    for _ in range(1000):
        if all(d.called for d in done):
            return turns
        seen = len(log)
        clock.turn()
        turns.append(log[seen:])
    raise AssertionError("loops never done")


def test_loops_sharing_the_turns_go_on_one_a_turn() -> None:
    """Two long commands paused in the same turn do not both go on in the next (each with a
    budget of its own, both did: a turn held the reactor twice a slice)."""
    clock = Reactor()
    turns = Turns(clock, length=0)  # every pause gives way
    log: list[str] = []
    done = [loop(TimeSlices(turns), name, 3, log) for name in "ab"]
    assert log == ["a0", "b0"] and turns.waiting == 2
    assert turns_of(clock, log, done) == [["a1"], ["b1"], ["a2"], ["b2"], [], []]
    assert turns.waiting == 0
    clock.turn()  # a last turn forgets the budget's start, and nothing is due any more
    assert not clock.getDelayedCalls()


def test_a_turn_runs_one_slice_of_work_however_many_loops_wait() -> None:
    """With a budget of 4 and pieces of 1 (ms, say), a turn runs the pieces of one loop
    that fit in it, then the reactor polls its sockets; the next turn is the next loop's."""
    clock, work = Reactor(), Work()
    turns = Turns(clock, length=4, timer=work)
    log: list[str] = []
    done = [loop(TimeSlices(turns), name, 6, log, work, 1) for name in "abc"]
    assert log == ["a0", "a1", "a2", "b0", "c0"]  # a used the turn up: b and c wait at once
    assert turns_of(clock, log, done) == [
        ["a3", "a4", "a5"],
        ["b1", "b2", "b3"],
        ["c1", "c2", "c3"],
        ["b4", "b5", "c4"],  # a ends at once, b goes on and ends, c has what is left
        ["c5"],
    ]


def test_a_piece_that_would_not_fit_waits_for_the_next_turn() -> None:
    """A loop whose pieces take 3 of the budget of 4 gives way after each (once its first
    piece, setup and all, is behind it): its next piece would end after the budget, so the
    next turn has it (before, it went on and the turn lasted 6).  A loop that ends early
    leaves the rest of the turn to the next in line."""
    clock, work = Reactor(), Work()
    turns = Turns(clock, length=4, timer=work)
    log: list[str] = []
    short = loop(TimeSlices(turns), "s", 3, log, work, 3)
    long = loop(TimeSlices(turns), "l", 9, log, work, 1)
    assert log == ["s0", "s1", "l0"]
    clock.turn()
    assert log[3:] == ["s2"]  # alone: l's piece does not fit after it
    clock.turn()  # l has waited longer
    assert log[4:] == ["l1", "l2", "l3"] and not short.called
    clock.turn()  # s ends at once, then l goes on while its pieces fit
    assert short.called and log[7:] == ["l4", "l5", "l6"]
    assert turns_of(clock, log, [long]) == [["l7", "l8"]]


def test_no_loop_starves() -> None:
    """A loop that pauses again goes to the back of the line: loops started later, behind
    one that pauses a thousand times, end within a few turns of theirs; the longest waiting
    goes first."""
    clock = Reactor()
    turns = Turns(clock, length=0)
    log: list[str] = []
    hog = loop(TimeSlices(turns), "h", 1000, log)
    clock.turn()
    clock.turn()
    small = [loop(TimeSlices(turns), name, 3, log) for name in "xyz"]
    ran = turns_of(clock, log, small)
    assert len(ran) <= 4 * 3 and not hog.called
    assert ran[:4] == [["h3"], ["x1"], ["y1"], ["z1"]]
    assert turns_of(clock, log, [hog])  # and the hog goes on to its end


def test_a_waiter_cancelled_meanwhile_is_passed_over() -> None:
    clock = Reactor()
    turns = Turns(clock, length=0)
    log: list[str] = []
    first = loop(TimeSlices(turns), "a", 3, log)
    second = loop(TimeSlices(turns), "b", 2, log)
    first.addErrback(lambda f: log.append("a cancelled"))
    first.cancel()
    assert log == ["a0", "b0", "a cancelled"]
    clock.turn()  # the turn goes to b, the first one waiting and still wanting it
    assert log[3:] == ["b1"] and not second.called
    clock.turn()
    assert second.called


def test_time_slices_of_a_reactor_have_a_budget_of_their_own() -> None:
    """``TimeSlices(clock)`` shares nothing: two of them both go on in the next turn."""
    clock = Reactor()
    log: list[str] = []
    done = [loop(TimeSlices(clock, length=0), name, 2, log) for name in "ab"]
    assert turns_of(clock, log, done)[0] == ["a1", "b1"]


def test_evaluation_pauses_between_pieces_of_a_big_mailbox() -> None:
    metas = [MessageMeta(uid, frozenset(), None, 0, 1, None) for uid in range(1, 5001)]  # type: ignore[arg-type]
    pauses = []

    async def pause() -> None:
        pauses.append(1)

    async def content(uid: int) -> bytes:
        raise KeyError(uid)

    ctx = SearchContext([m.uid for m in metas], set(), content, pause)
    found: list[list[int]] = []
    Deferred.fromCoroutine(evaluate(SearchProgram(All()), metas, ctx)).addCallback(found.append)
    assert found == [list(range(1, 5001))]
    assert len(pauses) >= 9  # one per 512 messages


def test_a_long_search_lets_another_users_noop_through(tmp_path: Path) -> None:
    """While one client's SEARCH TEXT scans thousands of messages, a NOOP sent after it by
    another user is answered before the SEARCH is (before: after it, the reactor was held)."""
    server = ServerProcess(tmp_path / "data", BackendSpec("memory"))
    server.start()
    try:
        owner, other = new_user(), new_user()
        server.add_user(owner.name, owner.password)
        server.add_user(other.name, other.password)
        searcher = RawClient.connect(server.imap_port, timeout=120)
        searcher.login(owner.name, owner.password)
        rng = random.Random(3)
        corpus = [messages.realistic(i, rng) for i in range(6000)]
        for start in range(0, len(corpus), 500):
            assert all(r.ok for r in searcher.append_many("INBOX", corpus[start : start + 500]))
        assert searcher.command("SELECT INBOX").ok
        prober = RawClient.connect(server.imap_port, timeout=120)
        prober.login(other.name, other.password)
        answered: dict[str, float] = {}

        def probe() -> None:
            time.sleep(0.02)  # the SEARCH is under way
            assert prober.command("NOOP").ok
            answered["noop"] = time.perf_counter()

        thread = threading.Thread(target=probe)
        thread.start()
        assert searcher.command("SEARCH TEXT zebra-not-there").ok
        answered["search"] = time.perf_counter()
        thread.join(60)
        assert answered["noop"] < answered["search"]
    finally:
        server.stop()


def test_a_loop_that_begins_while_none_waits_has_a_slice_of_its_own() -> None:
    """Where the reactor does not turn (a backend used without one), loops one after the
    other each have a slice: the ones before ended within theirs.  While one waits in line,
    a loop that begins shares what is left of the turn."""
    clock, work = Reactor(), Work()
    turns = Turns(clock, length=4, timer=work)
    log: list[str] = []
    for name in "abc":  # 2 each, 6 in all: never a pause that gives way
        assert loop(TimeSlices(turns), name, 2, log, work, 1).called
    waits = loop(TimeSlices(turns), "w", 9, log, work, 1)
    assert not waits.called and turns.waiting == 1
    late = loop(TimeSlices(turns), "l", 2, log, work, 1)
    assert log[-1] == "l0" and turns.waiting == 2  # the turn was spent: in line at once
    turns_of(clock, log, [waits, late])


def test_copyuid_sets_made_in_pieces_are_those_made_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """COPYUID's sets of a big COPY are formatted a piece at a time, with pauses between
    (100k pairs at once: 20 ms); runs across two pieces are still one run."""
    from mailserv.imap.commands import messages
    from mailserv.syntax.sequences import format_set

    rng = random.Random(5)
    for _ in range(300):
        count = rng.randint(1, 40)
        sources = sorted(rng.sample(range(1, 80), count))
        if rng.random() < 0.2:
            rng.shuffle(sources)
        targets = sorted(rng.sample(range(100, 200), count))
        if rng.random() < 0.5:
            targets = list(range(100, 100 + count))
        monkeypatch.setattr(messages, "COPYUID_PIECE", rng.randint(1, 7))
        made: list[tuple[bytes, bytes]] = []
        slices = TimeSlices(Clock(), length=3600)
        pairs = list(zip(sources, targets, strict=True))
        Deferred.fromCoroutine(messages._copied_sets(pairs, slices)).addCallback(made.append)
        assert made == [(format_set(sources).encode(), format_set(targets).encode())]


def test_a_loop_of_one_piece_inside_another_leaves_the_turn_alone() -> None:
    """A loop that never pauses (a backend's read of one batch inside FETCH's loop) does
    not give the loop around it a new budget: the outer loop gives way when its own is
    spent (before, every inner loop restarted the budget, and the outer one never did)."""
    clock, work = Reactor(), Work()
    turns = Turns(clock, length=4, timer=work)
    log: list[str] = []

    async def outer() -> None:
        slices = TimeSlices(turns)
        for step in range(8):
            work.now += 1
            log.append(f"a{step}")
            async for _ in TimeSlices(turns).batches([1, 2, 3]):
                pass
            await slices.pause()

    done = Deferred.fromCoroutine(outer())
    assert log == ["a0", "a1", "a2"] and turns.waiting == 1
    assert turns_of(clock, log, [done]) == [["a3", "a4", "a5"], ["a6", "a7"]]


class Ticking:
    """A timer on which each reading is ``step`` seconds after the last: any run of work
    looks long."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_commands_that_complete_at_once_leave_the_rest_of_the_input_to_a_later_turn() -> None:
    """Pipelined commands that each complete at once (a memory backend's APPENDs) were all
    run in the turn their bytes arrived in: while one client imported 3,000 messages,
    another's NOOP waited p99 42 ms.  The input is now read on for a slice
    (``PUMP_SLICE``); the rest waits for the next turn, after the reactor has polled the
    other clients' sockets, and nothing is lost or reordered."""
    reactor = Reactor()
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    factory = IMAPServerFactory(
        build_portal(memory.build({}, ".", reactor), checker),
        ServerSettings(),
        clock=reactor,
        turns=Turns(reactor, timer=Ticking(0.0004)),
    )
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    transport.clear()  # the greeting
    count = 40
    protocol.dataReceived(b"".join(b"n%d NOOP\r\n" % i for i in range(count)))
    answered = transport.value().count(b" OK ")
    assert 0 < answered < count  # the rest waits in the input
    turns = 0
    while transport.value().count(b" OK ") < count:
        reactor.turn()
        turns += 1
        assert turns < 200
    tags = [line.split(b" ")[0] for line in transport.value().splitlines() if b" OK " in line]
    assert tags == [b"n%d" % i for i in range(count)]
    protocol.connectionLost(None)


def test_the_engines_evaluation_fetches_a_batch_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A query the backend leaves to the engine is evaluated over batches of
    ``_SCAN_STEP`` messages, each freed before the next is fetched (one fetch of a whole
    mailbox of 100k made objects freed in one reactor turn of 90-117 ms)."""
    monkeypatch.setattr(commands, "_SCAN_STEP", 8)
    asked: list[int] = []
    fetch = MemoryMailbox.fetch

    async def counted(self: MemoryMailbox, uids: list[int]) -> list[MessageMeta]:
        asked.append(len(uids))
        return await fetch(self, uids)

    monkeypatch.setattr(MemoryMailbox, "fetch", counted)
    reactor = Reactor()
    checker = InMemoryUsernamePasswordDatabaseDontUse(ann=b"pw")
    factory = IMAPServerFactory(
        build_portal(memory.build({}, ".", reactor), checker),
        ServerSettings(allow_plaintext_auth=True),
        clock=reactor,
        turns=Turns(reactor, timer=Ticking(0.0)),
    )
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)

    def command(line: bytes, tag: bytes) -> bytes:
        protocol.dataReceived(line)
        for _ in range(200):
            if tag + b" OK" in transport.value():
                break
            reactor.turn()
        out = transport.value()
        transport.clear()
        assert tag + b" OK" in out, out
        return out

    command(b"l LOGIN ann pw\r\n", b"l")
    for n in range(30):
        data = b"X-Seq: %d\r\nSubject: s\r\n\r\nbody\r\n" % n
        command(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (n, len(data), data), b"a%d" % n)
    command(b"s SELECT INBOX\r\n", b"s")
    asked.clear()
    out = command(b"f SEARCH HEADER X-Seq 1\r\n", b"f")
    assert b"* SEARCH 2 11 12 13 14 15 16 17 18 19 20 22" in out
    assert asked and max(asked) <= 8 and sum(asked) == 30
    protocol.connectionLost(None)
