"""Token helpers handlers use to read typed arguments."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from mailserv import errors
from mailserv.imap.arguments import (
    UndecodableName,
    astring,
    date_time,
    flags,
    list_pattern,
    mailbox,
    new_mailbox,
    nstring,
    number,
    number64,
    search_date,
    text_atom,
)
from mailserv.syntax.errors import ParseError
from mailserv.syntax.flags import flag
from mailserv.syntax.tokens import Atom, ParenList, String

LIST = ParenList((Atom("a"),))


def fails(call: object, *arguments: object, match: str | None = None) -> None:
    assert callable(call)
    with pytest.raises(ParseError, match=match):
        call(*arguments)


def test_astring() -> None:
    assert astring(Atom("user")) == b"user"
    assert astring(Atom("NIL")) == b"NIL"
    assert astring(Atom("[Gmail]/Sent")) == b"[Gmail]/Sent"
    assert astring(Atom("ünï")) == "ünï".encode()
    assert astring(String(b"a b")) == b"a b"
    assert astring(String(b"x", literal=True)) == b"x"
    fails(astring, LIST, match="parenthesised list")
    for bad in ("a*", "50%", "\\Seen", "BODY[HEADER (A)]"):
        fails(astring, Atom(bad), match="quote it")


def test_text_atom() -> None:
    assert text_atom(Atom("Fetch")) == "Fetch"
    fails(text_atom, String(b"x"), match="got a quoted string")
    fails(text_atom, String(b"x", literal=True), match="got a literal")
    fails(text_atom, LIST, match="parenthesised list")


def test_nstring() -> None:
    assert nstring(Atom("NIL")) is None
    assert nstring(Atom("nil")) is None
    assert nstring(String(b"NIL")) == b"NIL"
    assert nstring(String(b"", literal=True)) == b""
    fails(nstring, Atom("foo"), match="string or NIL")
    fails(nstring, LIST)


def test_number() -> None:
    assert number(Atom("0")) == 0
    assert number(Atom("4294967295")) == 4294967295
    assert number(Atom("007")) == 7
    fails(number, Atom("4294967296"), match="out of range")
    assert number(Atom("1"), nonzero=True) == 1
    with pytest.raises(ParseError):
        number(Atom("0"), nonzero=True)
    for bad in ("-1", "+1", "1.5", "", "\u0661", "1e3", "9" * 50):
        fails(number, Atom(bad))
    fails(number, String(b"1"))
    fails(number, LIST)


def test_number64() -> None:
    assert number64(Atom(str(2**63 - 1))) == 2**63 - 1
    fails(number64, Atom(str(2**63)), match="out of range")
    with pytest.raises(ParseError):
        number64(Atom("0"), nonzero=True)


def test_flags_normalises_system_flags() -> None:
    assert flags(ParenList((Atom("\\SEEN"), Atom("\\answered"), Atom("$Junk")))) == {
        "\\Seen",
        "\\Answered",
        "$Junk",
    }
    assert flags(Atom("\\deleted")) == {"\\Deleted"}
    assert flags(ParenList(())) == frozenset()
    assert flags(ParenList((Atom("\\Draft"), Atom("\\Flagged"), Atom("\\Recent")))) == {
        "\\Draft",
        "\\Flagged",
        "\\Recent",
    }


def test_keywords_kept_as_sent() -> None:
    assert flags(ParenList((Atom("NonJunk"), Atom("nonjunk")))) == {"NonJunk", "nonjunk"}
    assert flag("[x") == "[x"
    fails(flag, "[x]", match="Invalid flag keyword")


def test_flag_errors() -> None:
    fails(flags, ParenList((Atom("\\Bogus"),)), match="Unknown system flag")
    fails(flags, ParenList((Atom("\\*"),)), match="Unknown system flag")
    fails(flags, ParenList((String(b"x"),)), match="Expected a flag")
    fails(flags, ParenList((ParenList(()),)))
    fails(flags, String(b"\\Seen"), match="flag list")
    for bad in ("a]", "a%", "a*", "ü"):
        fails(flags, Atom(bad), match="Invalid flag keyword")


def test_mailbox() -> None:
    assert mailbox(Atom("inbox")) == "INBOX"
    assert mailbox(String(b"InBoX")) == "INBOX"
    assert mailbox(Atom("inbox/Sub")) == "INBOX/Sub"
    assert mailbox(Atom("INBOXES")) == "INBOXES"
    assert mailbox(Atom("Archive")) == "Archive"
    assert mailbox(String(b"Entw&APw-rfe")) == "Entwürfe"
    assert mailbox(String("Entwürfe".encode())) == "Entwürfe"
    assert mailbox(Atom("R&-D")) == "R&D"
    assert mailbox(String(b"")) == ""
    assert mailbox(Atom("[Gmail]/Sent Mail".replace(" ", "_"))) == "[Gmail]/Sent_Mail"


def test_mailbox_errors() -> None:
    fails(mailbox, String(b"a\x00b"), match="NUL, CR or LF")
    fails(mailbox, String(b"a\r\nb", literal=True), match="NUL, CR or LF")
    fails(mailbox, String(b"x" * 1025), match="too long")
    assert mailbox(String(b"x" * 1024)) == "x" * 1024
    assert mailbox(String(b"x" * 20), max_bytes=20) == "x" * 20
    fails(mailbox, Atom("foo*"), match="quote it")
    fails(mailbox, LIST)


def test_undecodable_mailbox_names_name_no_mailbox() -> None:
    """A valid astring that is not modified UTF-7 (nor UTF-8) is a name no mailbox has:
    a NO (no such mailbox; cannot create), not a syntax error."""
    for raw in (b"&Jjo", b"\xff", b"!#$&'+,-.0123456789:;<=>?@^_`|[}"):
        with pytest.raises(errors.MailboxNotFound, match="modified UTF-7"):
            mailbox(String(raw))
        with pytest.raises(errors.InvalidMailboxName, match="modified UTF-7"):
            new_mailbox(String(raw))
        with pytest.raises(UndecodableName):
            list_pattern(String(raw))


def test_list_pattern() -> None:
    assert list_pattern(Atom("*")) == "*"
    assert list_pattern(Atom("%")) == "%"
    assert list_pattern(Atom("inbox")) == "INBOX"
    assert list_pattern(Atom("Inbox/%")) == "INBOX/%"
    assert list_pattern(Atom("foo/*")) == "foo/*"
    assert list_pattern(Atom("[Gmail]/%")) == "[Gmail]/%"
    assert list_pattern(String(b"")) == ""
    assert list_pattern(String(b"&AOQ-*")) == "ä*"
    fails(list_pattern, Atom("a\\b"), match="quote it")
    fails(list_pattern, String(b"a\nb"))
    fails(list_pattern, String(b"x" * 1025), match="too long")
    fails(list_pattern, LIST)


def test_search_date() -> None:
    assert search_date(Atom("1-Feb-1994")) == date(1994, 2, 1)
    assert search_date(Atom("01-feb-1994")) == date(1994, 2, 1)
    assert search_date(String(b"29-FEB-2024")) == date(2024, 2, 29)
    for bad in (
        "29-Feb-2023",
        "1-Foo-2020",
        "1994-02-01",
        "1-Feb-94",
        "123-Feb-1994",
        " 1-Feb-1994",
    ):
        fails(search_date, Atom(bad))
    fails(search_date, String(b"\xff"))
    fails(search_date, LIST)


def test_date_time() -> None:
    cet = timezone(timedelta(hours=1))
    assert date_time(String(b"17-Jul-1996 02:44:25 -0700")) == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))
    )
    assert date_time(String(b" 5-jan-2024 10:00:00 +0100")) == datetime(
        2024, 1, 5, 10, 0, 0, tzinfo=cet
    )
    assert date_time(String(b"5-Jan-2024 10:00:00 +0530")).utcoffset() == timedelta(
        hours=5, minutes=30
    )
    assert date_time(String(b"05-Jan-2024 23:59:59 +0000")).tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        b"17-Jul-1996 02:44:25",
        b"17-Jul-1996 24:00:00 +0000",
        b"17-Jul-1996 02:60:00 +0000",
        b"31-Apr-1996 02:44:25 +0000",
        b"17-Jul-1996 02:44:25 +2400",
        b"17-Jul-1996 02:44:25 +0060",
        b"17-Jul-1996  2:44:25 +0000",
        b"17-Jly-1996 02:44:25 +0000",
        b"",
        b"\xff",
    ],
)
def test_date_time_errors(text: bytes) -> None:
    fails(date_time, String(text))


def test_date_time_must_be_string() -> None:
    fails(date_time, Atom("17-Jul-1996"), match="quoted date-time")
