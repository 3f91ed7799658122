"""SEARCH from the maildir index gives the engine's scan's answers, whoever put the mail there.

The scan (``mailserv.search.evaluate`` over ``fetch()`` and ``content()``) is the
reference: random programs over realistic messages (RFC 2047 headers, quoted-printable and
base64 bodies, non-ASCII text, NULs and lone surrogates in decoded text, short needles) are
answered both ways and must agree.  Then: mail delivered into ``new/`` by another program is
searchable, a restart keeps the index, and an index that was dropped (or that predates the
full-text index) is rebuilt, the texts declined to the engine until it is complete.
"""

from __future__ import annotations

import base64
import os
import random
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_maildir_backend import Store, resolve

from mailserv.backends.maildir import search
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.backends.maildir.index import Index
from mailserv.interfaces import Narrowed, StoreMode
from mailserv.search import (
    All,
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    InSet,
    Not,
    Or,
    SearchKey,
    SearchProgram,
    SizeCompare,
    StringField,
    UidIn,
)
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.syntax.sequences import parse_sequence_set

WORDS = ["zebra", "Noon", "Straße", "ΣΊΣΥΦΟΣ", "ﬁnance", "Köln", "quarterly", "migration"]
SENDERS = [
    "Alice <alice@example.org>",
    "=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>",
    "=?iso-8859-1?b?Sm/rbA==?= <joel@example.fr>",
    '"Real Name" <REAL@b.org>',
    "undisclosed-recipients:;",
]
SUBJECTS = [
    "Lunch at noon",
    "=?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=",
    "=?utf-8?q?ZEBRA_crossing?=",
    "Re: budget REVIEW",
    "",
]
FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "\\Draft", "$Work", "Later"]


def _body(rng: random.Random) -> tuple[str, bytes]:
    """(headers of the body, body bytes) of one of several shapes."""
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))
    shape = rng.randrange(7)
    if shape == 0:
        return "Content-Type: text/plain; charset=utf-8\r\n", text.encode() + b"\r\n"
    if shape == 1:  # quoted-printable, a soft break inside a word
        qp = text.encode().replace(b"ze", b"z=\r\ne").replace(b"\xc3\x9f", b"=C3=9F")
        return (
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n",
            qp + b"\r\n",
        )
    if shape == 2:  # base64
        return (
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
            base64.encodebytes(text.encode()).replace(b"\n", b"\r\n"),
        )
    if shape == 3:  # multipart: text, html, and an attachment that is not searched
        boundary = "b0und"
        body = (
            f"--{boundary}\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            "K=F6ln is nice\r\n"
            f"--{boundary}\r\nContent-Type: text/html\r\n\r\n<p>{text}</p>\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            f"{base64.b64encode(b'zebra-secret').decode()}\r\n--{boundary}--\r\n"
        )
        return f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n', body.encode()
    if shape == 4:  # a NUL in the decoded text: compared as bytes
        raw = base64.b64encode(f"nul\x00{text}".encode()).decode()
        return (
            "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
            raw.encode() + b"\r\n",
        )
    if shape == 5:  # UTF-7 with a lone surrogate in the decoded text
        return "Content-Type: text/plain; charset=utf-7\r\n", b"a +2D3- zebra " + b"x\r\n"
    return "", b"8bit caf\xe9 " + text.encode("latin-1", "replace") + b"\r\n"  # no charset


def realistic(rng: random.Random, n: int) -> bytes:
    content, body = _body(rng)
    sent = rng.choice(
        ["Mon, 7 Feb 1994 21:52:25 -0800", "Sun, 03 Jan 2021 23:59:00 -1100", "garbage", ""]
    )
    head = (
        f"From: {rng.choice(SENDERS)}\r\nTo: Team <team@example.org>, bob@example.org\r\n"
        f"Cc: {rng.choice(['', 'carol@example.org', 'Friends: a@b.org, c@d.org;'])}\r\n"
        f"Subject: {rng.choice(SUBJECTS)}\r\n"
        + (f"Date: {sent}\r\n" if sent else "")
        + f"Message-ID: <{n}@example.org>\r\nMIME-Version: 1.0\r\n{content}"
    )
    return head.encode() + b"\r\n" + body


