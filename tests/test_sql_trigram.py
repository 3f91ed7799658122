"""SEARCH FROM/TO/CC/BCC/SUBJECT on PostgreSQL from the trigram index of schema 14.

The index changes where the rows come from, never the answer: random programs over
addresses and subjects holding ``%``, ``_``, ``\\``, quotes and non-ASCII text (``ß``,
dotted ``İ``, final sigma, RFC 2047 words) give the engine's scan's answer with the index
(``LIKE`` with escapes) and with the row-by-row test (``strpos()``).  EXPLAIN on a filled
table shows the index read for needles of three characters and more, and not for shorter
ones.  Migration 14: a version 13 store upgrades and gains the index; a role that may not
create the extension still upgrades, with one warning, and searches by scan; once a
superuser has created the extension, the statements the warning names (or migration 14
run again) index the store.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgcluster
import psycopg
import pytest
from test_sql_backend import _program, _undo_version_14, query, resolve, started
from test_sql_fulltext import fill, literal
from twisted.logger import capturedLogs, formatEvent

from mailserv.backends.sql import SqlBackend, fulltext, schema, search
from mailserv.backends.sql.db import InlineDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.backends.sql.tx import Tx
from mailserv.message.parse import parse_message
from mailserv.search import SearchProgram
from mailserv.search.binding import bind
from mailserv.search.evaluate import SearchContext, evaluate

WORDS = [
    "Straße", "STRASSE", "İstanbul", "ΣΊΣΥΦΟΣ", "σίσυφος", "100%", "50_50", "a\\b",
    '"quoted"', "zebra", "budget", "Budget review", "naïve café", "日本語テキスト",
    "x", "ab", "o_o", "%_%", "percent%sign", "under_score", "back\\slash", "Ünïcödé",
]  # fmt: skip
NAMES = ["Jürgen Groß", "O'Brien", "100% Sure", "snake_case", "Back\\Slash", "Ann", "Zoë"]


def _address(rng: random.Random, n: int) -> str:
    local = rng.choice(["user", "under_score", "pct", "jürgen", "list"]) + str(n % 13)
    return f"{rng.choice(NAMES)} <{local}@{rng.choice(['example.org', 'ex_ample.net'])}>"


def corpus(rng: random.Random, count: int = 60) -> list[bytes]:
    out = []
    for n in range(count):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 5)))
        subject = words
        if n % 4 == 1:  # an RFC 2047 encoded word
            subject = "=?utf-8?Q?" + "".join(f"={b:02X}" for b in words.encode()) + "?="
        head = [
            f"From: {_address(rng, n)}",
            f"To: {_address(rng, n + 1)}, {_address(rng, n + 2)}",
            f"Subject: {subject}",
        ]
        if n % 3 == 0:
            head.append(f"Cc: {_address(rng, n + 3)}")
        if n % 5 == 0:
            head.append(f"Bcc: {_address(rng, n + 4)}")
        out.append(("\r\n".join(head) + f"\r\n\r\nBody {n}.\r\n").encode())
    return out


FIELDS = ["FROM", "TO", "CC", "BCC", "SUBJECT", "HEADER From", "HEADER Subject", "HEADER To"]


def needles(rng: random.Random, raws: list[bytes], count: int) -> list[str]:
    """Pieces of the messages' fields, case-changed at times, plus the LIKE wildcards."""
    texts = []
    for raw in raws:
        info = parse_message(raw)
        texts += [info.subject, info.from_, info.to, info.cc]
    out = ["%", "_", "\\", "%_", "a%b", "100%", "50_50", "a\\b", "\\slash", "_score",
           "pct%", "ex_ample", "exxample", "ss", "ß", "straße", "STRASSE", "groß", "zoë",
           "σίσυφοσ", "İstanbul", "i̇stanbul", "us", "@ex", "zz-no-such", '"quoted"']  # fmt: skip
    while len(out) < count:
        text = rng.choice(texts)
        if not text:
            continue
        start = rng.randrange(len(text))
        piece = text[start : start + rng.choice([2, 3, 4, 6, 9])]
        if "\n" not in piece and "\r" not in piece:
            out.append(rng.choice([piece, piece.upper(), piece.lower()]))
    return out


