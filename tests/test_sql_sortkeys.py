"""SORT and THREAD keys kept as columns by the SQL backend (schema 13, ``sortkeys``): a store
made before migration 13 upgrades and sorts and threads the same; the keys follow APPEND,
COPY and EXPUNGE; a message without its keys row is still sorted right.  SQLite and
PostgreSQL, transactions inline (no reactor)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from test_sql_backend import _undo_version_13, query, resolve, started, url  # noqa: F401
from twisted.internet import reactor

from mailserv.backends.sql import SqlBackendFactory, inline_database, schema, sortkeys
from mailserv.backends.sql.db import InlineDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.tx import Tx
from mailserv.errors import BackendError
from mailserv.imap.sorting import THREAD_KEYS, keys_of, parse_criteria, sort_order
from mailserv.imap.threads import Message, references
from mailserv.interfaces import SORT_KEYS, SortKeys, StoreMode
from mailserv.message import store
from mailserv.message.parse import parse_message
from mailserv.syntax.tokens import Atom, ParenList
from mailserv.testing.contract import SORT_SAMPLES

FACTORY = SqlBackendFactory(database=inline_database)


def done(work: Generator[None, None, Any]) -> Any:
    """The value of a sliced computation, run to its end."""
    try:
        while True:
            next(work)
    except StopIteration as stop:
        return stop.value


def corpus(count: int) -> list[bytes]:
    """Messages with repeated subjects, senders and dates, some replies to earlier ones."""
    out = list(SORT_SAMPLES)
    for n in range(count):
        headers = [
            f"Subject: {'Re: ' if n % 3 == 0 else ''}Topic {n % 5}",
            f"From: Person {n % 4} <p{n % 7}@example.org>",
            f"To: list{n % 2}@example.org",
            f"Message-ID: <m{n}@example.org>",
        ]
        if n % 6:
            headers.append(f"Date: Mon, {1 + n % 9} Feb 2021 10:00:00 +0000")
        if n % 4 == 0 and n:
            headers.append(f"References: <m{n // 2}@example.org> <m{n - 1}@example.org>")
        out.append(("\r\n".join(headers) + f"\r\n\r\nBody {n}\r\n").encode())
    return out


ORDERS = [
    "(DATE)",
    "(SUBJECT)",
    "(REVERSE FROM DATE)",
    "(ARRIVAL)",
    "(SIZE TO)",
    "(CC REVERSE SUBJECT)",
    "(DISPLAYFROM)",
    "(REVERSE DISPLAYTO)",
]


def answers(box: Any) -> dict[str, Any]:
    """Every order of :data:`ORDERS` and THREAD=REFERENCES, from the mailbox's own keys,
    and the keys as the engine reads them from ``fetch()`` (what the others answer from)."""
    uids = resolve(box.uids())
    keys: SortKeys = resolve(box.sort_keys(uids, SORT_KEYS))
    fetched = done(keys_of(resolve(box.fetch(uids)), SORT_KEYS))
    out: dict[str, Any] = {"uids": list(keys.uids)}
    for name in SORT_KEYS:
        out[name] = list(keys.columns[name])
        assert out[name] == list(fetched.columns[name]), name
    for text in ORDERS:
        criteria = parse_criteria(ParenList([Atom(w) for w in text[1:-1].split()]))
        out[text] = done(sort_order(criteria, keys))
        assert out[text] == done(sort_order(criteria, fetched)), text
    columns = [keys.columns[name] for name in THREAD_KEYS]
    messages = [Message(*row) for row in zip(keys.uids, *columns, strict=True)]  # type: ignore[arg-type]
    out["THREAD"] = done(references(messages))
    return out


def test_upgrade_to_13_keeps_the_keys_and_sorts_the_same(
    url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A version 12 store (no keys table; one message's info in a format this version
    parses again) is refused until ``db upgrade``, which derives every message's keys in
    batches; every SORT order and THREAD then answers as before."""
    backend = started(url, tmp_path)
    account = resolve(backend.account("alice"))
    resolve(account.create("Other"))
    box = resolve(account.open("INBOX"))
    raws = corpus(40)
    uids = [resolve(box.append(raw, frozenset(), None, None)).uid for raw in raws]
    resolve(box.copy(uids[:5], "Other", None))
    before = answers(box)
    assert before["THREAD"].count(b"(") > 5
    old = b"MI1\n" + store.dumps(parse_message(raws[0]))[len(store.MARKER) :]

    def make_version_12(tx: Tx) -> None:
        _undo_version_13(tx)
        tx.execute(
            "UPDATE message_info SET info = ? WHERE message_id ="
            " (SELECT message_id FROM mail WHERE mailbox_id = ? AND uid = ?)",
            (old, box.id, uids[0]),
        )

    resolve(backend.db.run(make_version_12, write=True))
    resolve(backend.stop())
    with pytest.raises(BackendError, match="mailserv db upgrade"):
        resolve(FACTORY.build({"url": url}, str(tmp_path), reactor).start())
    monkeypatch.setattr(sortkeys, "FILL_BATCH", 7)
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(13, schema.LATEST + 1))
    db.close()

    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert answers(box) == before
    assert query(backend, "SELECT count(*) FROM message_keys") == query(
        backend, "SELECT count(*) FROM messages"
    )
    resolve(backend.stop())


def test_keys_follow_the_content_rows(url: str, tmp_path: Path) -> None:  # noqa: F811
    """APPEND writes a new message's keys once (a copy shares them), the last EXPUNGE of
    a message takes them away; sort_keys skips UIDs that are gone."""
    backend = started(url, tmp_path)
    account = resolve(backend.account("alice"))
    resolve(account.create("Other"))
    box = resolve(account.open("INBOX"))
    raws = corpus(3)
    uids = [resolve(box.append(raw, frozenset(), None, None)).uid for raw in raws]
    resolve(box.append(raws[0], frozenset(), None, None))  # the same content again
    resolve(box.copy(uids[:2], "Other", None))
    assert query(backend, "SELECT count(*) FROM message_keys") == [(len(raws),)]
    resolve(box.store(uids[2:], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    assert query(backend, "SELECT count(*) FROM message_keys") == [(2,)]  # Other's copies
    keys = resolve(box.sort_keys([*uids, uids[-1] + 1, 999], ["SUBJECT"]))
    assert list(keys.uids) == [*uids[:2], uids[-1] + 1]
    assert list(keys.columns["SUBJECT"]) == ["HELLO", "GONE", "HELLO"]
    resolve(backend.stop())


def test_a_message_without_its_keys_row_is_sorted_from_its_info(
    url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Should a keys row be missing, the message is neither left out nor sorted by
    wrong keys: they are derived from its stored info for that answer."""
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    for raw in corpus(12):
        resolve(box.append(raw, frozenset(), None, None))
    before = answers(box)

    def lose_keys(tx: Tx) -> None:
        tx.execute("DELETE FROM message_keys WHERE message_id IN (SELECT message_id FROM mail)")

    resolve(backend.db.run(lose_keys, write=True))
    assert query(backend, "SELECT count(*) FROM message_keys") == [(0,)]
    assert answers(box) == before
    resolve(backend.stop())


def test_no_messages(url: str, tmp_path: Path) -> None:  # noqa: F811
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    keys = resolve(box.sort_keys([], SORT_KEYS))
    assert list(keys.uids) == [] and all(list(keys.columns[n]) == [] for n in SORT_KEYS)
    assert list(resolve(box.sort_keys([1, 2], ["DATE"])).uids) == []
    resolve(backend.stop())
