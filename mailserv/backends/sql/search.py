"""SEARCH in SQL: the common keys become a WHERE clause over indexed metadata columns.

Flags, dates, sizes, UID sets, MODSEQ and the FROM/TO/CC/BCC/SUBJECT texts (stored
case-folded, matched with an exact substring test, as the engine's evaluator does; the
address columns hold the header's text and, a line each, its addresses normalised, of
which HEADER From/To/Cc/Bcc look at the first line only) are translated.  On PostgreSQL
with ``pg_trgm`` (schema 14) the substring test of a field is ``LIKE '%needle%'``, which
the trigram index of those columns answers (``fulltext.like_pattern``: needles without a
run of three word characters are tested row by row with ``strpos()``).  Anything else
(other HEADER fields, very large UID lists or very deep trees) makes :func:`translate`
return None, and the engine evaluates the query itself.  BODY and TEXT are answered from
the stored texts (``fulltext.py``) once every message of the mailbox has them.

Most of a mailbox matching (SINCE a day before most of it, ALL, LARGER than most, NOT of a
few) is the costly case: the matches' UIDs made into a string by the database and read back
take tens of ms at 100,000.  While the session's UIDs are every message of the mailbox (its
count and highest UID agree), such an answer is the session's UIDs less the few rows the
clause does not match (:func:`_by_others`), and a test of the internal date alone is first
tried against the mailbox's first and last days (:func:`_by_bounds`: every message passes,
or none), two reads of the ``mail_day`` index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mailserv.backends.kit import uidlist
from mailserv.backends.kit.keptanswers import KeptAnswers, Tag, among, stable
from mailserv.backends.sql import fulltext, schema, unseen
from mailserv.backends.sql.rows import MARKS, flag_probe, flag_test, mark_test
from mailserv.backends.sql.tx import Tx
from mailserv.interfaces import SEEN, SYSTEM_FLAGS
from mailserv.message.addresses import SEPARATOR
from mailserv.search import (
    All,
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    InSet,
    InternalSince,
    ModSeqAtLeast,
    Not,
    Or,
    SearchKey,
    SearchProgram,
    SizeCompare,
    StringField,
    UidIn,
    without,
)
from mailserv.syntax.sequences import merge

MAX_DEPTH = 64
"""Deeper trees are left to the engine (SQLite caps expression depth at 1000)."""
MAX_IN = 1000
MAX_RANGES = 200
OTHERS_PART = 16
"""A clause's answer is made as the mailbox less the rows it does not match when those
are at most this part of the mailbox (:func:`_by_others`)."""

_SYSTEM_FLAGS = {f.lower(): f for f in SYSTEM_FLAGS}
_TEXT_COLUMNS = {
    StringField.FROM: "c.from_addr",
    StringField.TO: "c.to_addr",
    StringField.CC: "c.cc_addr",
    StringField.BCC: "c.bcc_addr",
    StringField.SUBJECT: "c.subject",
}
_HEADER_COLUMNS = {field.value.lower(): column for field, column in _TEXT_COLUMNS.items()}
_ADDRESS_COLUMNS = frozenset({"c.from_addr", "c.to_addr", "c.cc_addr", "c.bcc_addr"})
"""Columns of lines: the header text, then its addresses normalised (``search_field``)."""
_DATE_OPS = {DateOp.BEFORE: "<", DateOp.ON: "=", DateOp.SINCE: ">="}
_FIELD_NAME = re.compile(r"[!-9;-~]+")
"""A header field name (RFC 5322: printable ASCII but the colon)."""
_TRUE = "1 = 1"
_FALSE = "1 = 0"


class _Decline(Exception):
    """This key is the engine's to evaluate."""


