"""Long commands share the reactor: one user's big SEARCH does not hold up another's NOOP."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from imapserver import new_user
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess
from mailserv.interfaces import MessageMeta
from mailserv.search import All, SearchProgram
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.slicing import TimeSlices


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
