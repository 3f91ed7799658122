"""Each message's FETCH heads kept beside its record by the SQL backend (schema 15,
``heads``): new mail answers ENVELOPE, BODY, BODYSTRUCTURE and whole-message offsets from
the kept bytes, the same as the memory backend; a version 14 store upgrades in place and its
messages answer as the parse does; a row without heads (an older frontend's) reads the
record.  SQLite and PostgreSQL, transactions inline (no reactor)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from test_sql_backend import _undo_version_15, query, resolve, started, url  # noqa: F401
from twisted.internet import reactor

from bench import messages as samples
from mailserv.backends import memory
from mailserv.backends.sql import SqlBackendFactory, inline_database, schema
from mailserv.backends.sql.db import InlineDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.tx import Tx
from mailserv.errors import BackendError
from mailserv.message import heads, store
from mailserv.message.lazyinfo import LazyInfo
from mailserv.message.parse import parse_message
from mailserv.testing.contract import SORT_SAMPLES

FACTORY = SqlBackendFactory(database=inline_database)


def corpus() -> list[bytes]:
    rng = random.Random(15)
    return [
        samples.plain(),
        samples.alternative(),
        samples.with_attachment(),
        samples.rfc2047(),
        samples.nested(),
        samples.eight_bit_headers(),
        b"From: a@example.org\r\nSubject: headers only\r\n",
        *SORT_SAMPLES,
        *(samples.realistic(i, rng) for i in range(12)),
    ]


def shown(metas: Any) -> list[tuple[int, bytes, bytes, bytes, tuple[int, int, int]]]:
    """What FETCH ENVELOPE, BODY, BODYSTRUCTURE and whole-message sections read."""
    return [
        (m.uid, m.info.envelope, m.info.body, m.info.bodystructure, m.info.top()) for m in metas
    ]


def memory_answers(raws: list[bytes]) -> list[Any]:
    backend = memory.factory.build({}, "/nonexistent", reactor)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    for raw in raws:
        resolve(box.append(raw, frozenset(), None, None))
    return shown(resolve(box.fetch(resolve(box.uids()))))


def heads_column(backend: Any, box: Any) -> list[Any]:
    rows = query(
        backend,
        "SELECT m.uid, i.heads FROM mail m JOIN message_info i ON i.message_id = m.message_id"
        " WHERE m.mailbox_id = ? ORDER BY m.uid",
        (box.id,),
    )
    return [(int(uid), None if kept is None else bytes(kept)) for uid, kept in rows]


def test_new_mail_answers_from_the_kept_heads(
    url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """APPEND keeps the heads of the parse; FETCH answers from them, never decoding the
    record (its reader fails here), the same as the memory backend."""
    raws = corpus()
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    uids = [resolve(box.append(raw, frozenset(), None, None)).uid for raw in raws]
    kept = heads_column(backend, box)
    assert kept == [
        (uid, heads.of_info(parse_message(raw))) for uid, raw in zip(uids, raws, strict=True)
    ]

    def refuse(data: bytes) -> Any:
        raise AssertionError("FETCH decoded a record")

    with monkeypatch.context() as patch:
        patch.setattr(store, "heads_of", refuse)
        patch.setattr(store, "loads", refuse)
        metas = resolve(box.fetch(uids))
        assert all(isinstance(m.info, LazyInfo) for m in metas)
        assert shown(metas) == memory_answers(raws)
    resolve(backend.stop())


def test_fetch_reads_the_column(url: str, tmp_path: Path) -> None:  # noqa: F811
    """The bytes FETCH sends are the column's (changed behind the backend's back here), and
    a row without them (as a frontend older than schema 15 writes it) reads its record."""
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    raws = corpus()[:3]
    uids = [resolve(box.append(raw, frozenset(), None, None)).uid for raw in raws]
    planted = store.Heads(b'(NIL "planted" NIL NIL NIL NIL NIL NIL NIL NIL)', b"B", b"S", (0, 1, 2))

    def rewrite(tx: Tx) -> None:
        ids = [
            tx.scalar("SELECT message_id FROM mail WHERE mailbox_id = ? AND uid = ?", (box.id, u))
            for u in uids
        ]
        tx.execute(
            "UPDATE message_info SET heads = ? WHERE message_id = ?", (heads.dump(planted), ids[0])
        )
        tx.execute("UPDATE message_info SET heads = NULL WHERE message_id = ?", (ids[1],))
        tx.execute("UPDATE message_info SET heads = ? WHERE message_id = ?", (b"HD9\nxx", ids[2]))

    resolve(backend.db.run(rewrite, write=True))
    first, second, third = shown(resolve(box.fetch(uids)))
    assert first == (uids[0], *planted)
    assert [second, third] == memory_answers(raws)[1:]
    resolve(backend.stop())


def test_heads_layout_round_trips_and_refuses_what_it_does_not_read() -> None:
    for raw in corpus():
        info = parse_message(raw)
        found = heads.load(heads.of_info(info))
        assert found == (info.envelope, info.body, info.bodystructure, info.top())
        assert found == store.heads_of(store.dumps(info))
    whole = heads.of_info(parse_message(corpus()[0]))
    for bad in (None, b"", b"HD1\n", whole[:-1], whole + b"x", b"MI6\n" + whole[4:]):
        assert heads.load(bad) is None


def test_upgrade_to_15_keeps_every_message_answering_as_before(
    url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A version 14 store (no heads column; one message's record in a layout this version
    parses again) is refused until ``db upgrade``, which fills every message's heads in
    batches; FETCH then answers as the parse does (and as before), from the column."""
    raws = corpus()
    backend = started(url, tmp_path)
    account = resolve(backend.account("alice"))
    resolve(account.create("Other"))
    box = resolve(account.open("INBOX"))
    uids = [resolve(box.append(raw, frozenset(), None, None)).uid for raw in raws]
    resolve(box.copy(uids[:4], "Other", None))
    expected = memory_answers(raws)
    assert shown(resolve(box.fetch(uids))) == expected
    old = b"MI1\n" + store.dumps(parse_message(raws[1]))[len(store.MARKER) :]

    def make_version_14(tx: Tx) -> None:
        _undo_version_15(tx)
        tx.execute(
            "UPDATE message_info SET info = ? WHERE message_id ="
            " (SELECT message_id FROM mail WHERE mailbox_id = ? AND uid = ?)",
            (old, box.id, uids[1]),
        )

    resolve(backend.db.run(make_version_14, write=True))
    resolve(backend.stop())
    with pytest.raises(BackendError, match="mailserv db upgrade"):
        resolve(FACTORY.build({"url": url}, str(tmp_path), reactor).start())
    monkeypatch.setattr(schema, "HEADS_BATCH", 4)
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(15, schema.LATEST + 1))
    db.close()

    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    kept = dict(heads_column(backend, box))
    assert kept == {
        uid: heads.of_info(parse_message(raw)) for uid, raw in zip(uids, raws, strict=True)
    }
    assert query(backend, "SELECT count(*) FROM message_info WHERE heads IS NULL") == [(0,)]
    with monkeypatch.context() as patch:
        patch.setattr(store, "heads_of", lambda data: pytest.fail("decoded a record"))
        metas = resolve(box.fetch(uids))
    assert shown(metas) == expected
    other = resolve(resolve(backend.account("alice")).open("Other"))
    assert [row[1:] for row in shown(resolve(other.fetch(resolve(other.uids()))))] == [
        row[1:] for row in expected[:4]
    ]
    resolve(backend.stop())