@dataclass
class Clause:
    """A WHERE expression over ``mail m`` (and ``messages c`` when ``content``)."""

    sql: str
    params: list[Any] = field(default_factory=list)
    content: bool = False
    texts: bool = False
    """Reads ``message_text``: answered only when the mailbox's texts are all there."""
    narrowed: bool = False
    """Its matches are a superset, for the engine to evaluate (HEADER of other fields)."""
    day: tuple[str, int] | None = None
    """A test of the internal date's day every match passes (the query's own, or one of
    its top-level AND's): the operator and the day, for the ``mail_day`` index."""
    counted: str | None = None
    """The ``mailboxes`` column that counts the mailbox's matches (``unseen`` for UNSEEN
    alone): the UIDs the mailbox row keeps are the answer (see the module ``unseen``); where
    it keeps none, the rows are read from the newest back, and no further than that many
    matches (schema 12 left PostgreSQL no index of the unseen messages)."""
    bounds: tuple[str, int] | None = None
    """The query is this test of the internal date's day alone (operator, day): answered
    from the mailbox's first and last days when all or none of its messages pass."""
    driver: fulltext.Driver | None = None
    """The query's BODY or TEXT, when it is the whole query and SQLite's word index answers
    it: the rows are read starting from the index's matches (``sql`` is then all)."""
    others: list[Other] | None = None
    """Where the mailbox's rows that do not match are cheap to find (every row is either a
    match or one of these): tests that together pick exactly them, tried when most of a
    mailbox matches (:func:`_by_others`).  ``[]``: every row matches; None: not tried."""


@dataclass(frozen=True, slots=True)
class Other:
    """A test of ``mail m`` (and ``messages c`` when the clause has ``content``) picking
    some of the rows a clause does not match; ``day``: a day test of the internal date
    (its operator), read by the ``mail_day`` index."""

    sql: str
    params: tuple[Any, ...]
    day: str | None = None


_OTHER_DAYS = {DateOp.SINCE: ("<",), DateOp.BEFORE: (">=",), DateOp.ON: ("<", ">")}
"""The day tests the rows an internal date test does not match pass, one or the other."""
_OFTEN = (Not, All, DateCompare, InternalSince, SizeCompare)
"""Keys most of a mailbox may match (the answers of the rest are found, not left); of
those reading the messages' texts (SENTSINCE), only NOT of another key (the others: its
matches, often few, where a sent date is as often before as after)."""


def translate(
    query: SearchProgram,
    find: str,
    uids: Sequence[int],
    texts: fulltext.TextSearch | None = None,
    tx: Tx | None = None,
) -> Clause | None:
    """``query`` (a bound SearchProgram) as SQL, or None to let the engine evaluate it.

    ``find`` is the dialect's substring function; ``uids`` the session's UIDs (``*`` in a
    UID set is the last of them, as in the engine's evaluator); ``texts`` how BODY and
    TEXT are searched (None: they are declined); ``tx``, where the clause will run, lets
    the word index answer them (see ``fulltext.py``).
    """
    clause = Clause("")
    key = query.key
    try:
        translator = _Translator(find, uids[-1] if uids else 0, clause, texts, tx)
        if isinstance(key, Not):  # the rows it leaves are the inner key's matches
            translator.negated += 1
            inner = translator.key(key.key, 1)
            clause.sql = f"NOT ({inner})"
            clause.others = [Other(inner, tuple(clause.params))]
        else:
            clause.driver = _driver(key, texts, tx)
            if clause.driver is None:
                clause.sql = translator.key(key, 0)
            else:  # the driver finds the matches: nothing is left to test
                clause.sql, clause.texts = _TRUE, True
    except _Decline:
        return None
    if isinstance(key, HasFlag) and not key.present and _SYSTEM_FLAGS.get(key.flag.lower()) == SEEN:
        clause.counted = "unseen"
    tops = query.key.keys if isinstance(query.key, And) else (query.key,)
    for top in tops:
        if isinstance(top, DateCompare) and top.field is DateField.INTERNAL:
            clause.day = (_DATE_OPS[top.op], top.date.toordinal())
            break
    if clause.texts or clause.counted:
        clause.others = None  # texts may yet come; UNSEEN has its own way
    elif isinstance(key, All):
        clause.others = []
    elif isinstance(key, DateCompare) and key.field is DateField.INTERNAL:
        day = key.date.toordinal()
        clause.bounds = (_DATE_OPS[key.op], day)
        clause.others = [Other(f"m.internal_day {op} ?", (day,), op) for op in _OTHER_DAYS[key.op]]
    elif isinstance(key, _OFTEN) and not isinstance(key, Not) and not clause.content:
        # Every test translated is true or false, never NULL (the columns read are NOT
        # NULL, the sent day is tested IS NOT NULL first): NOT picks exactly the others.
        clause.others = [Other(f"NOT ({clause.sql})", tuple(clause.params))]
    return clause


