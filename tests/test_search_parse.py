"""parse_search: every RFC 3501 key, CHARSET, bounds, error texts, keys of extensions."""

from __future__ import annotations

from datetime import date

import pytest
from test_search_support import toks

from mailserv.imap.search.parse import BadCharset, KeyReader, parse_search
from mailserv.interfaces import RECENT
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
    SizeCompare,
    StringField,
    walk,
)
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import String


def key(*items: object) -> SearchKey:
    return parse_search(toks(*items)).key


def error(*items: object, max_keys: int = 1000) -> str:
    with pytest.raises(ParseError) as info:
        parse_search(toks(*items), max_keys=max_keys)
    return info.value.text


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ALL", All()),
        ("ANSWERED", HasFlag("\\Answered")),
        ("DELETED", HasFlag("\\Deleted")),
        ("DRAFT", HasFlag("\\Draft")),
        ("FLAGGED", HasFlag("\\Flagged")),
        ("RECENT", HasFlag(RECENT)),
        ("SEEN", HasFlag("\\Seen")),
        ("UNANSWERED", HasFlag("\\Answered", False)),
        ("UNDELETED", HasFlag("\\Deleted", False)),
        ("UNDRAFT", HasFlag("\\Draft", False)),
        ("UNFLAGGED", HasFlag("\\Flagged", False)),
        ("UNSEEN", HasFlag("\\Seen", False)),
        ("NEW", And((HasFlag(RECENT), HasFlag("\\Seen", False)))),
        ("OLD", HasFlag(RECENT, False)),
    ],
)
def test_flag_keys(name: str, expected: SearchKey) -> None:
    assert key(name) == expected
    assert key(name.lower()) == expected
    assert key(name.title()) == expected


@pytest.mark.parametrize("name", ["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"])
def test_string_keys(name: str) -> None:
    field = StringField(name)
    assert key(name, "atom") == Contains(field, "atom")
    assert key(name.lower(), b"quoted string") == Contains(field, "quoted string")
    assert key(name, String(b"lit\r\neral", literal=True)) == Contains(field, "lit\r\neral")
    assert key(name, b"") == Contains(field, "")
    assert error(name) == f"{name} needs a string"
    assert error(name, ["SEEN"]) == f"{name} needs a string"


@pytest.mark.parametrize(
    ("name", "field", "op"),
    [
        ("BEFORE", DateField.INTERNAL, DateOp.BEFORE),
        ("ON", DateField.INTERNAL, DateOp.ON),
        ("SINCE", DateField.INTERNAL, DateOp.SINCE),
        ("SENTBEFORE", DateField.SENT, DateOp.BEFORE),
        ("SENTON", DateField.SENT, DateOp.ON),
        ("SENTSINCE", DateField.SENT, DateOp.SINCE),
    ],
)
def test_date_keys(name: str, field: DateField, op: DateOp) -> None:
    assert key(name, "1-Feb-1994") == DateCompare(field, op, date(1994, 2, 1))
    assert key(name.lower(), b"28-feb-2024") == DateCompare(field, op, date(2024, 2, 28))
    text = f"{name} needs a date (d-Mon-yyyy)"
    assert error(name) == text
    assert error(name, "yesterday") == text
    assert error(name, "31-Feb-2024") == text
    assert error(name, ["1-Feb-1994"]) == text


def test_header() -> None:
    assert key("HEADER", "Message-ID", b"<a@b>") == Contains(
        StringField.HEADER, "<a@b>", "Message-ID"
    )
    assert key("header", b"X-Spam", b"") == Contains(StringField.HEADER, "", "X-Spam")
    assert error("HEADER") == "HEADER needs a field name and a string"
    assert error("HEADER", "X-Spam") == "HEADER needs a field name and a string"
    assert error("HEADER", b"", b"x").startswith("Invalid header field name")
    assert error("HEADER", b"a:b", b"x").startswith("Invalid header field name")
    assert error("HEADER", b"a b", b"x").startswith("Invalid header field name")
    assert error("HEADER", "\xe9".encode(), b"x") == "Invalid header field name"


def test_keyword() -> None:
    assert key("KEYWORD", "$Junk") == HasFlag("$Junk")
    assert key("unkeyword", "$Junk") == HasFlag("$Junk", False)
    assert error("KEYWORD") == "KEYWORD needs a flag keyword"
    assert error("KEYWORD", b"$Junk") == "KEYWORD needs a flag keyword"
    assert error("UNKEYWORD", ["x"]) == "UNKEYWORD needs a flag keyword"


def test_sizes() -> None:
    assert key("LARGER", "100") == SizeCompare(True, 100)
    assert key("smaller", "0") == SizeCompare(False, 0)
    assert key("LARGER", "4294967295") == SizeCompare(True, 4294967295)
    assert error("LARGER") == "LARGER needs a number"
    assert error("SMALLER", "-1") == "SMALLER needs a number"
    assert error("SMALLER", "4294967296") == "SMALLER needs a number"
    assert error("LARGER", b"100") == "LARGER needs a number"