NEEDLES = [
    "zebra", "ZEBRA", "ze", "z", "a", "noon", "NOON", "straße", "STRASSE", "σίσυφος", "ΣΊΣΥΦΟΣ",
    "fi", "ﬁnance", "köln", "KÖLN", "café", "zebra-secret", "nul\x00", "\x00", "\ud83d", "a \ud83d",
    "<p>", "budget review", "jürgen", "joël", "real@b.org", "example", "team", "\n", "", '"q',
    "@example.org>", "<1", "text/plain", "1.0", "quoted", "utf-8", ": ", "mime",
]  # fmt: skip


HEADERS = [
    "Subject", "from", "TO", "cc", "Bcc", "X-Other", "Message-ID", "content-type",
    "Content-Transfer-Encoding", "Date", "MIME-Version", "X-Ünicode",
]  # fmt: skip


def _contains(rng: random.Random) -> Contains:
    field = rng.choice(list(StringField))
    header = rng.choice(HEADERS) if field is StringField.HEADER else ""
    return Contains(field, rng.choice(NEEDLES), header)


def _key(rng: random.Random, uids: list[int], depth: int = 0) -> SearchKey:
    roll = rng.random()
    if depth < 3 and roll < 0.12:
        return Or(_key(rng, uids, depth + 1), _key(rng, uids, depth + 1))
    if depth < 3 and roll < 0.22:
        return Not(_key(rng, uids, depth + 1))
    if depth < 3 and roll < 0.3:
        return And(tuple(_key(rng, uids, depth + 1) for _ in range(rng.randrange(0, 3))))
    kind = rng.randrange(8)
    if kind == 0:
        return HasFlag(
            rng.choice([*FLAGS, "$work", "\\SEEN", "later", "Unused"]), rng.random() < 0.5
        )
    if kind == 1:
        day = date(2021, 1, 1) + timedelta(days=rng.randrange(-3, 45))
        field = rng.choice(list(DateField))
        if field is DateField.SENT:
            day = rng.choice(
                [date(1994, 2, 7), date(1994, 2, 8), date(2021, 1, 3), date(2021, 1, 4)]
            )
        return DateCompare(field, rng.choice(list(DateOp)), day)
    if kind == 2:
        return SizeCompare(rng.random() < 0.5, rng.randrange(300, 1200))
    if kind == 3:
        return UidIn(frozenset(rng.sample(uids, rng.randrange(0, 8))))
    if kind == 4:
        low = rng.choice(uids)
        return InSet(parse_sequence_set(f"{low}:{rng.choice([str(low + 5), '*'])}"), uid=True)
    if kind in (5, 6):  # (MODSEQ comes back with CONDSTORE; the engine has no scan of it)
        return All()
    return _contains(rng)


def _fill(box: Any, rng: random.Random, count: int) -> None:
    for n in range(count):
        flags = frozenset(f for f in FLAGS if rng.random() < 0.3)
        zone = timezone(timedelta(hours=rng.choice([-11, -5, 0, 2, 13])))
        when = datetime(2021, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 24 * 40))
        resolve(box.append(realistic(rng, n), flags, when.astimezone(zone), None))


def _scan(box: Any, program: SearchProgram, view: list[int]) -> list[int]:
    metas = resolve(box.fetch(view))
    context = SearchContext(view, frozenset(), box.content)
    return resolve(evaluate(program, metas, context))


