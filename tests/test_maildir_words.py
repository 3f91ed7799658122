"""TEXT and BODY through the maildir index's word index (``mailserv.backends.maildir.words``).

A needle that some indexed word contains is answered by an OR of those words; the scan
(``mailserv.search.evaluate``) stays the reference.  The cases are the ones where a word
index could go wrong: a needle inside a longer word or across words, case, non-ASCII
text, diacritics (not folded), punctuation, needles of one or two characters, a word in
the header but not in the body, a word longer than FTS5 keeps, and an index made before
the word index existed (filled in the background, the trigram index answering meanwhile).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from test_maildir_backend import Store, resolve, store  # noqa: F401 - the fixture
from test_maildir_search_index import _scan, agree, casefold_fixed

from mailserv.backends.kit import words as vocabulary
from mailserv.backends.maildir import words
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.search import Contains, SearchProgram, StringField

LONG_WORD = "x" * 40_000 + "okapiword"
"""Past the 32 KB at which FTS5 cuts a token."""

MESSAGES = [
    ("Migration plan", "The migration starts Monday; MIGRATIONS follow."),
    ("Zebra crossing", "nothing about animals here"),
    ("Stra\u00dfe in K\u00f6ln", "Caf\u00e9 au lait, \u00e9t\u00e9 \u00e0 Paris; naive cafe"),
    (
        "\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3",
        "\u0398\u03ac\u03bb\u03b1\u03c3\u03c3\u03b1 and zebra-secret",
    ),
    ("hello", "e-mail to real@b.org, version 2.0 of release42"),
    ("quarterly", "header-only words are not in this body"),
    ("long", "a word FTS5 would cut: " + LONG_WORD),
    ("x", "mixedCase WordsHere and Unterf\u00fchrung, okapiword"),
]
NEEDLES = [
    "migration", "MIGRATION", "igrat", "igration", "migrations", "ration", "monday",
    "zebra", "animals", "crossing", "strasse", "stra\u00dfe", "k\u00f6ln", "K\u00d6LN", "caf\u00e9",
    "cafe", "\u00e9t\u00e9", "ete", "naive", "\u03c3\u03af\u03c3\u03c5\u03c6\u03bf\u03c3",
    "\u03b8\u03ac\u03bb\u03b1\u03c3\u03c3\u03b1", "\u03b8\u03b1\u03bb", "zebra-secret",
    "real@b.org", "b.org", "2.0", "release42", "ase4", "e42", "quarterly", "header",
    "okapiword", "xokapi", "okapi", "mixedcase", "dcasew", "f\u00fchr", "fuhr", "mi", "z",
    "42", "\u00e9", "ete ", "plan", "lait, ", "nothing", "zzz", "unterf\u00fchrung",
]  # fmt: skip


def _append(box: Any) -> list[int]:
    for subject, body in MESSAGES:
        raw = (
            f"Subject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
        ).encode()
        resolve(box.append(raw, frozenset(), datetime(2021, 1, 1, tzinfo=UTC), None))
    return list(resolve(box.uids()))


def _flush(box: Any) -> None:
    while box.disk.flush_texts(1000):
        pass


def _check(box: Any, view: list[int]) -> tuple[int, int]:
    with box.disk.index.reading() as db:
        return agree(
            box,
            view,
            NEEDLES,
            _scan,
            lambda folded: words.ready(db) and bool(vocabulary.terms(db, folded)),
        )


def test_word_index_answers_as_the_scan(store: Store) -> None:  # noqa: F811 - the fixture
    box = store.open()
    view = _append(box)
    for flushed in (False, True):
        if flushed:
            _flush(box)
        by_words, found = _check(box, view)
        assert found > 50
    assert by_words > 40  # most needles went through the word index
    db = sqlite3.connect(store.root() / INDEX)
    try:
        assert db.execute("SELECT count(*) FROM long_texts").fetchone() == (1,)
        db.execute("INSERT INTO words (words) VALUES ('integrity-check')")  # raises if not
    finally:
        db.close()


def test_a_word_only_in_the_header_is_not_found_by_body(store: Store) -> None:  # noqa: F811 - the fixture
    box = store.open()
    view = _append(box)
    _flush(box)
    quarterly = view[MESSAGES.index(("quarterly", MESSAGES[5][1]))]
    text = resolve(box.search(SearchProgram(Contains(StringField.TEXT, "quarterly")), view))
    body = resolve(box.search(SearchProgram(Contains(StringField.BODY, "quarterly")), view))
    assert list(text) == [quarterly] and list(body) == []
    assert vocabulary.terms(box.disk.index.db, "quarterly") == ["quarterly"]


def test_expunge_and_replace_keep_the_word_index_right(store: Store) -> None:  # noqa: F811 - the fixture
    box = store.open()
    view = _append(box)
    _flush(box)
    resolve(box.expunge(view[::2], None))
    view = list(resolve(box.uids()))
    _check(box, view)
    _append(box)
    _flush(box)
    by_words, _ = _check(box, list(resolve(box.uids())))
    assert by_words > 40
    db = sqlite3.connect(store.root() / INDEX)
    try:
        db.execute("INSERT INTO words (words) VALUES ('integrity-check')")
    finally:
        db.close()


def test_an_index_without_words_is_filled_and_answers_meanwhile(store: Store) -> None:  # noqa: F811 - the fixture
    """An index from before the word index: the tables are made at open, the texts
    already there are added in steps; until then the trigram index answers, right."""
    box = store.open()
    view = _append(box)
    _flush(box)
    store.stop()
    db = sqlite3.connect(store.root() / INDEX)
    for table in ("words", "terms", "term_grams", "fresh_terms", "fresh", "long_texts"):
        db.execute(f"DROP TABLE {table}")
    db.commit()
    db.close()
    store.start()
    box = store.open()
    index = box.disk.index
    assert not words.ready(index.db)
    assert _check(box, view)[0] == 0  # the trigram index alone, as right
    steps = 0
    while words.backfill(index.db, 2):
        steps += 1
    assert steps >= 3 and words.ready(index.db)
    assert _check(box, view)[0] > 40
    db = sqlite3.connect(store.root() / INDEX)
    try:
        db.execute("INSERT INTO words (words) VALUES ('integrity-check')")
        assert db.execute("SELECT count(*) FROM long_texts").fetchone() == (1,)
    finally:
        db.close()


def test_unicode61_folding_is_the_identity_on_casefolded_text() -> None:
    """What the word index relies on (as ``search.exact`` for the trigram index): the
    ``unicode61`` tokenizer without diacritics removal maps each character that
    ``str.casefold`` leaves as it is to itself, or is a separator (U+FFFE and U+FFFF are)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(t, tokenize='unicode61 remove_diacritics 0')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'instance')")
    chars = casefold_fixed()
    db.executemany("INSERT INTO f (rowid, t) VALUES (?, ?)", [(ord(c), f"a{c}a") for c in chars])
    tokens: dict[str, list[str]] = {}
    for term, doc in db.execute("SELECT term, doc FROM v"):
        tokens.setdefault(chr(doc), []).append(term)
    # A separator splits the text in two words "a"; any other character stays as it is.
    changed = {c: t for c, t in tokens.items() if t not in ([f"a{c}a"], ["a", "a"])}
    assert not changed
    assert sum(t == [f"a{c}a"] for c, t in tokens.items()) > 1000
