"""A maildir index keeps each message's SORT and THREAD keys in ``message.sorting``
(``sortrow``), written when the message enters it: the first SORT after a start reads that
column, not the records, and gives the keys the engine reads from ``fetch()``.  An index
made before the column gets it, and its rows their values after a first SORT."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_maildir_backend import Store, resolve

from bench import messages
from mailserv.backends.maildir import sortrow
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.interfaces import SORT_KEYS, SortKeys
from mailserv.message.parse import parse_message
from mailserv.message.sortcolumns import FIELDS, keys_of
from mailserv.message.store import dumps

WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=-5)))


def mail() -> list[bytes]:
    """Messages whose keys differ in every way SORT and THREAD look at."""
    rng = random.Random(7)
    made = [messages.realistic(n, rng) for n in range(12)]
    headers = [
        (
            "From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>",
            "To: Team: a@example.org, b@example.org;",
            'Cc: "Ops" <ops@example.org>',
            "Subject: Re: [list] Fwd: Plans (fwd)",
            "Message-ID: <reply.1@example.org>",
            "In-Reply-To: <root.1@example.org>",
        ),
        ("Subject: no date, no addresses", "References: <a@x.example> <b@x.example>"),
        (
            "Date: Tue, 1 Dec 2026 10:00:00 +0900",
            "From: Zed <zed@example.org>",
            "Subject: =?iso-8859-1?q?caf=E9?=",
        ),
    ]
    made += [messages.crlf("\n".join(lines) + "\n\nBody.\n") for lines in headers]
    return made


def appended(box: Any, data: Sequence[bytes]) -> list[int]:
    uids = []
    for n, message in enumerate(data):
        when = None if n % 3 else WHEN + timedelta(days=n)
        uids.append(int(resolve(box.append(message, frozenset(), when, None)).uid))
    return uids


def engine_keys(box: Any, uids: list[int]) -> SortKeys:
    """The keys as the engine reads them from ``fetch()`` (the reference)."""
    work = keys_of(resolve(box.fetch(uids)), SORT_KEYS)
    try:
        while True:
            next(work)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def assert_same(got: SortKeys, expected: SortKeys) -> None:
    assert list(got.uids) == list(expected.uids)
    for name in SORT_KEYS:
        assert list(got.columns[name]) == list(expected.columns[name]), name


def watch_reads(box: Any, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What ``box`` reads of its records and files from now on."""
    asked: list[object] = []
    disk = box.disk
    load, read = disk.load_infos, disk.read
    monkeypatch.setattr(disk, "load_infos", lambda uids: asked.append(list(uids)) or load(uids))
    monkeypatch.setattr(disk, "read", lambda path: asked.append(path) or read(path))
    return asked


@pytest.fixture
def store(tmp_path: Path) -> Any:
    made = Store(tmp_path)
    made.start()
    yield made
    made.stop()


@dataclass
class View:
    """What ``FIELDS`` reads of a ``MessageMeta``."""

    info: Any
    size: int
    internaldate: datetime


def test_the_column_gives_what_the_info_gives() -> None:
    for n, data in enumerate(mail()):
        info = parse_message(data)
        when = WHEN + timedelta(days=n)
        view = View(info, len(data), when)
        expected = tuple(FIELDS[name](view) for name in SORT_KEYS)  # type: ignore[arg-type]
        assert sortrow.keys(sortrow.dump(info), when.timestamp(), len(data)) == expected
        assert sortrow.of_record(dumps(info)) == sortrow.dump(info)
    odd = replace(parse_message(mail()[0]), base_subject="lone \ud83d")  # kept as written
    assert sortrow.keys(sortrow.dump(odd), 0.0, 0)[5] == "lone \ud83d"  # type: ignore[index]
    assert sortrow.keys(b"not json", 0.0, 0) is None
    assert sortrow.keys(b"[1, 2]", 0.0, 0) is None
    assert sortrow.keys(b'[null,"","","","","","","",5,false]', 0.0, 0) is None
    assert sortrow.of_record(b"MI0\n[]") is None


def test_a_first_sort_after_a_start_reads_no_record(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.open()
    uids = appended(inbox, mail())
    expected = engine_keys(inbox, uids)
    store.restart()
    inbox = store.open()
    asked = watch_reads(inbox, monkeypatch)
    got = resolve(inbox.sort_keys([*uids, uids[-1] + 1], SORT_KEYS))
    assert asked == []
    assert sum(e.info is not None for e in inbox._state.entries.values()) == 0
    assert_same(got, expected)


def test_an_index_made_before_the_column_gets_it_and_its_values(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = store.open()
    uids = appended(inbox, mail())
    expected = engine_keys(inbox, uids)
    store.stop()
    db = sqlite3.connect(store.root() / INDEX)
    with db:
        db.execute("ALTER TABLE message DROP COLUMN sorting")
    db.close()
    store.start()
    inbox = store.open()
    assert_same(resolve(inbox.sort_keys(uids, SORT_KEYS)), expected)  # from the records
    db = sqlite3.connect(store.root() / INDEX)
    filled = db.execute("SELECT count(*) FROM message WHERE sorting IS NOT NULL").fetchone()
    db.close()
    assert filled == (len(uids),)
    store.restart()
    inbox = store.open()
    asked = watch_reads(inbox, monkeypatch)
    assert_same(resolve(inbox.sort_keys(uids, SORT_KEYS)), expected)
    assert asked == []