def programs(rng: random.Random, found: list[str], count: int) -> list[str]:
    others = ["SEEN", "UNSEEN", "LARGER 150", "UID 3:20", "ALL"]
    out = []
    for i in range(count):
        key = f"{rng.choice(FIELDS)} {literal(found[i % len(found)])}"
        roll = rng.random()
        if roll < 0.2:
            key = f"NOT {key}"
        elif roll < 0.35:
            key = f"OR {key} {rng.choice(others)}"
        elif roll < 0.5:
            key = f"{rng.choice(others)} {key}"
        elif roll < 0.6:
            key = f"OR {key} {rng.choice(FIELDS)} {literal(rng.choice(found))}"
        out.append("CHARSET UTF-8 " + key)
    return out


def compare(box: Any, texts: fulltext.TextSearch, seed: int, count: int = 300) -> int:
    """Every program's SQL answer equals the engine's; how many were answered by LIKE."""
    rng = random.Random(seed)
    view = resolve(box.uids())
    metas = resolve(box.fetch(view))
    contents = {uid: resolve(box.content(uid)) for uid in view}

    async def content(uid: int) -> bytes:
        return contents[uid]

    context = SearchContext(view, frozenset(), content)
    found = needles(rng, list(contents.values()), count)
    box._backend.text_search = texts
    liked = 0
    for text in programs(rng, found, count):
        program = _program(text)
        expected = resolve(evaluate(program, metas, context))
        bound = SearchProgram(bind(program.key, view, frozenset()), program.charset)
        clause = search.translate(bound, "strpos", view, texts)
        assert clause is not None, text
        liked += " LIKE " in clause.sql
        assert list(resolve(box.search(bound, view))) == expected, repr(text)
    return liked


@pytest.fixture
def url() -> str:
    return pgcluster.database_url()


@pytest.fixture
def backend(url: str, tmp_path: Path) -> Iterator[SqlBackend]:
    built = started(url, tmp_path)
    yield built
    resolve(built.stop())


def _indexes(backend: SqlBackend) -> set[str]:
    rows = query(backend, "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%trgm'")
    return {str(row[0]) for row in rows}


def test_field_search_by_the_index_equals_the_scan(backend: SqlBackend) -> None:
    rng = random.Random(3)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    fill(box, corpus(rng), rng)
    detected = backend.text_search
    assert detected is not None and detected.kind == fulltext.TRIGRAM
    assert detected.fields_indexed
    assert fulltext.FIELD_INDEX in _indexes(backend)
    assert compare(box, detected, seed=1) > 150
    scan = fulltext.TextSearch(True, fulltext.SCAN)  # no index: strpos() row by row
    assert not scan.fields_indexed
    assert compare(box, scan, seed=1) == 0


def test_like_escapes_the_wildcards() -> None:
    assert fulltext.like_pattern("100%") == "%100\\%%"
    assert fulltext.like_pattern("a_b\\c_def") == "%a\\_b\\\\c\\_def%"
    assert fulltext.like_pattern("a%b") is None  # no trigram to look up: a scan
    assert fulltext.like_pattern("ab") is None


class _Explain:
    """Stands for a Tx in ``search._matching``: the query it would run is explained."""

    def __init__(self, tx: Tx) -> None:
        self.dialect = tx.dialect
        self.tx = tx
        self.plans: list[str] = []

    def one(self, sql: str, params: Any = ()) -> Any:
        # The form decides whether the index can serve; the table's size whether the
        # planner prefers it (at 20k short rows a pass over them costs it little less; at
        # 100k bench messages it reads the index for a needle in 1% of them).
        self.tx.execute("SET LOCAL enable_seqscan = off")
        plan = self.tx.all("EXPLAIN " + sql, params)
        self.plans.append("\n".join(str(row[0]) for row in plan))
        return None, None


BIG = 20000


