"""SEARCH from the maildir index: a query becomes one SQL statement, run in a thread.

Internal dates, sizes and UID sets come from the ``message`` table, flags and MODSEQ from
``flag``; the
header fields, the Date: header's day and the texts of TEXT and BODY from ``search`` and
``fulltext`` (see ``textrow``), which hold exactly what the engine's evaluator compares,
case-folded as it does.  A substring test is ``instr()`` on those values (bytes for the
fields, so lone surrogates compare as the evaluator's strings do).  For TEXT and BODY the
trigram index's phrase MATCH is the answer when its case folding provably equals ours for
the needle (:func:`exact`: nearly always), so no text is read; otherwise it narrows the rows
down (every row holding the needle matches it) for ``instr()``.  Needles shorter than a
trigram, and the texts not in the trigram index yet (``pending``), use ``instr()`` alone.
The texts of messages gone stay in the indexes a while (``forgetting``): a TEXT or BODY
alone leaves them out, other queries find only the UIDs of ``message``.
The rows whose texts SQLite cannot hold as text are compared as bytes in ``search``.

HEADER of the fields ``search`` does not keep is narrowed down: a message whose field
holds the needle has it in its decoded header too (``texts.header`` holds every field as
``name: value``, case-folded as the evaluator's values), and one that has the field has its
name at the start of a line there.  :func:`run` then gives those messages as
:class:`~mailserv.interfaces.Narrowed`, for the engine to read and evaluate them alone
(a HEADER Message-ID search of 100k messages read every file: 15 s).  Not under a NOT: the
complement of a superset is no superset.

Keys the index cannot answer at all (sequence numbers, huge UID lists, very deep trees,
texts while the index of a mailbox is still being built) make :func:`run` return None: the
engine evaluates the query itself.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection, Sequence
from datetime import date
from typing import Any

from mailserv.backends.kit import uidlist
from mailserv.backends.kit import words as vocabulary
from mailserv.backends.kit.words import exact, indexable
from mailserv.backends.maildir import words
from mailserv.backends.maildir.textrow import blob
from mailserv.interfaces import SYSTEM_FLAGS, Narrowed
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
    walk,
)
from mailserv.syntax.sequences import merge

DEPTH_LIMIT = 64
RANGE_LIMIT = 200
LIST_LIMIT = 1000
TRIGRAM = 3

_CANONICAL = {flag.casefold(): flag for flag in SYSTEM_FLAGS}
_FIELD_COLUMNS = {
    StringField.FROM: "s.from_",
    StringField.TO: "s.to_",
    StringField.CC: "s.cc",
    StringField.BCC: "s.bcc",
    StringField.SUBJECT: "s.subject",
}
_HEADER_LINE_COLUMNS = {
    "from": "s.hfrom",
    "to": "s.hto",
    "cc": "s.hcc",
    "bcc": "s.hbcc",
    "subject": "s.subject",
}
_TEXT_COLUMNS = {StringField.BODY: ("body",), StringField.TEXT: ("header", "body")}
_ADDRESSES = frozenset({"s.from_", "s.to_", "s.cc", "s.bcc", "s.hfrom", "s.hto", "s.hcc", "s.hbcc"})
_OPERATORS = {DateOp.BEFORE: "<", DateOp.ON: "=", DateOp.SINCE: ">="}
_FIELD_NAME = re.compile(r"[!-9;-~]+")
"""A header field name (RFC 5322: printable ASCII but the colon)."""
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_LOCAL = "(m.date + 60 * m.tz)"
"""The internal date's wall-clock seconds in its own offset: its calendar day is the floor
of this over 86400, so comparing days is comparing this with a day's first second."""
_DAY = 86400
YES, NO = "1", "0"


class Declined(Exception):
    """The engine evaluates this query."""


def needs_texts(query: SearchProgram) -> bool:
    """Whether ``query`` looks at the search rows (header fields, Date:, TEXT, BODY)."""
    return any(isinstance(k, Contains) or _sent(k) for k in walk(query.key))