def test_not_or_lists() -> None:
    assert key("NOT", "SEEN") == Not(HasFlag("\\Seen"))
    assert key("OR", "SEEN", "FLAGGED") == Or(HasFlag("\\Seen"), HasFlag("\\Flagged"))
    assert key("OR", ["SEEN", "DRAFT"], "NOT", "FLAGGED") == Or(
        And((HasFlag("\\Seen"), HasFlag("\\Draft"))), Not(HasFlag("\\Flagged"))
    )
    assert key(["SEEN"]) == HasFlag("\\Seen")
    assert key("SEEN", "DRAFT") == And((HasFlag("\\Seen"), HasFlag("\\Draft")))
    assert error("NOT") == "NOT needs a search key"
    assert error("OR") == "OR needs two search keys"
    assert error("OR", "SEEN") == "OR needs two search keys"
    assert error([]) == "Empty parenthesised search key list"
    assert error("NOT", "SUBJECT") == "SUBJECT needs a string"


def test_sequence_sets() -> None:
    node = key("1:3,5,*")
    assert isinstance(node, InSet) and not node.uid
    assert node.set.resolve(10) == [(1, 3), (5, 5), (10, 10)]
    node = key("UID", "7:*")
    assert isinstance(node, InSet) and node.uid
    assert node.set.resolve(9) == [(7, 9)]
    assert error("1:x").startswith("Invalid sequence set")
    assert error("0").startswith("Invalid sequence set")
    assert error("UID") == "UID needs a sequence set"
    assert error("UID", b"1:2") == "UID needs a sequence set"
    assert error("UID", "a").startswith("Invalid UID set")


def test_modseq_is_not_a_key() -> None:
    """The bare parser has no MODSEQ key (RFC 7162's CONDSTORE module registers it)."""
    assert error("MODSEQ", "5") == "Unknown search key MODSEQ"
    assert error("OR", "SEEN", "NOT", "modseq", "5") == "Unknown search key modseq"


def test_an_extension_adds_a_key() -> None:
    def read(reader: KeyReader, name: str, depth: int) -> SearchKey:
        reader.next_token("XSIZE needs a number")
        return SizeCompare(True, 1000)

    extra = {"XBIG": read}
    program = parse_search(toks("SEEN", "XBIG", "x"), extra=extra)
    assert program.key == And((HasFlag("\\Seen"), SizeCompare(True, 1000)))
    program = parse_search(toks(["OR", "XBIG", "1", "DRAFT"]), extra=extra)
    assert program.key == Or(SizeCompare(True, 1000), HasFlag("\\Draft"))
    with pytest.raises(ParseError, match="XSIZE needs a number"):
        parse_search(toks("XBIG"), extra=extra)
    assert error("XBIG", "1") == "Unknown search key XBIG"


def test_charset() -> None:
    program = parse_search(toks("CHARSET", "utf-8", "SUBJECT", "Gr\xfc\xdfe".encode()))
    assert program.charset == "UTF-8"
    assert program.key == Contains(StringField.SUBJECT, "Gr\xfc\xdfe")
    program = parse_search(toks("charset", b"US-ASCII", "ALL"))
    assert program.charset == "US-ASCII" and program.key == All()
    assert parse_search(toks("ALL")).charset is None
    with pytest.raises(BadCharset) as info:
        parse_search(toks("CHARSET", "ISO-8859-1", "ALL"))
    assert info.value.charset == "ISO-8859-1"
    assert info.value.response_code == b"BADCHARSET (UTF-8 US-ASCII)"
    assert error("CHARSET") == "CHARSET needs a charset name"
    assert error("CHARSET", ["x"]) == "CHARSET needs a charset name"
    assert error("CHARSET", "UTF-8") == "SEARCH needs at least one search key"


def test_utf8_strings() -> None:
    assert key("SUBJECT", "\u65e5\u672c".encode()) == Contains(StringField.SUBJECT, "\u65e5\u672c")
    assert error("CHARSET", "UTF-8", "SUBJECT", b"\xff\xfe") == "SUBJECT string is not valid UTF-8"
    assert error("HEADER", "X", b"\xc3") == "HEADER string is not valid UTF-8"


def test_general_errors() -> None:
    assert error() == "SEARCH needs at least one search key"
    assert error("FOO") == "Unknown search key FOO"
    assert error("CHARSET", "UTF-8", "X" * 100) == "Unknown search key " + "X" * 40
    assert error(b"SEEN") == "Search key expected, got a string"
    assert error("") == "Unknown search key "


def test_key_limit() -> None:
    parse_search(toks(*["SEEN"] * 10), max_keys=10)
    assert error(*["SEEN"] * 11, max_keys=10) == "Too many search keys"
    assert error("NOT", ["SEEN", "SEEN"], max_keys=3) == "Too many search keys"
    assert error(*["SEEN"] * 1001) == "Too many search keys"


def test_depth_limit() -> None:
    nested: object = "SEEN"
    for _ in range(200):
        nested = [nested]
    assert error(nested) == "Search keys nested too deeply"
    assert error(*["NOT"] * 500, "SEEN") == "Search keys nested too deeply"
    assert error(*["OR", "SEEN"] * 300, "SEEN") == "Search keys nested too deeply"
    deep = key(*["NOT"] * 60, "SEEN")
    assert len(walk(deep)) == 61