def _big_mailbox(tx: Tx, box_id: int) -> None:
    """``BIG`` messages straight into the tables (``user<n % 97>`` senders, subjects of
    common words with a rare one now and then), and the planner's statistics."""
    tx.execute(
        "INSERT INTO messages (id, digest, refs, size, sent_day, subject, from_addr, to_addr,"
        " cc_addr, bcc_addr) SELECT 1000000 + i, sha256(i::text::bytea), 1, 100, NULL,"
        " (ARRAY['budget', 'meeting', 'release', 'server'])[i % 4 + 1] || ' notes #' || i"
        " || CASE WHEN i % 500 = 0 THEN ' zebra' ELSE '' END"
        " || CASE WHEN i % 300 = 0 THEN ' 100% sure' ELSE '' END,"
        " 'user ' || i % 97 || ' <user' || i % 97 || '@example.org>' || chr(10) || 'user '"
        " || i % 97 || chr(10) || 'user' || i % 97 || '@example.org',"
        " 'list <list@example.net>', '', '' FROM generate_series(1, ?) AS i",
        (BIG,),
    )
    tx.execute(
        "INSERT INTO mail (mailbox_id, uid, message_id, modseq, flags, internaldate, tz,"
        " internal_day, size) SELECT ?, i, 1000000 + i, 1, '', 0, 0, 738000, 100"
        " FROM generate_series(1, ?) AS i",
        (box_id, BIG),
    )
    # The rows wait in the GIN index's pending list (fastupdate) until a VACUUM or a full
    # list merges them; the planner weighs reading that list, so merge them now.
    tx.execute(f"SELECT gin_clean_pending_list('{fulltext.FIELD_INDEX}')")
    tx.execute("ANALYZE messages")
    tx.execute("ANALYZE mail")


def test_explain_shows_the_index_read_for_three_characters_and_more(
    backend: SqlBackend,
) -> None:
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    resolve(backend.db.run(_big_mailbox, box.id, write=True))
    uids = list(range(1, BIG + 1))
    texts = backend.text_search
    assert texts is not None

    def plan(text: str) -> str:
        clause = search.translate(_program(text), "strpos", uids, texts)
        assert clause is not None

        def explain(tx: Tx) -> str:
            probe = _Explain(tx)
            search._matching(probe, box.id, clause, uids)  # type: ignore[arg-type]
            (only,) = probe.plans
            return only

        # a write transaction: a read runs in autocommit mode, where SET LOCAL does nothing
        return str(resolve(backend.db.run(explain, write=True)))

    for text in ("FROM user42", "SUBJECT zebra", "FROM user4@", "FROM USER42",
                 'SUBJECT "100%"', "HEADER From user42"):  # fmt: skip
        assert fulltext.FIELD_INDEX in plan(text), text
    for text in ("FROM us", "SUBJECT #1", "FROM r4"):  # no trigram: no index
        assert fulltext.FIELD_INDEX not in plan(text), text
    # The index's answers are the rows'.
    for text, expected in (
        ("FROM user42", [i for i in uids if i % 97 == 42]),
        ("SUBJECT zebra", [i for i in uids if i % 500 == 0]),
        ('SUBJECT "100%"', [i for i in uids if i % 300 == 0]),
        ('SUBJECT "100_"', []),
        ("FROM user4@", [i for i in uids if i % 97 == 4]),
        ("HEADER From user4", [i for i in uids if str(i % 97).startswith("4")]),
    ):
        assert list(resolve(box.search(_program(text), uids))) == expected, text


def test_upgrade_to_14_indexes_the_fields(url: str, tmp_path: Path) -> None:
    """A version 13 store gains the index, and searches give the scan's answers."""
    rng = random.Random(8)
    backend = started(url, tmp_path)
    fill(resolve(resolve(backend.account("alice")).open("INBOX")), corpus(rng, 30), rng)
    resolve(backend.db.run(_undo_version_14, write=True))
    assert fulltext.FIELD_INDEX not in _indexes(backend)
    resolve(backend.stop())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(14, schema.LATEST + 1))
    db.close()
    backend = started(url, tmp_path)
    assert fulltext.FIELD_INDEX in _indexes(backend)
    texts = backend.text_search
    assert texts is not None and texts.fields_indexed
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert compare(box, texts, seed=4, count=120) > 50
    resolve(backend.stop())


