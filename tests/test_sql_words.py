"""TEXT and BODY through the SQL store's word index (``fulltext.py``, migration 5).

The cases of tests/test_maildir_words.py on SQLite (FTS5 ``unicode61``): a needle inside a
longer word or across words, case, non-ASCII text, diacritics (not folded), punctuation,
needles of one or two characters, a word in the header but not in the body, a word longer
than the index keeps, expunge, and a store made before the word index (filled in the
background, the trigram index answering meanwhile).  PostgreSQL has no word index: its
migration 5 makes nothing and its trigram path answers the same cases.  The engine's scan
stays the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgcluster
import pytest
from test_maildir_search_index import agree
from test_maildir_words import MESSAGES, NEEDLES, _append
from test_sql_backend import _undo_version_4, query, resolve, started

from mailserv.backends.sql import SqlBackend, fulltext, schema, search
from mailserv.backends.sql.backend import SqlBackend as SqlBackendClass
from mailserv.backends.sql.db import InlineDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.tx import Tx
from mailserv.interfaces import StoreMode
from mailserv.search import And, Contains, HasFlag, Not, SearchKey, SearchProgram, StringField
from mailserv.search.evaluate import SearchContext, evaluate


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/mail.db"


@pytest.fixture
def backend(url: str, tmp_path: Path) -> Iterator[SqlBackend]:
    built = started(url, tmp_path)
    yield built
    resolve(built.stop())


def _scan(box: Any, program: SearchProgram, view: list[int]) -> list[int]:
    metas = resolve(box.fetch(view))
    contents = {uid: resolve(box.content(uid)) for uid in view}

    async def content(uid: int) -> bytes:
        return contents[uid]

    return list(resolve(evaluate(program, metas, SearchContext(view, frozenset(), content))))


def _by_words(backend: SqlBackend, needle: str) -> bool:
    texts = backend.text_search
    assert texts is not None

    def words(tx: Tx) -> bool:
        return texts.words(tx, needle) is not None

    return bool(resolve(backend.db.run(words)))


def _check(backend: SqlBackend, box: Any, view: list[int]) -> int:
    """Every needle in TEXT and BODY as the scan answers; how many the word index answered."""
    return agree(box, view, NEEDLES, _scan, lambda folded: _by_words(backend, folded))[0]


def _intact(backend: SqlBackend) -> None:
    # FTS5's own check
    query(backend, "INSERT INTO words (words) VALUES ('integrity-check')", write=True)
    assert len(query(backend, "SELECT message_id FROM long_texts")) == 1


def test_word_index_answers_as_the_scan(backend: SqlBackend) -> None:
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    view = _append(box)
    assert _check(backend, box, view) > 40  # most needles went through the word index
    _intact(backend)


def test_a_word_only_in_the_header_is_not_found_by_body(backend: SqlBackend) -> None:
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    view = _append(box)
    quarterly = view[[subject for subject, _ in MESSAGES].index("quarterly")]
    text = resolve(box.search(SearchProgram(Contains(StringField.TEXT, "quarterly")), view))
    body = resolve(box.search(SearchProgram(Contains(StringField.BODY, "quarterly")), view))
    assert list(text) == [quarterly] and list(body) == []
    assert _by_words(backend, "quarterly")


def test_body_or_text_alone_starts_from_the_word_index(backend: SqlBackend) -> None:
    """BODY or TEXT alone (or alone in an AND) reads the word index's matches first and joins
    the mailbox's rows to them; beside other keys, under NOT, or with a needle the index
    does not answer, it stays a test of the rows (the answers are the scan's either way:
    the tests above)."""
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    view = _append(box)
    texts = backend.text_search
    assert texts is not None
    body = Contains(StringField.BODY, "Quarter")
    unseen = HasFlag("\\Seen", present=False)

    def driven(key: SearchKey) -> bool | None:
        def translate(tx: Tx) -> bool | None:
            clause = search.translate(SearchProgram(key), backend.db.dialect.find, view, texts, tx)
            return None if clause is None else clause.driver is not None

        return resolve(backend.db.run(translate))

    assert driven(body) and driven(Contains(StringField.TEXT, "quarterly"))
    assert driven(And((body,)))
    assert driven(And((body, unseen))) is False
    assert driven(Not(body)) is False
    assert driven(Contains(StringField.BODY, "qu")) is False  # too short for the index
    found = resolve(box.search(SearchProgram(Contains(StringField.TEXT, "quarterly")), view))
    assert len(found) == 1


def test_expunge_and_append_again_keep_the_word_index_right(backend: SqlBackend) -> None:
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    view = _append(box)
    resolve(box.store(view[::2], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    view = list(resolve(box.uids()))
    _check(backend, box, view)
    _append(box)  # the same contents again: new message rows
    assert _check(backend, box, list(resolve(box.uids()))) > 40
    _intact(backend)


def test_a_store_without_words_is_filled_and_answers_meanwhile(
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A version 4 store: migration 5 makes the tables, the texts already there are
    added in steps; until then the trigram index answers, right."""
    backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    view = _append(box)

    def undo_5(tx: Tx) -> None:
        _undo_version_4(tx)  # 5 then 4
        schema.MIGRATIONS[3].function(tx)  # type: ignore[misc] - 4 back
        tx.execute(f"UPDATE {schema.VERSION_TABLE} SET version = 4")

    resolve(backend.db.run(undo_5, write=True))
    resolve(backend.stop())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(5, schema.LATEST + 1))
    db.close()

    async def later(self: SqlBackend) -> None:
        """The backfill has not run yet."""

    with monkeypatch.context() as patch:
        patch.setattr(SqlBackendClass, "backfill_texts", later)
        backend = started(url, tmp_path)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert not resolve(backend.db.run(fulltext.words_ready))
    assert _check(backend, box, view) == 0  # the trigram index alone, as right
    steps = 0
    while resolve(backend.db.run(fulltext.backfill_words, 2, write=True)):
        steps += 1
    assert steps >= 3 and resolve(backend.db.run(fulltext.words_ready))
    assert _check(backend, box, view) > 40
    _intact(backend)
    resolve(backend.stop())


def test_postgresql_has_no_word_index_and_answers_as_the_scan(tmp_path: Path) -> None:
    """Migration 5 makes nothing on PostgreSQL: no tables, nothing written per message,
    and every needle goes the trigram path, as the scan answers."""
    backend = started(pgcluster.database_url(), tmp_path)
    try:
        box = resolve(resolve(backend.account("alice")).open("INBOX"))
        view = _append(box)
        assert _check(backend, box, view) == 0
        names = ("message_words", "text_terms", "long_texts", "word_backfill")
        marks = ", ".join("?" * len(names))
        found = query(
            backend, f"SELECT tablename FROM pg_tables WHERE tablename IN ({marks})", names
        )
        assert found == []
        assert query(backend, f"SELECT version FROM {schema.VERSION_TABLE}") == [(schema.LATEST,)]
    finally:
        resolve(backend.stop())