def agree(
    box: Any,
    view: list[int],
    needles: Sequence[str],
    scan: Callable[[Any, SearchProgram, list[int]], list[int]],
    by_words: Callable[[str], bool] = lambda folded: False,
) -> tuple[int, int]:
    """Every needle in TEXT and BODY as ``scan`` answers; (answered by a word index, as
    ``by_words`` tells of a case-folded needle, found somewhere)."""
    words_answered = found = 0
    for field in (StringField.TEXT, StringField.BODY):
        for needle in needles:
            program = SearchProgram(Contains(field, needle))
            got = resolve(box.search(program, view))
            assert got is not None
            assert list(got) == scan(box, program, view), (field, needle)
            folded = needle.casefold()
            words_answered += len(folded) >= 3 and by_words(folded)
            found += bool(got)
    return words_answered, found


def _agree(box: Any, rng: random.Random, view: list[int], programs: int) -> int:
    """Random programs both ways; how many the index answered (narrowed down: the scan of
    what it kept gives the answer, as the engine does)."""
    answered = 0
    fixed = [Contains(StringField.TEXT, n) for n in NEEDLES] + [
        Contains(StringField.BODY, n) for n in NEEDLES
    ]
    for key in [*fixed, *(_key(rng, view) for _ in range(programs))]:
        program = SearchProgram(key)
        got = resolve(box.search(program, view))
        if got is None:
            continue
        answered += 1
        expected = _scan(box, program, view)
        if isinstance(got, Narrowed):
            assert set(expected) <= set(got.uids) <= set(view), key
            got = _scan(box, program, list(got.uids))
        assert list(got) == expected, key
    return answered


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path)
    made.start()
    yield made
    made.stop()


def test_index_answers_as_the_scan_does(store: Store) -> None:
    rng = random.Random(11)
    box = store.open()
    _fill(box, rng, 70)
    uids = list(resolve(box.uids()))
    resolve(box.store(uids[::3], StoreMode.ADD, frozenset({"$WORK"}), None))
    view = uids[4:-2]  # a session that is behind at both ends
    # New texts wait to enter the trigram index in a batch: right both before and after.
    assert _agree(box, rng, view, 80) > 50
    box.disk.flush_texts(40)
    assert _agree(box, rng, view, 80) > 50
    while box.disk.flush_texts(1000):
        pass
    assert _agree(box, rng, view, 400) > 300
    gone = view[::5]
    resolve(box.store(gone, StoreMode.ADD, frozenset({"\\Deleted"}), None))
    assert resolve(box.expunge(gone, None)) == gone
    # Their texts leave the trigram and word indexes later (the reactor does not turn here):
    # right both before and after.
    assert _agree(box, rng, list(resolve(box.uids())), 60) > 30
    while box.disk.forget_texts(7):
        pass
    assert _agree(box, rng, list(resolve(box.uids())), 60) > 30
    db = sqlite3.connect(store.root() / INDEX)
    for table in ("fulltext", "words"):  # raises if an index and its texts disagree
        db.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
    db.close()


FOLDING_TEXTS = [
    "Kelvin: 5 \u212a, ANGSTROM \u212b",  # K and Å signs: casefold makes them k and å
    "\u0130stanbul and \u0131rmak",  # dotted capital I (i + U+0307), dotless i
    "Stra\u00dfe, STRASSE, \u017ftra\u017f\u017fe, \u1e9e",  # ß, long s, capital ß
    "caf\u00e9 zebra \u00c9T\u00c9 \ufb01nance \u01c5ungla",  # é, É, ﬁ, titlecase ǅ
    "\u13a0\u13a1 \uab70\uab71 \u03a3\u038a\u03a3\u03c5\u03c6\u03bf\u03c2",  # Cherokee, ς
    "odd x\ufffey \U0001f600 emoji",  # a non-character, an astral character
    "odd x\uffffy",
    "odd x\ufffdy",  # what SQLite makes of both
]
FOLDING_NEEDLES = [
    "5 k", "5 \u212a", "k,", "\u212b", "\u00e5", "istanbul", "i\u0307stanbul", "\u0130stanbul",
    "rmak", "\u0131rmak", "irmak", "strasse", "STRASSE", "stra\u00dfe", "ss, ", "\u1e9e", "ssss",
    "caf\u00e9 ", "fe z", "\u00e9t\u00e9", "\u00c9T\u00c9", "finance", "\u01c4ungla", "\u01c6un",
    "\u13a0\u13a1", "\uab70\uab71", "\u03c3\u03c5\u03c6\u03bf\u03c3", "\u03c6\u03bf\u03c2",
    "x\ufffdy", "x\ufffey", "x\uffffy", "\ufffd", "\U0001f600 e", "ODD X", "zebra\r\n",
    "8bit\nkelvin", "8bit\n", "8bit kelvin", "bit\nk", "\nkelvin", "kelvin: 5",
]  # fmt: skip


