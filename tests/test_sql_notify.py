"""The PostgreSQL LISTEN connection shares the reactor: a burst of change notices (another
frontend's change of thousands of mailboxes or messages) is handled in time slices."""

from __future__ import annotations

import time
from pathlib import Path

import pgcluster
import psycopg
from twisted.internet import reactor

from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.notify import Listener
from mailserv.backends.sql.tx import NOTIFY_CHANNEL

BURST = 3000
COST = 0.0002
"""Seconds each notice takes to handle here (applying it to open mailboxes, say)."""


def test_a_burst_of_notices_lets_the_reactor_turn(tmp_path: Path) -> None:
    """Before, one read of the socket handled every notice it brought (hundreds at a time,
    tens of ms here): every session waited meanwhile."""
    url = pgcluster.database_url()
    handled: list[str] = []

    def on_notice(payload: str) -> None:
        time.sleep(COST)
        handled.append(payload)

    listener = Listener(parse_url(url, str(tmp_path)), on_notice, lambda: None, reactor)
    listener._attach(listener._open())  # what start() does, without the reactor's threads
    try:
        with psycopg.connect(url) as conn:
            conn.execute(
                "SELECT pg_notify(%s, 'n' || g) FROM generate_series(1, %s) g",
                (NOTIFY_CHANNEL, BURST),
            )
        per_turn: list[int] = []
        deadline = time.monotonic() + 60
        while len(handled) < BURST and time.monotonic() < deadline:
            before = len(handled)
            reactor.iterate(0.01)  # type: ignore[attr-defined]
            per_turn.append(len(handled) - before)
    finally:
        listener.stop()
    assert handled == [f"n{n}" for n in range(1, BURST + 1)]  # all of them, in order
    # A turn takes a slice (4 ms: about 20 notices here), twice at most (the socket and the
    # rest of the last read); before, a turn took every notice of a read.
    assert max(per_turn) * COST < 0.025, max(per_turn)


def test_a_short_read_on_the_listen_connection_comes_after_the_notices_before_it(
    tmp_path: Path,
) -> None:
    """``Listener.query`` (catch_up's look at HIGHESTMODSEQ, from the reactor): its rows
    arrive once the notices received before them were handled; a second query while one is
    in flight is refused (the pool answers it); a query after the connection went fails."""
    url = pgcluster.database_url()
    handled: list[str] = []
    listener = Listener(parse_url(url, str(tmp_path)), handled.append, lambda: None, reactor)
    listener._attach(listener._open())
    answers: list[object] = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, 'before')", (NOTIFY_CHANNEL,))
        asked = listener.query(b"SELECT $1::int + 1, NULL::text", [b"41"])
        assert asked is not None
        assert listener.query(b"SELECT 1", []) is None  # one at a time
        asked.addBoth(lambda result: answers.append((list(handled), result)))
        deadline = time.monotonic() + 10
        while not answers and time.monotonic() < deadline:
            reactor.iterate(0.01)  # type: ignore[attr-defined]
        assert answers == [(["before"], [[b"42", None]])]
        failed = listener.query(b"SELECT nonsense", [])
        assert failed is not None
        failed.addBoth(answers.append)
        while len(answers) < 2 and time.monotonic() < deadline:
            reactor.iterate(0.01)  # type: ignore[attr-defined]
        assert "nonsense" in str(answers[1])
        again = listener.query(b"SELECT 7", [])  # the connection serves on after an error
        assert again is not None
        again.addBoth(answers.append)
        while len(answers) < 3 and time.monotonic() < deadline:
            reactor.iterate(0.01)  # type: ignore[attr-defined]
        assert answers[2] == [[b"7"]]
    finally:
        listener.stop()
    assert listener.query(b"SELECT 1", []) is None  # stopped: the pool answers
