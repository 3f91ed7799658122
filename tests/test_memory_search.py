"""The memory backend's kept sets (``kit.flagsets``: UIDs by flag, by day of the internal
date) answer SEARCH exactly as the engine's scan does: random programs over messages whose
internal dates sit on both sides of midnight in several offsets, after flag changes and
expunges; so do its folded address and subject texts (``kit.fieldtexts``) and its word
index of BODY and TEXT (``kit.textindex``)."""

from __future__ import annotations

import base64
import random
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from twisted.internet.task import Clock, deferLater

from mailserv.backends.kit import flagsets, textindex
from mailserv.backends.memory import factory as memory
from mailserv.interfaces import StoreMode
from mailserv.search import (
    All,
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    Not,
    Or,
    SearchKey,
    SearchProgram,
    SizeCompare,
    StringField,
    UidIn,
)
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.testing import resolve

pytestmark = pytest.mark.one_backend  # the memory backend in process, whatever is selected

FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "\\Draft", "$Work"]
OFFSETS = [
    timezone(timedelta(hours=h, minutes=m))
    for h, m in ((0, 0), (-5, 0), (9, 30), (14, 0), (-12, 0))
]
DAYS = [date(2024, 3, d) for d in (9, 10, 11, 12)]


def _when(rng: random.Random) -> datetime:
    """Near midnight of 10-Mar or 11-Mar, in an offset whose day differs from UTC's."""
    day = rng.choice(DAYS[1:3])
    minute = rng.choice([0, 1, 30, 60 * 23 + 59, 60 * 12, 60 * 23])
    local = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
    return local.replace(tzinfo=rng.choice(OFFSETS))


def _key(rng: random.Random, uids: list[int], depth: int = 0) -> SearchKey:
    kind = rng.randrange(8 if depth < 3 else 4)
    if kind == 0:
        return HasFlag(rng.choice(FLAGS + ["\\seen", "\\FLAGGED"]), rng.random() < 0.5)
    if kind == 1:
        return DateCompare(DateField.INTERNAL, rng.choice(list(DateOp)), rng.choice(DAYS))
    if kind == 2:
        return UidIn(frozenset(rng.sample(uids, min(len(uids), rng.randrange(4)))) | {999})
    if kind == 3:
        return All()
    if kind == 4:
        return Not(_key(rng, uids, depth + 1))
    if kind == 5:
        return Or(_key(rng, uids, depth + 1), _key(rng, uids, depth + 1))
    return And(tuple(_key(rng, uids, depth + 1) for _ in range(rng.randrange(4))))


def _scan(box: Any, program: SearchProgram, uids: list[int]) -> list[int]:
    metas = resolve(box.fetch(uids))
    result: list[int] = resolve(evaluate(program, metas, SearchContext(uids, set(), box.content)))
    return result


