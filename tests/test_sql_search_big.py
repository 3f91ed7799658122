"""Big SEARCH answers in SQL (``search._by_bounds``, ``search._by_others``): while a
session's UIDs are every message of the mailbox, a key most messages match is answered as
the mailbox less the few rows it does not match, or from the mailbox's first and last
internal days; checked against the engine's evaluator, on SQLite and PostgreSQL, and by the
statements they run (no string of every UID)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_sql_backend import ATOMS, _fill, _program, _random_query, message, resolve, started

from mailserv.backends.sql import SqlBackend, search
from mailserv.backends.sql.tx import Tx
from mailserv.interfaces import Narrowed, StoreMode
from mailserv.search import InternalSince, Not, SearchProgram
from mailserv.search.binding import bind
from mailserv.search.evaluate import SearchContext, evaluate

BIG_KEYS = [
    "ALL", "SINCE 1-Jan-2000", "SINCE 1-Jan-2030", "BEFORE 1-Jan-2030", "BEFORE 1-Jan-2000",
    "ON 1-Jan-2021", "SINCE 3-Jan-2021", "BEFORE 3-Jan-2021", "LARGER 1", "LARGER 300",
    "SMALLER 10000", "NOT 1:2", "NOT UID 4", "NOT FLAGGED", "NOT DELETED", "NOT SEEN",
    "NOT FROM alice", "NOT SENTSINCE 1-Jan-2000", "NOT SINCE 1-Jan-2000", "NOT ALL",
    "NOT (SINCE 1-Feb-2021 FLAGGED)", "NOT OR FLAGGED SEEN",
]  # fmt: skip


_NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    import pgcluster  # type: ignore[import-not-found]  # tests/

    url = f"sqlite://{tmp_path}/mail.db" if request.param == "sqlite" else pgcluster.database_url()
    built = started(url, tmp_path)
    yield built
    resolve(built.stop())


def _expected(box: Any, view: list[int], program: SearchProgram) -> list[int]:
    metas = resolve(box.fetch(view))
    contents = {uid: resolve(box.content(uid)) for uid in view if uid in {m.uid for m in metas}}

    async def content(uid: int) -> bytes:
        return contents[uid]

    found: list[int] = resolve(evaluate(program, metas, SearchContext(view, frozenset(), content)))
    return found


@pytest.mark.parametrize("part", [1, 4, search.OTHERS_PART])
def test_whole_mailbox_answers_match_the_engine(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch, part: int
) -> None:
    """``part`` 1: the others are read whatever their number (every such answer made as the
    mailbox less them); the default: most fall back to reading the matches."""
    monkeypatch.setattr(search, "OTHERS_PART", part)
    rng = random.Random(11)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    _fill(box, rng, 40)
    every = list(resolve(box.uids()))
    gone = [every[3], every[20], every[-1]]  # gaps, and the highest UID
    resolve(box.store(gone, StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    whole = [uid for uid in every if uid not in gone]
    texts = ATOMS + BIG_KEYS + [_random_query(rng) for _ in range(60)]
    queries = [(text, _program(text)) for text in texts]
    for name, moment in [("YOUNGER", datetime(2000, 1, 1, tzinfo=UTC)), ("OLDER", _NOW)]:
        since = InternalSince(moment)  # RFC 5032 (an extension's keys: not parsed here)
        queries.append((name, SearchProgram(since if name == "YOUNGER" else Not(since))))
    views = [whole, whole[1:], whole[:-1], every]  # the whole mailbox, and not
    for view in views:
        for text, program in queries:
            bound = SearchProgram(bind(program.key, view, frozenset()), program.charset)
            got = resolve(box.search(bound, view))
            if got is None:
                continue
            expected = _expected(box, view, bound)
            if isinstance(got, Narrowed):  # HEADER of another field: a superset
                assert set(expected) <= set(got.uids), (text, view == whole)
                got = _expected(box, list(got.uids), bound)
            assert got == expected, (text, view == whole)


class _Recording:
    """Stands for a Tx in ``search._matching``: runs the statements, and notes them."""

    def __init__(self, tx: Tx) -> None:
        self.dialect = tx.dialect
        self.tx = tx
        self.statements: list[str] = []

    def one(self, sql: str, params: Any = ()) -> Any:
        self.statements.append(sql)
        return self.tx.one(sql, params)

    def scalar(self, sql: str, params: Any = ()) -> Any:
        self.statements.append(sql)
        return self.tx.scalar(sql, params)


def _run(backend: SqlBackend, box: Any, text: str, uids: list[int]) -> tuple[list[int], list[str]]:
    clause = search.translate(_program(text), backend.db.dialect.find, uids)
    assert clause is not None

    def recorded(tx: Tx) -> tuple[list[int], list[str]]:
        state = search._state(tx, box.id)
        rec = _Recording(tx)
        found, _ = search._matching(rec, box.id, clause, uids, search._whole(state, uids))  # type: ignore[arg-type]
        return found, rec.statements

    result: tuple[list[int], list[str]] = resolve(backend.db.run(recorded))
    return result


def test_big_answers_read_only_the_rows_left_out(backend: SqlBackend) -> None:
    """SINCE a day before every message, ALL, LARGER than all but one, NOT of two: no
    statement makes a string of the matches (the rows left out, if any, are read); a key
    matching about half (more left out than OTHERS_PART allows) reads its matches."""
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    when = datetime(2021, 3, 1, 12, tzinfo=UTC)
    small = b"From: a@b.org\r\nSubject: s\r\n\r\nx\r\n"
    raws = [small] + [message(n) for n in range(1, 40)]
    uids = [
        resolve(box.append(raw, frozenset(), when + timedelta(days=n // 20), None)).uid
        for n, raw in enumerate(raws)
    ]
    size = len(raws[1])
    cases = {
        "SINCE 1-Jan-2000": (uids, 1),
        "SINCE 1-Mar-2021": (uids, 1),
        "ON 1-Feb-2021": ([], 1),
        "BEFORE 1-Jan-2000": ([], 1),
        "ALL": (uids, 0),
        f"LARGER {len(small)}": (uids[1:], 1),
        "NOT UID 1:2": (uids[2:], 1),
        f"SMALLER {size}": ([uids[0]], 1),  # the others are many: the matches are read
    }
    for text, (expected, statements) in cases.items():
        found, ran = _run(backend, box, text, uids)
        assert found == expected, text
        reads = [sql for sql in ran if "concat" in sql or "string_agg" in sql]
        if text.startswith("SMALLER"):
            assert "NOT (" in reads[0] and "NOT (" not in reads[-1], ran
            continue
        assert len(ran) == statements, (text, ran)
        assert all("LIMIT" in sql for sql in reads), (text, ran)  # only the others
    # A session that does not see the last message: the matches are read.
    found, ran = _run(backend, box, "NOT UID 1:2", uids[:-1])
    assert found == uids[2:-1] and not any("LIMIT" in sql for sql in ran)