def _sent(key: SearchKey) -> bool:
    return isinstance(key, DateCompare) and key.field is DateField.SENT


def run(
    db: sqlite3.Connection,
    query: SearchProgram,
    uids: Sequence[int],
    flag_names: Collection[str],
    fulltext: bool,
) -> list[int] | Narrowed | None:
    """The UIDs among ``uids`` (ascending) that match, those among which the matches are
    (:class:`Narrowed`), or None to decline (any thread).

    ``flag_names``: every flag spelling stored in the mailbox (or more); ``fulltext``:
    whether the index has its ``fulltext`` table.
    """
    if not uids:
        return []
    sql = _Sql(uids[-1], flag_names, fulltext, db)
    key = query.key
    if isinstance(key, Contains) and key.field in _TEXT_COLUMNS and key.value:
        # TEXT or BODY alone: the union of where it is found, without the message rows
        # (every text row has one).  The parts are disjoint: a message's texts are either
        # in ``search`` or in ``texts``, and then either ``pending`` or in ``fulltext``.
        # Texts of messages gone may still be in the indexes (``forgetting``): left out.
        parts = sql.texts(key.value.casefold(), _TEXT_COLUMNS[key.field])
        gone = " AND uid NOT IN (SELECT uid FROM forgetting)" if fulltext else ""
        statement = (
            f"SELECT group_concat(uid) FROM ({' UNION ALL '.join(parts)}) "
            f"WHERE uid BETWEEN ? AND ?{gone}"
        )
        params = (*sql.params, uids[0], uids[-1])
    else:
        try:
            where = sql.key(key, 0)
        except Declined:
            return None
        tables = "message m"
        if sql.flagged:
            tables += " JOIN flag f ON f.uid = m.uid"
        if sql.joined:
            tables += " LEFT JOIN search s ON s.uid = m.uid"
        statement = (
            f"SELECT group_concat(m.uid) FROM {tables} WHERE m.uid BETWEEN ? AND ? AND {where}"
        )
        params = (uids[0], uids[-1], *sql.params)
    # One string, not a row per match: four times faster when most messages match.
    (listed,) = db.execute(statement, params).fetchone()
    found = sorted(uidlist.numbers(listed or ""))
    if len(uids) != uids[-1] - uids[0] + 1:  # else every UID of the range is the session's
        wanted = set(uids)
        found = [uid for uid in found if uid in wanted]
    return Narrowed(found) if sql.narrowed else found


