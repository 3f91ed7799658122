"""SEARCH BODY and TEXT in SQL (``backends/sql/fulltext.py``) give exactly the engine's scan.

Random programs mixing BODY/TEXT with other keys run both through the SQL translation and
the engine's evaluator over a corpus of RFC 2047 headers, quoted-printable and base64 bodies,
attachments, non-ASCII text (``ß``, dotted ``İ``, final sigma), NUL bytes and an unknown
charset; needles are cut from the decoded texts (so they hit), short, case-changed, or hold
``%``, ``_``, ``\\`` and ``"``.  On SQLite (FTS5 trigram) and PostgreSQL (pg_trgm), and on
each with the row-by-row test its fallback uses.  Then schema 3's migration: an older store
is upgraded, BODY/TEXT are declined until the background backfill has passed a mailbox, and
answered after it.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgcluster
import pytest
import test_message_samples as samples
from test_sql_backend import _program, _undo_version_3, query, resolve, started

from mailserv.backends.sql import SqlBackend, fulltext, schema
from mailserv.backends.sql.backend import SqlBackend as SqlBackendClass
from mailserv.backends.sql.db import InlineDatabase
from mailserv.backends.sql.dialect import parse_url
from mailserv.message.parse import parse_message
from mailserv.message.text import body_text, header_text
from mailserv.search import SearchProgram
from mailserv.search.binding import bind
from mailserv.search.evaluate import SearchContext, evaluate


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/mail.db"
    return pgcluster.database_url()


@pytest.fixture
def backend(url: str, tmp_path: Path) -> Iterator[SqlBackend]:
    built = started(url, tmp_path)
    yield built
    resolve(built.stop())


def _qp(text: str) -> bytes:
    import quopri

    return quopri.encodestring(text.encode("utf-8"))


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


WORDS = [
    "Straße", "STRASSE", "İstanbul", "ΣΊΣΥΦΟΣ", "σίσυφος", "100%", "50_50", "a\\b",
    '"quoted"', "zebra", "Zebra crossing", "migration", "naïve café", "日本語テキスト",
    "x", "ab", "o_o", "%_%", "tab\there", "Ünïcödé",
]  # fmt: skip


def corpus(rng: random.Random) -> list[bytes]:
    """Fixed samples plus generated messages in every encoding the decoders handle."""
    out = [
        samples.PLAIN,
        samples.ALTERNATIVE,
        samples.ATTACHMENT,
        samples.NESTED,
        samples.ENCODED_WORDS,
        samples.EIGHT_BIT,
        samples.LF_ONLY,
        samples.NO_BODY,
        samples.BROKEN_BOUNDARY,
        samples.DIGEST,
    ]
    for n in range(40):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
        subject = rng.choice(
            [
                words,
                "=?utf-8?B?" + base64.b64encode(words.encode()).decode() + "?=",
                "=?iso-8859-1?Q?Stra=DFe_caf=E9?= 50_50",
                "=?utf-8?Q?" + "".join(f"={b:02X}" for b in words.encode()) + "?=",
            ]
        )
        kind = n % 5
        head = f"From: User {n} <u{n}@example.org>\r\nTo: t@example.org\r\nSubject: {subject}\r\n"
        if kind == 0:
            body = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + words.encode() + b"\r\n"
        elif kind == 1:
            body = (
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _qp(words)
            )
        elif kind == 2:
            body = (
                b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(words.encode()) + b"--b\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(b"zebra hidden") + b"--b--\r\n"
            )
        elif kind == 3:
            body = (
                b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nnul\x00byte "
                + words.encode("utf-8")
                + b" \xff\xfe\r\n"
            )
        else:
            body = (
                b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n"
                + words.encode("latin-1", "replace")
                + b"\r\n"
            )
        out.append(head.encode() + body)
    return out


def needles(rng: random.Random, raws: list[bytes], count: int) -> list[str]:
    """Substrings of the decoded texts, case-changed at times, plus misses and odd ones."""
    texts = []
    for raw in raws:
        info = parse_message(raw)
        for make in (header_text, body_text):
            try:
                texts.append(make(raw, info))
            except (ValueError, LookupError):
                pass
    out = ["", "x", "ab", "%", "_", "\\", "%_", "a%b", "100%", "50_50", '"', "zz-no-such",
           "ss", "ß", "SS", "\ufffd", "nul\x00byte", "\x00", "\n", ": ", "ject: "]  # fmt: skip
    while len(out) < count:
        text = rng.choice(texts)
        if not text:
            continue
        start = rng.randrange(len(text))
        piece = text[start : start + rng.choice([1, 2, 3, 4, 7, 12])]
        if not piece.isprintable() and piece.encode("utf-8", "replace") != piece.encode(
            "utf-8", "surrogatepass"
        ):
            continue  # a lone surrogate: no client can send it
        out.append(rng.choice([piece, piece.upper(), piece.lower(), piece.title()]))
    return out


def literal(value: str) -> str:
    data = value.encode("utf-8", "surrogateescape")
    return f"{{{len(data)}}}\r\n" + value


def programs(rng: random.Random, found: list[str], count: int) -> list[str]:
    others = ["SEEN", "UNSEEN", "FROM user", "SUBJECT zebra", "LARGER 300", "UID 3:20", "ALL"]
    out = []
    for i in range(count):
        key = f"{rng.choice(['BODY', 'TEXT'])} {literal(found[i % len(found)])}"
        roll = rng.random()
        if roll < 0.25:
            key = f"NOT {key}"
        elif roll < 0.45:
            key = f"OR {key} {rng.choice(others)}"
        elif roll < 0.65:
            key = f"{rng.choice(others)} {key}"
        elif roll < 0.75:
            other = f"{rng.choice(['BODY', 'TEXT'])} {literal(rng.choice(found))}"
            key = f"OR {key} NOT {other}"
        out.append("CHARSET UTF-8 " + key)
    return out


def compare(box: Any, texts: fulltext.TextSearch, seed: int, count: int = 250) -> int:
    """Every program's SQL answer equals the engine's; how many SQL answered."""
    rng = random.Random(seed)
    view = resolve(box.uids())
    metas = resolve(box.fetch(view))
    contents = {uid: resolve(box.content(uid)) for uid in view}

    async def content(uid: int) -> bytes:
        return contents[uid]

    recent: frozenset[int] = frozenset()
    context = SearchContext(view, recent, content)
    found = needles(rng, list(contents.values()), count)
    answered = 0
    for text in programs(rng, found, count):
        program = _program(text)
        expected = resolve(evaluate(program, metas, context))
        bound = SearchProgram(bind(program.key, view, recent), program.charset)
        box._backend.text_search = texts
        got = resolve(box.search(bound, view))
        if got is None:
            assert any(not fulltext.searchable(n) and n in text for n in found), text
            continue
        answered += 1
        assert got == expected, repr(text)
    return answered


def fill(box: Any, raws: list[bytes], rng: random.Random) -> None:
    for raw in raws:
        flags = frozenset({"\\Seen"}) if rng.random() < 0.5 else frozenset()
        resolve(box.append(raw, flags, None, None))


def test_sql_text_search_equals_the_scan(backend: SqlBackend) -> None:
    rng = random.Random(11)
    box = resolve(resolve(backend.account("alice")).open("INBOX"))
    fill(box, corpus(rng), rng)
    detected = backend.text_search
    assert detected is not None
    assert detected.kind == (fulltext.TRIGRAM if backend.dialect.is_postgres else fulltext.FTS5)
    assert compare(box, detected, seed=1) > 200
    # The row-by-row test, what a store without the index (or a short needle) uses.
    scan = fulltext.TextSearch(backend.dialect.is_postgres, fulltext.SCAN)
    assert compare(box, scan, seed=2) > 200


def test_copy_shares_the_texts_and_expunge_drops_them(backend: SqlBackend) -> None:
    account = resolve(backend.account("alice"))
    resolve(account.create("Archive"))
    box = resolve(account.open("INBOX"))
    uid = resolve(box.append(samples.ENCODED_WORDS, frozenset({"\\Deleted"}), None, None)).uid
    archive = resolve(account.open("Archive"))
    resolve(box.copy([uid], "Archive", None))
    assert len(query(backend, "SELECT header FROM message_text")) == 1
    copied = resolve(archive.uids())
    assert list(resolve(archive.search(_program("TEXT zoë"), copied))) == list(copied)
    resolve(box.expunge(None, None))
    assert len(query(backend, "SELECT header FROM message_text")) == 1  # still in Archive
    resolve(archive.store(copied, samples_mode(), frozenset({"\\Deleted"}), None))
    resolve(archive.expunge(None, None))
    assert query(backend, "SELECT header FROM message_text") == []


def samples_mode() -> Any:
    from mailserv.interfaces import StoreMode

    return StoreMode.ADD


def test_upgrade_to_3_backfills_in_the_background(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(5)
    raws = corpus(rng)[:25]
    backend = started(url, tmp_path)
    account = resolve(backend.account("alice"))
    box = resolve(account.open("INBOX"))
    fill(box, raws, rng)
    resolve(backend.db.run(_undo_version_3, write=True))  # a version 2 store
    resolve(backend.stop())
    db = InlineDatabase(parse_url(url, str(tmp_path)))
    assert db.call(schema.upgrade, write=True) == list(range(3, schema.LATEST + 1))
    db.close()

    async def later(self: SqlBackend) -> None:
        """The backfill has not run yet."""

    with monkeypatch.context() as patch:
        patch.setattr(SqlBackendClass, "backfill_texts", later)
        backend = started(url, tmp_path)
    account = resolve(backend.account("alice"))
    box = resolve(account.open("INBOX"))
    view = resolve(box.uids())
    assert resolve(box.search(_program("BODY zebra"), view)) is None  # the engine scans
    assert resolve(box.search(_program("FROM user"), view)) is not None
    resolve(account.create("Fresh"))  # mail arriving now brings its texts: answered
    fresh = resolve(account.open("Fresh"))
    raw = b"Subject: new\r\n\r\nlunch at noon\r\n"
    new = resolve(fresh.append(raw, frozenset(), None, None)).uid
    assert resolve(fresh.search(_program("BODY lunch"), [new])) == [new]

    monkeypatch.setattr(fulltext, "BACKFILL_BATCH", 4)
    resolve(backend.backfill_texts())
    next_id, end_id = query(backend, "SELECT next_id, end_id FROM text_backfill")[0]
    assert next_id >= end_id > 1  # done
    assert len(query(backend, "SELECT header FROM message_text")) == len(set(raws)) + 1
    texts = backend.text_search
    assert texts is not None
    assert compare(box, texts, seed=3, count=80) > 60
    resolve(backend.stop())