ROLE = "mailserv_plain"


def _plain_database() -> tuple[str, str]:
    """A new database the role ``ROLE`` may make tables in but not create extensions in
    (no CREATE on the database); (its URL as ``ROLE``, as the superuser)."""
    cluster = pgcluster.require()
    admin = cluster.database()
    name = admin.rsplit("/", 1)[-1]
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"GRANT CONNECT ON DATABASE {name} TO {ROLE}")
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {ROLE}")
    plain = f"postgresql://{ROLE}@127.0.0.1:{cluster.port}/{name}"
    return plain, admin


def _warnings(logged: list[Any]) -> list[str]:
    return [formatEvent(e) for e in logged if "pg_trgm" in formatEvent(e)]


def test_without_the_extension_the_migration_warns_and_searches_scan(tmp_path: Path) -> None:
    plain, admin = _plain_database()
    with capturedLogs() as logged:
        backend = started(plain, tmp_path)  # schema 1..14, as the role
    assert resolve(backend.db.run(schema.current_version)) == schema.LATEST
    texts = backend.text_search
    assert texts is not None and texts.kind == fulltext.SCAN and not texts.fields_indexed
    assert _indexes(backend) == set()
    (warning,) = [w for w in _warnings(logged) if "could not be created" in w]
    assert "permission denied" in warning and "CREATE EXTENSION pg_trgm" in warning
    rng = random.Random(9)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    fill(box, corpus(rng, 30), rng)
    assert compare(box, texts, seed=5, count=120) == 0

    # A version 13 store upgraded by the role: the same warning, once, and no index.
    resolve(backend.db.run(_undo_version_14, write=True))
    resolve(backend.stop())
    db = InlineDatabase(parse_url(plain, str(tmp_path)))
    with capturedLogs() as logged:
        assert db.call(schema.upgrade, write=True) == list(range(14, schema.LATEST + 1))
    assert len(_warnings(logged)) == 1
    backend = started(plain, tmp_path)
    assert _indexes(backend) == set()
    resolve(backend.stop())

    # A superuser creates the extension: migration 14 run again by the role makes every
    # trigram index (the texts' too, which schema 3 could not), and the searches use them.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_trgm")
    db.call(_undo_version_14, write=True)
    with capturedLogs() as logged:
        assert db.call(schema.upgrade, write=True) == list(range(14, schema.LATEST + 1))
    db.close()
    assert _warnings(logged) == []
    backend = started(plain, tmp_path)
    assert _indexes(backend) == {
        fulltext.FIELD_INDEX,
        "message_text_header_trgm",
        "message_text_body_trgm",
    }
    texts = backend.text_search
    assert texts is not None and texts.kind == fulltext.TRIGRAM
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert compare(box, texts, seed=6, count=120) > 50
    resolve(backend.stop())


def test_the_warned_statements_index_the_store(tmp_path: Path) -> None:
    """What the warning tells a superuser to run makes the indexes :func:`detect` wants."""
    plain, admin = _plain_database()
    resolve(started(plain, tmp_path).stop())
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_trgm")
        for statement in fulltext.trigram_statements():
            conn.execute(statement)  # type: ignore[arg-type]
    backend = started(plain, tmp_path)
    texts = backend.text_search
    assert texts is not None and texts.kind == fulltext.TRIGRAM
    resolve(backend.stop())


@pytest.mark.parametrize("field", ["FROM", "SUBJECT", "HEADER To"])
def test_a_needle_with_nul_is_the_engines(backend: SqlBackend, field: str) -> None:
    """PostgreSQL's texts hold no NUL and its driver refuses one in a parameter: a field
    needle with NUL is left to the engine (it was sent to the database, which failed)."""
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    uid = resolve(box.append(corpus(random.Random(1), 1)[0], frozenset(), None, None)).uid
    for needle in ("a\x00b", "\x00", "user\x00"):
        program = _program(f"{field} {literal(needle)}")
        assert search.translate(program, "strpos", [uid], backend.text_search) is None
        assert resolve(box.search(program, [uid])) is None