class _Sql:
    def __init__(
        self,
        largest: int,
        flag_names: Collection[str],
        fulltext: bool,
        db: sqlite3.Connection | None = None,
    ) -> None:
        self.largest = largest
        self.flag_names = flag_names
        self.fulltext = fulltext
        self.db = db
        """Where the words of the word index are looked up (None: the trigram index alone)."""
        self.words_ready: bool | None = None
        self.params: list[Any] = []
        self.joined = False
        """Whether the query reads ``search`` (joined to ``message``)."""
        self.flagged = False
        """Whether it reads ``flag``."""
        self.narrowed = False
        """Whether the query's answer is a superset, for the engine to evaluate."""
        self.negated = 0
        """NOTs around the key being translated."""

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def key(self, key: SearchKey, depth: int) -> str:
        if depth > DEPTH_LIMIT:
            raise Declined()
        match key:
            case All():
                return YES
            case HasFlag(flag=flag, present=present):
                test = self.flag(flag)
                return test if present else f"NOT {test}"  # test is parenthesised
            case Contains():
                return self.contains(key)
            case DateCompare(field=DateField.INTERNAL, op=op, date=day):
                start = (day.toordinal() - _EPOCH_DAY) * _DAY
                if op is DateOp.ON:
                    return f"{_LOCAL} BETWEEN {self.bind(start)} AND {self.bind(start + _DAY - 1)}"
                return f"{_LOCAL} {_OPERATORS[op]} {self.bind(start)}"
            case DateCompare(op=op, date=day):
                self.joined = True
                return f"coalesce(s.sent_day {_OPERATORS[op]} {self.bind(day.toordinal())}, 0)"
            case InternalSince(moment=moment):
                return f"m.date >= {self.bind(int(moment.timestamp()))}"
            case SizeCompare(larger=larger, size=size):
                return f"m.size {'>' if larger else '<'} {self.bind(size)}"
            case InSet(set=members, uid=True):
                return self.ranges(members.resolve(self.largest))
            case UidIn(uids=members):
                return self.listed(members)
            case ModSeqAtLeast(modseq=modseq):
                self.flagged = True
                return f"f.modseq >= {self.bind(modseq)}"
            case Not(key=inner):
                self.negated += 1
                try:
                    return f"NOT ({self.key(inner, depth + 1)})"
                finally:
                    self.negated -= 1
            case Or(left=left, right=right):
                return f"({self.key(left, depth + 1)} OR {self.key(right, depth + 1)})"
            case And(keys=keys):
                terms = [self.key(k, depth + 1) for k in keys]
                return "(" + " AND ".join(terms) + ")" if terms else YES
        raise Declined()  # sequence numbers (bind() makes them UidIn), or a new kind of key

    def flag(self, flag: str) -> str:
        """As the evaluator: the canonical system flag, or any stored spelling that
        case-folds to the same."""
        folded = flag.casefold()
        if folded == "\\recent":
            raise Declined()  # bind() replaces it; never stored
        spellings = {name for name in self.flag_names if name.casefold() == folded}
        spellings.add(_CANONICAL.get(folded, flag))
        self.flagged = True
        tests = [
            f"instr(' ' || f.flags || ' ', {self.bind(f' {name} ')}) > 0"
            for name in sorted(spellings)
        ]
        return "(" + " OR ".join(tests) + ")"

    def contains(self, key: Contains) -> str:
        needle = key.value.casefold()
        column = _FIELD_COLUMNS.get(key.field)
        if key.field is StringField.HEADER:
            column = _HEADER_LINE_COLUMNS.get(key.header.lower()) if needle else None
            if column is None:  # other fields, or "has this header": the raw header
                return self.header_candidates(key.header, needle)
        if not needle:
            return YES
        if column is not None:
            if column in _ADDRESSES and SEPARATOR in needle:
                return NO  # no line of an address field holds one
            self.joined = True
            return f"instr({column}, {self.bind(blob(needle))}) > 0"
        parts = self.texts(needle, _TEXT_COLUMNS[key.field])
        return "(" + " OR ".join(f"m.uid IN ({part})" for part in parts) + ")"

    def header_candidates(self, name: str, needle: str) -> str:
        """The messages that may have ``needle`` in a field ``name`` (any, if empty): those
        with the needle in their decoded header and the name at the start of one of its
        lines there (or an empty header: one the decoder gave up on)."""
        if self.negated:
            raise Declined()
        tests = []
        if needle:
            parts = self.texts(needle, ("header",))
            parts.append("SELECT o.uid FROM search o WHERE o.header = X''")
            if self.fulltext:
                parts.append("SELECT t.uid FROM texts t WHERE t.header = ''")
            tests.append("(" + " OR ".join(f"m.uid IN ({part})" for part in parts) + ")")
        if _FIELD_NAME.fullmatch(name):
            # Read for the rows the needle left (SQLite's AND goes on only when true).
            # (Placeholders are bound in the order they appear in the text.)
            line = "\n" + name.lower() + ":"
            rows = []
            if self.fulltext:
                rows.append(
                    f"(SELECT instr(char(10) || t.header, {self.bind(line)}) > 0 "
                    "OR t.header = '' FROM texts t WHERE t.uid = m.uid)"
                )
            rows.append(
                f"(SELECT instr(X'0A' || o.header, {self.bind(blob(line))}) > 0 "
                "OR o.header = X'' FROM search o WHERE o.uid = m.uid AND o.header IS NOT NULL)"
            )
            tests.append(f"coalesce({', '.join(rows)}, 1)")
        if not tests:
            raise Declined()
        self.narrowed = True
        return "(" + " AND ".join(tests) + ")"

    def texts(self, needle: str, columns: tuple[str, ...]) -> list[str]:
        """Statements whose ``uid`` rows together are the messages with ``needle`` in any
        of ``columns``: from the trigram index where the text is there, compared as bytes
        for the rows kept in ``search``."""
        # Placeholders are bound in the order they appear in the text.
        odd = " OR ".join(f"instr(o.{c}, {self.bind(blob(needle))}) > 0" for c in columns)
        # (Such rows have both texts, other rows neither: ``search_odd`` finds them.)
        parts = [f"SELECT o.uid FROM search o WHERE o.header IS NOT NULL AND ({odd})"]
        if not (self.fulltext and indexable(needle)):
            return parts
        if len(needle) < TRIGRAM:
            found = self.found("t", needle, columns)
            parts.append(f"SELECT t.uid FROM texts t WHERE {found}")
        elif exact(needle):
            # The index's answer is the answer; only texts not in it yet are read.
            terms = self.terms(needle)
            if terms is None:
                pattern = self.bind(vocabulary.phrase(needle, columns))
                parts.append(f"SELECT rowid AS uid FROM fulltext WHERE fulltext MATCH {pattern}")
            else:  # the word index's (see ``words``), and the texts left out of it
                pattern = self.bind(vocabulary.query(terms, columns))
                parts.append(f"SELECT rowid AS uid FROM words WHERE words MATCH {pattern}")
                found = self.found("t", needle, columns)
                parts.append(
                    "SELECT t.uid FROM long_texts l CROSS JOIN texts t ON t.uid = l.uid "
                    f"WHERE l.uid NOT IN (SELECT uid FROM pending) AND ({found})"
                )
            found = self.found("t", needle, columns)
            parts.append(
                f"SELECT t.uid FROM pending p CROSS JOIN texts t ON t.uid = p.uid WHERE {found}"
            )
        else:
            pattern = self.bind(vocabulary.phrase(needle, columns))
            found = self.found("t", needle, columns)
            parts.append(
                "SELECT t.uid FROM texts t WHERE (t.uid IN (SELECT rowid FROM fulltext WHERE "
                f"fulltext MATCH {pattern}) OR t.uid IN (SELECT uid FROM pending)) AND ({found})"
            )
        return parts

    def terms(self, needle: str) -> list[str] | None:
        """The words of the word index containing ``needle``, when it can answer."""
        if self.db is None:
            return None
        if self.words_ready is None:
            self.words_ready = words.ready(self.db)
        return vocabulary.terms(self.db, needle) if self.words_ready else None

    def found(self, table: str, needle: str, columns: tuple[str, ...]) -> str:
        return " OR ".join(f"instr({table}.{c}, {self.bind(needle)}) > 0" for c in columns)

    def ranges(self, ranges: Sequence[tuple[int, int]]) -> str:
        if not ranges:
            return NO
        if len(ranges) > RANGE_LIMIT:
            raise Declined()
        parts = [f"m.uid BETWEEN {self.bind(low)} AND {self.bind(high)}" for low, high in ranges]
        return "(" + " OR ".join(parts) + ")"

    def listed(self, uids: frozenset[int]) -> str:
        runs = merge((uid, uid) for uid in uids)
        if len(runs) <= RANGE_LIMIT:
            return self.ranges(runs)
        if len(uids) > LIST_LIMIT:
            raise Declined()
        return "m.uid IN (" + ", ".join(self.bind(uid) for uid in sorted(uids)) + ")"