def _driver(
    key: SearchKey, texts: fulltext.TextSearch | None, tx: Tx | None
) -> fulltext.Driver | None:
    """The query's BODY or TEXT as a row source, when it is the whole query (alone, or alone
    in an AND) and the word index answers it.  With other keys, ``m.message_id IN (...)``
    is left as a test: a flag's partial index then finds the rows the text is tested on,
    where the word index's 80,000 matches would each read their row for its flags."""
    while isinstance(key, And) and len(key.keys) == 1:
        key = key.keys[0]
    if texts is None or not isinstance(key, Contains):
        return None
    if key.field not in (StringField.BODY, StringField.TEXT):
        return None
    return texts.driver(key.value.casefold(), key.field is StringField.TEXT, tx)


class _Translator:
    def __init__(
        self,
        find: str,
        largest: int,
        clause: Clause,
        texts: fulltext.TextSearch | None,
        tx: Tx | None,
    ) -> None:
        self.find = find
        self.largest = largest
        self.clause = clause
        self.texts = texts
        self.tx = tx
        self.negated = 0
        """NOTs around the key being translated."""

    def param(self, value: Any) -> str:
        self.clause.params.append(value)
        return "?"

    def key(self, key: SearchKey, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise _Decline()
        if isinstance(key, All):
            return _TRUE
        if isinstance(key, HasFlag):
            return self.flag(key)
        if isinstance(key, Contains):
            return self.contains(key)
        if isinstance(key, DateCompare):
            return self.date(key)
        if isinstance(key, InternalSince):
            return f"m.internaldate >= {self.param(int(key.moment.timestamp()))}"
        if isinstance(key, SizeCompare):
            return f"m.size {'>' if key.larger else '<'} {self.param(key.size)}"
        if isinstance(key, InSet):
            if not key.uid:
                raise _Decline()  # sequence numbers: bind() should have made them UidIn
            return self.ranges(key.set.resolve(self.largest))
        if isinstance(key, UidIn):
            return self.uid_in(key.uids)
        if isinstance(key, ModSeqAtLeast):
            return f"m.modseq >= {self.param(key.modseq)}"
        if isinstance(key, Not):
            self.negated += 1
            try:
                return f"NOT ({self.key(key.key, depth + 1)})"
            finally:
                self.negated -= 1
        if isinstance(key, Or):
            left, right = self.key(key.left, depth + 1), self.key(key.right, depth + 1)
            return f"({left} OR {right})"
        if isinstance(key, And):
            parts = [self.key(k, depth + 1) for k in key.keys]
            return "(" + " AND ".join(parts) + ")" if parts else _TRUE
        raise _Decline()

    def flag(self, key: HasFlag) -> str:
        name = key.flag
        if name.startswith("\\"):
            canonical = _SYSTEM_FLAGS.get(name.lower())
            if canonical is None:
                raise _Decline()  # \Recent (bind() replaces it) or unknown
            if canonical in MARKS:  # the flagged and deleted have indexes of their own
                return mark_test(canonical, key.present, "m.marks")
            if canonical == SEEN:  # as SQLite's index of the unseen has it
                return flag_test(self.find, canonical, key.present, "m.flags")
            test = f"{self.find}(m.flags, {self.param(flag_probe(canonical))}) > 0"
        else:
            if not name.isascii():
                raise _Decline()  # SQL lower() folds ASCII only
            test = f"{self.find}(lower(m.flags), {self.param(flag_probe(name.lower()))}) > 0"
        return test if key.present else f"NOT ({test})"

    def contains(self, key: Contains) -> str:
        needle = key.value.casefold()
        column = _TEXT_COLUMNS.get(key.field)
        if column is None and key.field is StringField.HEADER and needle:
            column = _HEADER_COLUMNS.get(key.header.lower())
        if column is None:
            if key.field in (StringField.BODY, StringField.TEXT):
                return self.text(needle, key.field is StringField.TEXT)
            return self.header_candidates(key.header, needle)
        if not needle:
            return _TRUE
        if "\x00" in needle:  # PostgreSQL's texts and parameters hold none
            raise _Decline()
        self.clause.content = True
        first_line = False
        if column in _ADDRESS_COLUMNS:
            if SEPARATOR in needle:  # no line of the column holds one
                return _FALSE
            first_line = key.field is StringField.HEADER  # the header's text
        tests = []
        pattern = None
        if self.texts is not None and self.texts.fields_indexed:
            pattern = fulltext.like_pattern(needle)
        if pattern is not None:  # the trigram index's candidates (exact: LIKE rechecks)
            tests.append(f"{column} LIKE {self.param(pattern)} ESCAPE '\\'")
        if first_line:  # the column's first line
            end = f"{self.find}({column} || {self.param(SEPARATOR)}, {self.param(SEPARATOR)})"
            line = f"substr({column}, 1, {end} - 1)"
            tests.append(f"{self.find}({line}, {self.param(needle)}) > 0")
        elif pattern is None:
            tests.append(f"{self.find}({column}, {self.param(needle)}) > 0")
        return tests[0] if len(tests) == 1 else "(" + " AND ".join(tests) + ")"

    def header_candidates(self, name: str, needle: str) -> str:
        """HEADER of a field without a column of its own, narrowed down: the messages with
        the needle in their texts (header or body: a superset) and the field's name at the
        start of a line of their decoded header.  Not under a NOT (the complement of a
        superset is none)."""
        if self.negated or self.texts is None:
            raise _Decline()
        tests = []
        if needle:
            tests.append(self.text(needle, True))
        if _FIELD_NAME.fullmatch(name):
            tests.append(self.texts.has_field(name, self.param))
        elif not needle:
            raise _Decline()
        self.clause.texts = self.clause.narrowed = True
        return "(" + " AND ".join(tests) + ")"

    def text(self, needle: str, whole: bool) -> str:
        if not needle:
            return _TRUE
        if self.texts is None:
            raise _Decline()
        sql = self.texts.condition(needle, whole, self.param, self.tx)
        if sql is None:
            raise _Decline()
        self.clause.texts = True
        return sql

    def date(self, key: DateCompare) -> str:
        op = _DATE_OPS[key.op]
        day = key.date.toordinal()
        if key.field is DateField.INTERNAL:
            return f"m.internal_day {op} {self.param(day)}"
        self.clause.content = True
        return f"(c.sent_day IS NOT NULL AND c.sent_day {op} {self.param(day)})"

    def ranges(self, ranges: Sequence[tuple[int, int]]) -> str:
        if not ranges:
            return _FALSE
        if len(ranges) > MAX_RANGES:
            raise _Decline()
        parts = []
        for low, high in ranges:
            if low == high:
                parts.append(f"m.uid = {self.param(low)}")
            else:
                parts.append(f"m.uid BETWEEN {self.param(low)} AND {self.param(high)}")
        return "(" + " OR ".join(parts) + ")"

    def uid_in(self, uids: frozenset[int]) -> str:
        if not uids:
            return _FALSE
        runs = merge((uid, uid) for uid in uids)
        if len(runs) <= MAX_RANGES:
            return self.ranges(runs)
        if len(uids) > MAX_IN:
            raise _Decline()
        marks = ", ".join(self.param(uid) for uid in sorted(uids))
        return f"m.uid IN ({marks})"


_HIGHEST = "(SELECT highestmodseq FROM mailboxes WHERE id = ?)"
"""The mailbox's HIGHESTMODSEQ, read along by a statement that reads its rows."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What :func:`answer` found: the matching UIDs (None: the engine evaluates), whether
    the clause read texts, and the mailbox's HIGHESTMODSEQ as one of its statements read it
    (None: none did), which spares the command's end a look of its own."""

    uids: list[int] | None
    texts: bool = False
    highestmodseq: int | None = None
    narrowed: bool = False
    """``uids`` are those among which the matches are (``Narrowed``)."""


def _state(tx: Tx, box_id: int) -> tuple[Tag, int, int] | None:
    """The mailbox row's account, UIDVALIDITY, UIDNEXT and count of messages (the kept
    answers' tag), the highest UID of its messages (0: none) and its HIGHESTMODSEQ."""
    row = tx.one(
        "SELECT account_id, uidvalidity, uidnext, messages,"
        " (SELECT max(uid) FROM mail WHERE mailbox_id = ?), highestmodseq"
        " FROM mailboxes WHERE id = ?",
        (box_id, box_id),
    )
    return None if row is None else (tuple(row[:4]), int(row[4] or 0), int(row[5]))


def _whole(state: tuple[Tag, int, int] | None, uids: Sequence[int]) -> bool:
    """Whether ``uids`` (ascending) are every message of the mailbox: as many as it holds,
    and its highest the mailbox's (the session's messages are the mailbox's up to the
    highest it was told of, less those expunged since: none is, if the counts agree)."""
    return state is not None and state[0][3] == len(uids) and state[1] == uids[-1]


def run(
    tx: Tx, box_id: int, clause: Clause, uids: Sequence[int], texts_ready: bool = False
) -> Answer:
    """The UIDs among ``uids`` (ascending) that match, ascending (transaction function).

    None for them when the clause reads texts some message of the mailbox does not have
    yet (and ``texts_ready`` does not say they are all there).
    """
    if clause.texts and not texts_ready and not fulltext.mailbox_ready(tx, box_id):
        return Answer(None)
    if clause.counted == "unseen":
        kept = tx.one("SELECT unseen_uids, highestmodseq FROM mailboxes WHERE id = ?", (box_id,))
        if kept is not None and kept[0] is not None:
            return Answer(unseen.among(kept[0], uids), highestmodseq=int(kept[1]))
    state = _state(tx, box_id) if clause.others is not None else None
    whole = _whole(state, uids)
    found, highest = _matching(tx, box_id, clause, uids, whole)
    if highest is None and state is not None:
        highest = state[2]
    found = found if whole else among(found, uids)
    return Answer(found, clause.texts, highest, clause.narrowed)


def _matching(
    tx: Tx, box_id: int, clause: Clause, uids: Sequence[int], whole: bool = False
) -> tuple[list[int], int | None]:
    """The mailbox's UIDs from the first to the last of ``uids`` that match, ascending;
    ``whole``: ``uids`` are every message of the mailbox (see :func:`_by_others`).  And
    the mailbox's HIGHESTMODSEQ, read along by the statement reading the rows (None: the
    answer came without it, from the mailbox's first and last days or its others)."""
    if clause.bounds is not None:
        found = _by_bounds(tx, box_id, clause.bounds, uids, whole)
        if found is not None:
            return found, None
    if whole:
        found = _by_others(tx, box_id, clause, uids)
        if found is not None:
            return found, None
    low, high = uids[0], uids[-1]
    if clause.driver is not None:
        return _driven(tx, box_id, clause, low, high)
    mail, where = "mail m", clause.sql
    day = clause.day
    if day is not None and tx.dialect.is_postgres:  # its planner weighs the index itself
        where = f"m.{schema.DAY_INDEXED} AND {where}"
    elif day is not None and _few_days(tx, box_id, day, uids):
        mail, where = "mail m INDEXED BY mail_day", f"m.{schema.DAY_INDEXED} AND {where}"
    source = f"{mail} JOIN messages c ON c.id = m.message_id" if clause.content else mail
    # One string, not a row per match: several times cheaper when most messages match.
    listed = _listed(tx)
    select = f"FROM {source} WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? AND {where}"
    params = [box_id, box_id, low, high, *clause.params]
    if clause.counted is not None:
        select = (
            f"FROM (SELECT m.uid {select} ORDER BY m.uid DESC"
            f" LIMIT (SELECT {clause.counted} FROM mailboxes WHERE id = ?)) m"
        )
        params.append(box_id)
    listing, highest = tx.one(f"SELECT {listed}, {_HIGHEST} {select}", params)
    return sorted(uidlist.numbers(listing or "")), None if highest is None else int(highest)


def _driven(
    tx: Tx, box_id: int, clause: Clause, low: int, high: int
) -> tuple[list[int], int | None]:
    """:func:`_matching` of a clause with a ``driver``: its row sources, each joined to the
    mailbox's rows from ``low`` to ``high`` that pass the rest of the clause."""
    assert clause.driver is not None
    content = " JOIN messages c ON c.id = m.message_id" if clause.content else ""
    parts, params = [], [box_id]
    for source, test, values in clause.driver.sources():
        parts.append(
            f"SELECT m.uid FROM {source}{content} WHERE {test} AND m.mailbox_id = ?"
            f" AND m.uid BETWEEN ? AND ? AND {clause.sql}"
        )
        params += [*values, box_id, low, high, *clause.params]
    union = " UNION ALL ".join(parts)
    listing, highest = tx.one(f"SELECT {_listed(tx)}, {_HIGHEST} FROM ({union}) m", params)
    return sorted(uidlist.numbers(listing or "")), None if highest is None else int(highest)


def _listed(tx: Tx) -> str:
    """The aggregate making the UIDs of ``m`` one comma-separated string."""
    return "string_agg(m.uid::text, ',')" if tx.dialect.is_postgres else "group_concat(m.uid)"


def _by_bounds(
    tx: Tx, box_id: int, bounds: tuple[str, int], uids: Sequence[int], whole: bool
) -> list[int] | None:
    """The answer of a day test of the internal date when the mailbox's first and last
    days (two reads of the ``mail_day`` index) show that no message passes it, or every
    one (then only when ``uids`` are the mailbox's ``whole``): None otherwise."""
    op, day = bounds
    indexed = "mail" if tx.dialect.is_postgres else "mail INDEXED BY mail_day"
    ends = [
        f"(SELECT {end}(internal_day) FROM {indexed} WHERE mailbox_id = ? AND {schema.DAY_INDEXED})"
        for end in ("min", "max")
    ]
    first, last = tx.one(f"SELECT {ends[0]}, {ends[1]}", (box_id, box_id))
    if first is None:
        return []  # no messages
    if op == ">=":
        every, none = first >= day, last < day
    elif op == "<":
        every, none = last < day, first >= day
    else:
        every, none = first == last == day, not first <= day <= last
    if none:
        return []
    return list(uids) if every and whole else None


def _by_others(tx: Tx, box_id: int, clause: Clause, uids: Sequence[int]) -> list[int] | None:
    """The answer as ``uids`` (every message of the mailbox) less the rows the clause does
    not match, when those are few (a sixteenth of the mailbox at most): SINCE a date most
    messages are younger than, ALL, LARGER than most, NOT of a few.  Eighty thousand UIDs
    made into a string by the database and read back cost tens of ms; the few others, and
    slicing ``uids`` around them, little.  None when there are more (each test stops
    reading there), or the clause says nothing of its others."""
    if clause.others is None:
        return None
    limit = len(uids) // OTHERS_PART
    source = "mail m JOIN messages c ON c.id = m.message_id" if clause.content else "mail m"
    left: list[int] = []
    for other in clause.others:
        mail, where = source, other.sql
        if other.day is not None:  # the index reads just the days asked for
            where = f"m.{schema.DAY_INDEXED} AND {where}"
            if not tx.dialect.is_postgres:
                mail = source.replace("mail m", "mail m INDEXED BY mail_day", 1)
        listed = tx.scalar(
            f"SELECT {_listed(tx)} FROM (SELECT m.uid FROM {mail} WHERE m.mailbox_id = ?"
            f" AND m.uid BETWEEN ? AND ? AND {where} LIMIT ?) m",
            (box_id, uids[0], uids[-1], *other.params, limit - len(left) + 1),
        )
        left += uidlist.numbers(listed or "")
        if len(left) > limit:
            return None
    return without(uids, left)


def _few_days(tx: Tx, box_id: int, day: tuple[str, int], uids: Sequence[int]) -> bool:
    """Whether the day test leaves few enough messages that reading them by the
    ``mail_day`` index beats a pass over the mailbox's rows (SQLite: its planner has no
    statistics of ranges and reads the rows; PostgreSQL's has and chooses itself).
    Counting stops at a sixteenth of the session's messages, so the probe stays cheap."""
    op, value = day
    limit = max(len(uids) // 16, 1)
    counted = tx.scalar(
        "SELECT count(*) FROM (SELECT 1 FROM mail INDEXED BY mail_day"
        f" WHERE mailbox_id = ? AND {schema.DAY_INDEXED} AND internal_day {op} ? LIMIT ?)",
        (box_id, value, limit),
    )
    return int(counted) < limit


def answer(
    tx: Tx,
    box_id: int,
    query: SearchProgram,
    find: str,
    uids: Sequence[int],
    texts: fulltext.TextSearch | None,
    texts_ready: bool,
    kept: KeptAnswers | None = None,
) -> Answer:
    """:func:`translate` and :func:`run` in one transaction (the word index's vocabulary
    is read while translating).  A :func:`stable` query's answer is ``kept`` and given
    again while the mailbox's messages are the same."""
    if kept is not None and not stable(query.key):
        kept = None
    if kept is not None or isinstance(query.key, _OFTEN):
        tx.snapshot()  # the mailbox row and the rows: one snapshot
    clause = translate(query, find, uids, texts, tx)
    if clause is None:
        return Answer(None)
    if clause.texts or clause.counted or kept is None:
        return run(tx, box_id, clause, uids, texts_ready)
    state = _state(tx, box_id)
    if state is None:
        return Answer([])  # the mailbox is gone
    whole = clause.others is not None and _whole(state, uids)
    key = (box_id, clause.sql, tuple(clause.params), uids[0], uids[-1])
    found = kept.get(key, state[0])
    if found is None:
        found, _ = _matching(tx, box_id, clause, uids, whole)
        kept.put(key, state[0], found)
    return Answer(list(found) if whole else among(found, uids), highestmodseq=state[2])
