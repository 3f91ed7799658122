"""The SQL backend tells new messages in UID order, whatever order its threads answer in.

Transactions return from the thread pool in any order: the APPEND that took UID 5 may report
before the COPY that took UID 4.  A session that announced UID 5 could never announce 4, so
the mailbox holds an event until the UIDs below it are told (or ``HOLD_SECONDS`` passed).
The reports are made here in the order a slow thread would make them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_sql_backend import Recorder, message, resolve
from twisted.internet.task import Clock

from mailserv.backends.sql import SqlBackendFactory, inline_database
from mailserv.backends.sql.mailbox import HOLD_SECONDS, SqlMailbox


def inbox_with_three(tmp_path: Path) -> tuple[SqlMailbox, Recorder, Clock, Any]:
    clock = Clock()
    backend = SqlBackendFactory(database=inline_database).build(
        {"url": f"sqlite://{tmp_path}/mail.db", "sqlite-sync": "normal"}, str(tmp_path), clock
    )
    resolve(backend.start())
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    for n in range(3):
        resolve(box.append(message(n), frozenset(), None, None))
    recorder = Recorder()
    box.add_listener(recorder)
    return box, recorder, clock, backend


def test_a_later_uid_waits_for_the_one_before(tmp_path: Path) -> None:
    box, recorder, clock, backend = inbox_with_three(tmp_path)
    box.added([5, 6], 10, None)  # its thread answered first
    assert recorder.events == []
    box.added([4], 9, None)
    assert recorder.events == [("added", [4]), ("added", [5, 6])]
    box.added([7], 11, None)  # next in line: at once
    assert recorder.events[-1] == ("added", [7])
    assert clock.getDelayedCalls() == []
    resolve(backend.stop())


def test_a_gap_nobody_fills_is_told_after_a_while(tmp_path: Path) -> None:
    box, recorder, clock, backend = inbox_with_three(tmp_path)
    box.added([9], 10, None)  # 4 to 8 taken by a tool that sends no notice
    clock.advance(HOLD_SECONDS / 2)
    assert recorder.events == []
    clock.advance(HOLD_SECONDS)
    assert recorder.events == [("added", [9])]
    box.added([10], 11, None)
    box.added([9], 10, None, remote=True)  # a notice of one already told: dropped
    assert recorder.events == [("added", [9]), ("added", [10])]
    resolve(backend.stop())


def test_appends_are_told_at_once(tmp_path: Path) -> None:
    box, recorder, clock, backend = inbox_with_three(tmp_path)
    uid = resolve(box.append(message(9), frozenset(), None, None)).uid
    assert recorder.events == [("added", [uid])]
    assert clock.getDelayedCalls() == []
    resolve(backend.stop())