def test_kept_sets_answer_as_the_scan_does() -> None:
    rng = random.Random(5)
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(60):
        flags = frozenset(rng.sample(FLAGS, rng.randrange(3)))
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, flags, _when(rng), None))
    for _ in range(6):  # flags change, messages go (and with them, sometimes, a whole day)
        chosen = rng.sample(resolve(box.uids()), 8)
        mode = rng.choice(list(StoreMode))
        resolve(box.store(chosen, mode, frozenset(rng.sample(FLAGS, 2)), None))
    resolve(box.store(resolve(box.uids())[::4], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    for _ in range(3):  # after the STOREs: the new ones join the kept sets too
        resolve(box.append(b"Subject: new\r\n\r\nbody\r\n", frozenset(), _when(rng), None))
    # UNSEEN answers from the UIDs without \Seen, kept as flags change (unseen_nodes)
    assert box.tally.unseen_uids == {
        uid for uid, m in box._messages.items() if "\\Seen" not in m.flags
    }
    uids = list(resolve(box.uids()))
    marked = next(uid for uid in uids if "\\Seen" in box._messages[uid].flags)
    box.tally.unseen_uids.add(marked)  # a UID put there shows: the answer is read from the set
    assert marked in resolve(box.search(SearchProgram(HasFlag("\\Seen", False)), uids))
    box.tally.unseen_uids.discard(marked)
    view = uids[3:-3]  # a session's view may hold fewer than the mailbox
    answered = 0
    for _ in range(400):
        program = SearchProgram(_key(rng, uids))
        found = resolve(box.search(program, view))
        if found is None:  # UID sets: the engine's
            assert "UidIn" in repr(program)
            continue
        answered += 1
        assert found == _scan(box, program, view), program
    assert answered > 200


def test_all_but_a_few_is_every_other_uid_in_order() -> None:
    """A negated answer that leaves out a few of many messages (``NOT FLAGGED``, SINCE a
    date before nearly all mail) is cut between them: the same list as a test of each."""
    rng = random.Random(9)
    entries = dict.fromkeys(sorted(rng.sample(range(1, 5000), 2000)))
    ordered = list(entries)
    for few in (0, 1, 3, 40, 200):
        flagged = set(rng.sample(ordered, few)) | {5001, 7}  # and UIDs of no message
        found = flagsets.search(
            HasFlag("\\Flagged", False), ordered, {"\\Flagged": flagged}, {}, entries
        )
        assert found == [uid for uid in ordered if uid not in flagged]


def test_an_offset_keeps_its_own_day() -> None:
    """23:30 at -05:00 on 10-Mar is 11-Mar in UTC: the message is ON 10-Mar (RFC 3501's
    internal date, as the engine compares it), BEFORE 11-Mar, not SINCE 11-Mar."""
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    late = datetime(2024, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    early = datetime(2024, 3, 11, 0, 10, tzinfo=timezone(timedelta(hours=9)))
    first = resolve(box.append(b"Subject: a\r\n\r\nx\r\n", frozenset(), late, None)).uid
    second = resolve(box.append(b"Subject: b\r\n\r\nx\r\n", frozenset(), early, None)).uid
    uids = [first, second]

    def search(op: DateOp, day: int) -> list[int]:
        key = DateCompare(DateField.INTERNAL, op, date(2024, 3, day))
        return list(resolve(box.search(SearchProgram(key), uids)))

    assert search(DateOp.ON, 10) == [first]
    assert search(DateOp.ON, 11) == [second]
    assert search(DateOp.SINCE, 11) == [second]
    assert search(DateOp.BEFORE, 11) == [first]
    assert search(DateOp.BEFORE, 10) == []
    assert search(DateOp.SINCE, 10) == uids


def test_other_keys_are_left_to_the_engine() -> None:
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    uid = resolve(box.append(b"Subject: a\r\n\r\nx\r\n", frozenset(), None, None)).uid
    for key in (
        Contains(StringField.HEADER, "x", "X-Other"),
        SizeCompare(True, 1),
        UidIn(frozenset({uid})),
        DateCompare(DateField.SENT, DateOp.ON, date(2024, 3, 10)),
        And((HasFlag("\\Seen", False), SizeCompare(False, 10))),
    ):
        assert resolve(box.search(SearchProgram(key), [uid])) is None


NAMES = ["Ana Straße", "BOB <bob@Example.org>", "=?utf-8?q?Zo=C3=AB?= <zoe@x.test>", "eve@x.test"]
SUBJECTS = ["Budget MEETING", "re: budget", "=?utf-8?b?w4ljbGFpcg==?=", "Strasse plan", ""]
NEEDLES = ["budget", "STRASSE", "straße", "bob@example", "zoë", "ÉCLAIR", "x.test", "", "\n", "e"]
FIELDS = [StringField.FROM, StringField.TO, StringField.CC, StringField.BCC, StringField.SUBJECT]
TEXT_FIELDS = [StringField.BODY, StringField.TEXT, StringField.SUBJECT]


def _field_key(rng: random.Random, depth: int = 0, needles: list[str] = NEEDLES) -> SearchKey:
    """A program of flags and string keys (FROM/TO/CC/BCC/SUBJECT, or also BODY and TEXT
    when ``needles`` is theirs)."""
    kind = rng.randrange(6 if depth < 3 else 3)
    if kind == 0:
        return HasFlag(rng.choice(FLAGS), rng.random() < 0.5)
    if kind in (1, 2):
        fields = FIELDS if needles is NEEDLES else TEXT_FIELDS
        return Contains(rng.choice(fields), rng.choice(needles))
    if kind == 3:
        return Not(_field_key(rng, depth + 1, needles))
    if kind == 4:
        return Or(_field_key(rng, depth + 1, needles), _field_key(rng, depth + 1, needles))
    return And(tuple(_field_key(rng, depth + 1, needles) for _ in range(rng.randrange(1, 4))))


def test_address_and_subject_fields_answer_as_the_scan_does() -> None:
    """FROM/TO/CC/BCC/SUBJECT from the folded texts kept (``kit.fieldtexts``), alone and
    inside ANDs, ORs and NOTs with flags, before and after expunges."""
    rng = random.Random(11)
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    for _ in range(50):
        head = b"".join(
            b"%s: %s\r\n" % (name, rng.choice(NAMES).encode())
            for name in (b"From", b"To", b"Cc", b"Bcc")
            if rng.random() < 0.8
        )
        subject = rng.choice(SUBJECTS).encode()
        flags = frozenset(rng.sample(FLAGS, rng.randrange(3)))
        resolve(box.append(head + b"Subject: " + subject + b"\r\n\r\nbody\r\n", flags, None, None))
    answered = 0
    for round_ in range(2):
        uids = list(resolve(box.uids()))
        view = uids[2:-2]
        for _ in range(150):
            program = SearchProgram(_field_key(rng))
            found = resolve(box.search(program, view))
            if found is None:  # an address needle holding the line separator: the engine's
                assert "'\\n'" in repr(program)
                continue
            answered += 1
            assert found == _scan(box, program, view), program
        if round_ == 0:
            resolve(box.store(uids[::3], StoreMode.ADD, frozenset({"\\Deleted"}), None))
            resolve(box.expunge(None, None))
    assert answered > 200


def test_kept_field_answers_follow_appends_and_expunges() -> None:
    """An answer kept per (field, needle) gives the scan's answer again after messages
    come and go and flags change, for the whole mailbox and for an older view."""
    rng = random.Random(12)
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    programs = [
        SearchProgram(Contains(StringField.FROM, "ana")),
        SearchProgram(Contains(StringField.SUBJECT, "budget")),
        SearchProgram(And((Contains(StringField.FROM, "ana"), HasFlag("\\Flagged", True)))),
        SearchProgram(Not(Contains(StringField.SUBJECT, "budget"))),
    ]

    def add(count: int) -> None:
        for _ in range(count):
            head = b"From: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (
                rng.choice(NAMES).encode(),
                rng.choice(SUBJECTS).encode(),
            )
            resolve(box.append(head, frozenset(), None, None))

    add(30)
    checked = 0
    for step in range(12):
        uids = list(resolve(box.uids()))
        for view in (uids, uids[1:-3]):
            for program in programs * 2:  # the second time from the kept answer
                assert resolve(box.search(program, view)) == _scan(box, program, view), program
                checked += 1
        if step % 3 == 0:
            add(rng.randrange(1, 4))
        elif step % 3 == 1:
            resolve(box.store(uids[::4], StoreMode.ADD, frozenset({"\\Flagged"}), None))
        else:
            resolve(box.store(uids[step::5], StoreMode.ADD, frozenset({"\\Deleted"}), None))
            resolve(box.expunge(None, None))
    assert checked == 12 * 2 * 8
    # One match among many, expunged: the whole mailbox's answer no longer has it.
    resolve(box.append(b"From: rare@x.test\r\n\r\nbody\r\n", frozenset(), None, None))
    rare = SearchProgram(Contains(StringField.FROM, "rare@"))
    uids = list(resolve(box.uids()))
    assert resolve(box.search(rare, uids)) == [uids[-1]]
    resolve(box.store(uids[-1:], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    assert resolve(box.search(rare, list(resolve(box.uids())))) == []


WORDS = ["zebra", "Straße", "migration", "naïve", "ΣΟΦΟΣ", "bench.12", "a-b", "x_y", "ok"]
BODY_NEEDLES = [
    *WORDS,
    "zeb",
    "ebr",
    "RASS",
    "igrat",
    "ΣΟΦ",
    "bench.1",
    "ench",
    "-b",
    "x_",
    "o",
    "",
    "k z",
    "zebra migration",
    "absent",
    "ǅ",
    "\x00",
    "\udcff",
    "\ufffd",
    "subject",
    "report",
    "h" * 3,
    "q" * 9000,
]


def _text_message(rng: random.Random, n: int) -> bytes:
    """Plain, base64 and multipart (one part quoted-printable) bodies, an encoded-word
    subject; now and then a word FTS5 would cut, a NUL or a byte that is not UTF-8."""
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
    subject = rng.choice([b"=?utf-8?q?Stra=C3=9Fe_report?=", b"zebra ok", b"=?utf-8?b?zqPOn86m?="])
    head = b"From: a@x.test\r\nSubject: " + subject + b"\r\n"
    body = words.encode()
    kind = n % 6
    if kind == 1:
        body += b" " + b"q" * rng.choice((8191, 9000)) + b" hhh"
    elif kind == 2:
        body = body.replace(b"a", b"\x00a", 1) + b"\xff report"
    if kind == 3:
        encoded = base64.b64encode(body)
        return head + b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n"
    if kind == 4:
        return (
            head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n--b\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
            b"quoted-printable\r\n\r\nSubject Stra=C3=9Fe ok\r\n--b--\r\n"
        )
    return head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n"


def test_body_and_text_answer_as_the_scan_does() -> None:
    """BODY and TEXT from the word index (``kit.textindex``): every text, alone and with
    flags and fields, before and after expunges, with messages waiting to be indexed."""
    from twisted.internet import reactor  # slices give way to a running reactor

    rng = random.Random(13)
    account = resolve(memory.build({}, ".", reactor).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(48):
        flags = frozenset(rng.sample(FLAGS, rng.randrange(3)))
        resolve(box.append(_text_message(rng, n), flags, None, None))
    answered = 0
    for round_ in range(3):
        uids = list(resolve(box.uids()))
        view = uids[2:-1]
        for _ in range(80):
            program = SearchProgram(_field_key(rng, needles=BODY_NEEDLES))
            found = resolve(box.search(program, view))
            assert found is not None, program
            answered += 1
            assert found == _scan(box, program, view), program
        resolve(box.store(uids[round_::3], StoreMode.ADD, frozenset({"\\Deleted"}), None))
        resolve(box.expunge(None, None))
        for n in range(6):  # these wait to be indexed when the next SEARCH comes...
            resolve(box.append(_text_message(rng, n), frozenset(), None, None))
        if round_ == 0:  # ...or, once no message came for a moment, in the background
            resolve(deferLater(reactor, textindex.QUIET * 2, lambda: None))
    assert answered == 240
