"""The maildir index keeps each message's FETCH heads beside its record (``message.heads``,
:mod:`mailserv.message.heads`): after a start, FETCH of ENVELOPE, BODY, BODYSTRUCTURE and
whole-message sections reads them without decoding the record (a FETCH of 20 messages not
read since the start spent a third of its time there).  An index made before has the column
added; its rows answer from the record, as before.  File work inline (no reactor)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from test_maildir_backend import Store, resolve, store  # noqa: F401
from test_sql_heads import corpus, memory_answers, shown

from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.message import heads
from mailserv.message.store import Heads


def _column(store: Store) -> dict[int, bytes | None]:  # noqa: F811
    db = sqlite3.connect(store.root() / INDEX)
    try:
        return {int(uid): kept for uid, kept in db.execute("SELECT uid, heads FROM message")}
    finally:
        db.close()


def _filled(store: Store, raws: list[bytes]) -> Any:  # noqa: F811
    box = store.open()
    for raw in raws:
        resolve(box.append(raw, frozenset(), None, None))
    return box


def _fetched(store: Store) -> list[Any]:  # noqa: F811
    box = store.open()
    return shown(resolve(box.fetch(list(resolve(box.uids())))))


def test_heads_are_kept_as_mail_arrives_and_answer_after_a_start(store: Store) -> None:  # noqa: F811
    raws = corpus()
    _filled(store, raws)
    kept = _column(store)
    assert len(kept) == len(raws) and all(value is not None for value in kept.values())
    store.restart()
    assert _fetched(store) == memory_answers(raws)


def test_fetch_after_a_start_reads_the_column_not_the_record(store: Store) -> None:  # noqa: F811
    """A column changed behind the index's back shows in FETCH: the heads come from it."""
    raws = corpus()[:3]
    _filled(store, raws)
    store.stop()
    told = heads.dump(Heads(b"(NIL NIL)", b'("TEXT")', b'("TEXT" x)', (0, 1, 2)))
    db = sqlite3.connect(store.root() / INDEX)
    with db:
        db.execute("UPDATE message SET heads = ? WHERE uid = 2", (told,))
    db.close()
    store.start()
    found = {uid: (envelope, body, structure, top) for uid, envelope, body, structure, top in
             _fetched(store)}  # fmt: skip
    assert found[2] == (b"(NIL NIL)", b'("TEXT")', b'("TEXT" x)', (0, 1, 2))
    assert [found[1], found[3]] == [row[1:] for row in memory_answers(raws)[0::2]]


def test_an_index_made_before_gets_the_column_and_answers_as_before(tmp_path: Path) -> None:
    raws = corpus()
    made = Store(tmp_path)
    made.start()
    try:
        _filled(made, raws[:-2])
        made.stop()
        db = sqlite3.connect(made.root() / INDEX)
        with db:
            db.execute("ALTER TABLE message DROP COLUMN heads")
        db.close()
        made.start()
        box = made.open()
        kept = _column(made)
        assert set(kept.values()) == {None}  # the old rows keep reading their records
        for raw in raws[-2:]:
            resolve(box.append(raw, frozenset(), None, None))
        kept = _column(made)
        assert [kept[uid] is None for uid in sorted(kept)] == [True] * (len(raws) - 2) + [False] * 2
        made.restart()
        assert _fetched(made) == memory_answers(raws)
    finally:
        made.stop()