def test_index_folds_as_the_scan_on_unusual_characters(store: Store) -> None:
    """Texts whose characters fold specially (in ``str.casefold`` or in SQLite's trigram
    tokenizer), with ASCII and non-ASCII needles, and needles across the end of the header:
    the index (with and without texts still waiting for the trigram index) and the scan
    agree, and the needles that occur are found."""
    box = store.open()
    for n, body in enumerate(FOLDING_TEXTS):
        raw = (
            (
                f"Subject: zebra {n}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode()
            + body.encode()
            + b"\r\n"
        )
        resolve(box.append(raw, frozenset(), datetime(2021, 1, 1, tzinfo=UTC), None))
    view = list(resolve(box.uids()))
    for flushed in (False, True):
        if flushed:
            while box.disk.flush_texts(1000):
                pass
        assert agree(box, view, FOLDING_NEEDLES, _scan)[1] > 40


def casefold_fixed() -> list[str]:
    """The characters ``str.casefold`` leaves as they are: every one of the BMP, and those
    beyond it with a case."""
    return [
        c
        for c in map(chr, range(1, 0x110000))
        if not "\ud800" <= c <= "\udfff"
        and c.casefold() == c
        and (c < "\U00010000" or c.upper() != c or c.lower() != c)
    ]


def test_sqlite_trigram_folding_is_the_identity_on_casefolded_text() -> None:
    """What ``search.exact`` relies on, checked on the SQLite in use: the trigram
    tokenizer maps every character that ``str.casefold`` leaves as it is to itself, but
    U+FFFE and U+FFFF (to U+FFFD); every character with a case is tried."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(t, tokenize='trigram')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'instance')")
    chars = casefold_fixed()
    db.executemany("INSERT INTO f (rowid, t) VALUES (?, ?)", [(ord(c), c * 3) for c in chars])
    folded = {chr(doc): term[0] for term, doc in db.execute("SELECT term, doc FROM v")}
    assert len(folded) == len(chars)
    changed = {c: f for c, f in folded.items() if c != f}
    assert changed == {"\ufffe": "\ufffd", "\uffff": "\ufffd"}
    assert not search.exact("x\ufffey") and not search.exact("\ufffd")
    assert search.exact("zebra") and search.exact("\u03c3\u03c5\u03c6\u03bf\u03c3")


def test_texts_of_every_message_are_indexed_as_it_arrives(store: Store) -> None:
    """COPY in and delivery by another program give search rows, as APPEND does."""
    rng = random.Random(3)
    box = store.open()
    _fill(box, rng, 10)
    resolve(store.account().create("Other"))
    other = store.open("Other")
    resolve(box.copy(list(resolve(box.uids())), "Other", None))
    _deliver(store.root(), "1700000000.M1P1.elsewhere", b"Subject: zebra outside\r\n\r\nokapi\r\n")
    uids = list(resolve(box.uids()))
    assert len(uids) == 11
    for mailbox in (box, other):
        view = list(resolve(mailbox.uids()))
        assert _agree(mailbox, rng, view, 60) > 40
    found = resolve(box.search(SearchProgram(Contains(StringField.BODY, "OKAPI")), uids))
    assert found == [uids[-1]]


def _deliver(root: Path, base: str, raw: bytes) -> None:
    """As an MDA does: write to tmp/, rename into new/."""
    tmp = root / "tmp" / base
    tmp.write_bytes(raw)
    os.rename(tmp, root / "new" / base)


def test_restart_keeps_the_index(store: Store) -> None:
    rng = random.Random(5)
    _fill(store.open(), rng, 20)
    store.restart()
    box = store.open()
    assert box._texts.ready
    view = list(resolve(box.uids()))
    assert _agree(box, rng, view, 80) > 60


def test_header_of_fields_not_kept_is_narrowed_down(store: Store) -> None:
    """HEADER of a field ``search`` does not keep: the messages with the needle in their
    header, or with the field at all, for the engine to read; not under a NOT."""
    rng = random.Random(3)
    box = store.open()
    _fill(box, rng, 40)
    while box.disk.flush_texts(1000):
        pass
    view = list(resolve(box.uids()))
    one = SearchProgram(Contains(StringField.HEADER, "<5@EXAMPLE.org>", "message-id"))
    got = resolve(box.search(one, view))
    assert isinstance(got, Narrowed)
    assert list(got.uids) == _scan(box, one, view) == [view[5]]
    having = SearchProgram(Contains(StringField.HEADER, "", "Content-Transfer-Encoding"))
    got = resolve(box.search(having, view))
    assert isinstance(got, Narrowed)
    assert list(got.uids) == _scan(box, having, view)
    assert 0 < len(got.uids) < len(view)
    either = SearchProgram(Or(one.key, HasFlag("\\Seen", True)))
    got = resolve(box.search(either, view))
    assert isinstance(got, Narrowed)
    assert set(_scan(box, either, view)) <= set(got.uids)
    assert resolve(box.search(SearchProgram(Not(one.key)), view)) is None
    # A message whose texts wait to enter the trigram index is found too.
    new = int(resolve(box.append(realistic(rng, 99), frozenset(), None, None)).uid)
    late = SearchProgram(Contains(StringField.HEADER, "<99@", "Message-Id"))
    got = resolve(box.search(late, [*view, new]))
    assert isinstance(got, Narrowed) and list(got.uids) == [new]


def test_search_rows_are_counted_from_a_narrow_index(store: Store) -> None:
    """Every stable SEARCH asks whether each message has its search row (a count of
    ``search``): read from an index of UIDs, not from the wide rows (2.7 ms at 20k)."""
    _fill(store.open(), random.Random(4), 5)
    db = sqlite3.connect(store.root() / INDEX)
    try:
        plans = [row[-1] for row in db.execute("EXPLAIN QUERY PLAN SELECT count(*) FROM search")]
    finally:
        db.close()
    assert plans == ["SCAN search USING COVERING INDEX search_uids"], plans


def test_readers_are_kept_between_tasks(tmp_path: Path) -> None:
    """A search's read-only connection is kept for the next (opening one and warming its
    cache cost 0.8 ms at 20k, more than the search), at most ``IDLE_READERS`` of them; one
    out while the index closes is closed when it comes back, not kept."""
    index = Index(str(tmp_path), fsync=False)
    index.open(7)
    with index.reading() as first:
        pass
    with index.reading() as again:
        assert again is first
    with index.reading() as a, index.reading() as b, index.reading() as c:
        assert len({id(a), id(b), id(c)}) == 3
    with index.reading() as d, index.reading() as e, index.reading() as f:
        assert {id(d), id(e)} <= {id(a), id(b), id(c)}  # two were kept, the third closed
        assert id(f) not in {id(a), id(b), id(c)}
    with index.reading() as out:
        out.execute("BEGIN")
        out.execute("SELECT count(*) FROM message").fetchone()
        index.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not kept
        out.execute("SELECT 1")
    for kept in (d, e):
        with pytest.raises(sqlite3.ProgrammingError):
            kept.execute("SELECT 1")
    with index.reading() as late:  # a search that ends after the mailbox closed
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        late.execute("SELECT 1")
    index.open(7)
    with index.reading() as first:
        first.execute("BEGIN")
        first.execute("SELECT count(*) FROM message").fetchone()
    assert not first.in_transaction  # ended, and kept
    with index.reading() as again:
        assert again is first
    index.close()


def test_a_dropped_index_is_rebuilt(store: Store) -> None:
    rng = random.Random(9)
    _fill(store.open(), rng, 20)
    store.stop()
    for suffix in ("", "-wal", "-shm"):
        path = store.root() / (INDEX + suffix)
        if path.exists():
            path.unlink()
    store.start()
    box = store.open()
    view = list(resolve(box.uids()))
    assert _agree(box, rng, view, 80) > 60


def test_an_index_without_texts_is_completed_and_declines_meanwhile(store: Store) -> None:
    """An index made before the full-text index: the texts are made in batches; until they
    are all there, SEARCH of texts is left to the engine (flags are still answered)."""
    rng = random.Random(13)
    _fill(store.open(), rng, 30)
    store.stop()
    db = sqlite3.connect(store.root() / INDEX)
    for table in ("search", "fulltext", "texts"):
        db.execute(f"DROP TABLE {table}")
    db.commit()
    db.close()
    store.start()
    box = resolve(store.account().open("INBOX"))
    view = list(resolve(box.uids()))
    # Inline I/O: loading ran the whole rebuild at once; it is complete now.
    assert box._texts.ready
    assert _agree(box, rng, view, 60) > 40


def test_texts_decline_while_rows_are_missing(store: Store) -> None:
    rng = random.Random(17)
    box = store.open()
    _fill(box, rng, 5)
    view = list(resolve(box.uids()))
    box._texts.ready = False  # as during a rebuild
    assert resolve(box.search(SearchProgram(Contains(StringField.BODY, "zebra")), view)) is None
    assert resolve(box.search(SearchProgram(Contains(StringField.FROM, "alice")), view)) is None
    assert resolve(box.search(SearchProgram(HasFlag("\\Seen", False)), view)) is not None


# -- in a real server (I/O threads, the reactor running) -----------------------------------


def test_server_rebuilds_texts_and_answers_right_meanwhile(tmp_path: Path) -> None:
    """A server started on a Maildir whose index has no texts yet answers SEARCH TEXT right
    while the texts are being made and after; mail delivered into ``new/`` by another
    program is found by SEARCH BODY."""
    from bench.harness import BackendSpec, RawClient, ServerProcess, search_numbers

    server = ServerProcess(tmp_path / "srv", BackendSpec("maildir", {"autocreate": "false"}))
    server.start()
    try:
        server.add_user("reader", "pw")
        rng = random.Random(21)
        corpus = [realistic(rng, n) for n in range(600)]
        client = RawClient.connect(server.imap_port)
        client.login("reader", "pw")
        assert all(r.ok for r in client.append_many("INBOX", corpus))
        client.close()
        server.stop()
        db = sqlite3.connect(server.data_dir / "mail" / "reader" / "Maildir" / INDEX)
        for table in ("search", "fulltext", "texts"):
            db.execute(f"DROP TABLE {table}")
        db.commit()
        db.close()
        server.start()
        client = RawClient.connect(server.imap_port)
        client.login("reader", "pw")
        assert client.command("SELECT INBOX").ok
        expected = None
        for _ in range(8):  # during the rebuild, then after it
            response = client.command("UID SEARCH TEXT zebra")
            assert response.ok
            found = search_numbers(response)
            expected = expected if expected is not None else found
            assert found == expected
        assert 0 < len(expected) < len(corpus)
        root = server.data_dir / "mail" / "reader" / "Maildir"
        _deliver(root, "1700000001.M9P9.elsewhere", b"Subject: hi\r\n\r\nan okapi here\r\n")
        for _ in range(100):
            response = client.command("UID SEARCH BODY OKAPI")
            if search_numbers(response):
                break
            client.command("NOOP")
        assert len(search_numbers(response)) == 1
        client.close()
    finally:
        server.stop()


def _flag_key(rng: random.Random, depth: int = 0) -> SearchKey:
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return Or(_flag_key(rng, depth + 1), _flag_key(rng, depth + 1))
    if depth < 3 and roll < 0.3:
        return Not(_flag_key(rng, depth + 1))
    if depth < 3 and roll < 0.4:
        return And(tuple(_flag_key(rng, depth + 1) for _ in range(rng.randrange(0, 3))))
    if roll < 0.45:
        return All()
    if roll < 0.7:  # days around those _fill gives, in offsets from -11 to +13 hours
        day = date(2021, 1, 1) + timedelta(days=rng.randrange(-2, 42))
        return DateCompare(DateField.INTERNAL, rng.choice(list(DateOp)), day)
    flag = rng.choice([*FLAGS, "$work", "\\SEEN", "\\flagged", "later", "Unused"])
    return HasFlag(flag, rng.random() < 0.5)


def test_flag_and_date_searches_come_from_the_shared_state(store: Store) -> None:
    """UNSEEN, FLAGGED, SINCE, BEFORE, ON and the like are answered from the flags and
    internal dates every session shares (no query of the index, at any size), as the scan
    answers them, through changes and after a restart."""
    rng = random.Random(17)
    box = store.open()
    _fill(box, rng, 40)
    uids = list(resolve(box.uids()))
    resolve(box.store(uids[::3], StoreMode.ADD, frozenset({"$WORK"}), None))
    resolve(box.store(uids[1::4], StoreMode.REMOVE, frozenset({"\\Seen", "Later"}), None))
    resolve(box.store(uids[::7], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    for restarted in (False, True):
        if restarted:
            store.restart()
            box = store.open()
        for view in (list(resolve(box.uids())), list(resolve(box.uids()))[3:-2]):
            for _ in range(150):
                program = SearchProgram(_flag_key(rng))
                found = box._state.quick_search(program.key, view)
                assert found is not None, program
                assert found == _scan(box, program, view), program
                assert list(resolve(box.search(program, view))) == found
    assert box._state.quick_search(Contains(StringField.TEXT, "zebra"), uids) is None
    sent = DateCompare(DateField.SENT, DateOp.SINCE, date(2021, 1, 1))
    assert box._state.quick_search(sent, uids) is None


def test_copies_take_the_search_rows_of_their_originals(store: Store) -> None:
    """A COPY takes each message's search row from the source's index (reading and
    decoding every file again was most of a MOVE of 20k): the rows are those the files
    give, texts SQLite cannot hold too, and the copies are found as the originals."""
    from mailserv.backends.maildir.index import texts_of
    from mailserv.backends.maildir.textrow import text_row
    from mailserv.message.parse import parse_message

    box = store.open()
    bodies = [*FOLDING_TEXTS, "a NUL \x00 here, zebra", "plain zebra"]
    for n, body in enumerate(bodies):
        raw = (
            (
                f"Subject: zebra {n}\r\nFrom: Okapi <okapi{n}@example.org>\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode()
            + body.encode("utf-8", "surrogatepass")
            + b"\r\n"
        )
        resolve(box.append(raw, frozenset(), datetime(2021, 1, 1, tzinfo=UTC), None))
    resolve(store.account().create("Other"))
    other = store.open("Other")
    source = sqlite3.connect(store.root() / INDEX)  # a mark only the index has
    with source:
        source.execute("UPDATE search SET subject = ? WHERE uid = 1", (b"marked",))
    source.close()
    result = resolve(box.copy(list(resolve(box.uids())), "Other", None))
    copies = [new for _, new in result.pairs]
    db = sqlite3.connect(store.root() / ".Other" / INDEX)
    stored = texts_of(db, copies, True)
    db.close()
    assert len(stored) == len(bodies) and stored[copies[0]][4] == b"marked"
    for uid in copies[1:]:
        raw = other.disk.read(other.path_of(uid))
        assert stored[uid] == text_row(raw, parse_message(raw))
    found = resolve(other.search(SearchProgram(Contains(StringField.TEXT, "zebra")), copies))
    assert found == copies


def test_the_tag_of_kept_answers_changes_with_the_messages_not_their_flags(store: Store) -> None:
    """A kept SEARCH answer is given again while the index's tag is the same: the tag
    changes when a message comes or goes (one of the middle as well as the highest), and
    stays through a STORE (flags are no part of those answers).  It is read without
    counting the messages."""
    from mailserv.backends.maildir.disk import _tag

    box = store.open()
    _fill(box, random.Random(5), 6)

    def tag() -> tuple[Any, ...]:
        with box.disk.index.reading() as db:
            return _tag(db)

    uids = list(resolve(box.uids()))
    first = tag()
    resolve(box.store(uids[:3], StoreMode.ADD, frozenset({"\\Flagged", "$Work"}), None))
    assert tag() == first
    seen = {first}
    resolve(box.store([uids[2]], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))  # a message of the middle: the highest UID stays
    assert tag() not in seen
    seen.add(tag())
    _fill(box, random.Random(6), 1)
    assert tag() not in seen
    seen.add(tag())
    newest = max(resolve(box.uids()))
    resolve(box.store([newest], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))  # the one added: the highest UID is as before it came
    assert tag() not in seen
    found = resolve(box.search(SearchProgram(Contains(StringField.FROM, "a")), uids))
    assert found == _scan(box, SearchProgram(Contains(StringField.FROM, "a")), uids)


def test_unseen_is_kept_through_every_kind_of_change(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UIDs without \\Seen that SEARCH UNSEEN answers from follow STOREs of one message
    and of many (whose renames are owed: another path), new mail, EXPUNGE and a restart,
    and answer as the scan does, alone and inside other keys."""
    from mailserv.backends.maildir import mailbox

    monkeypatch.setattr(mailbox, "LAZY_STORE", 4)  # STOREs of more go the owed way
    rng = random.Random(23)
    box = store.open()
    _fill(box, rng, 30)
    seen = frozenset({"\\Seen"})
    keys = [
        HasFlag("\\Seen", False),
        HasFlag("\\SEEN", False),
        Not(HasFlag("\\Seen", False)),
        And((HasFlag("\\Seen", False), HasFlag("\\Flagged", True))),
        Or(HasFlag("\\Seen", False), HasFlag("\\Deleted", True)),
    ]

    def check() -> None:
        state = box._state
        assert state.tally.unseen_uids == {
            u for u, e in state.entries.items() if "\\Seen" not in e.flags
        }
        view = list(resolve(box.uids()))
        for part in (view, view[2:-3]):
            for key in keys:
                assert state.quick_search(key, part) == _scan(box, SearchProgram(key), part), key

    check()
    uids = list(resolve(box.uids()))
    resolve(box.store(uids, StoreMode.ADD, seen, None))  # many: owed renames
    box._state.tally.unseen_uids.add(
        uids[0]
    )  # a UID put there shows: the answer is read from the set
    assert box._state.quick_search(HasFlag("\\Seen", False), uids) == [uids[0]]
    box._state.tally.unseen_uids.discard(uids[0])
    check()
    resolve(box.store(uids[::2], StoreMode.REMOVE, seen, None))
    check()
    resolve(box.store(uids[1:2], StoreMode.REMOVE, seen, None))  # one
    resolve(box.store(uids[4:5], StoreMode.ADD, seen, None))
    check()
    _fill(box, rng, 3)
    resolve(box.store(uids[::5], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    check()
    store.restart()
    box = store.open()
    check()
