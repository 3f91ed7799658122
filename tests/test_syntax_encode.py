"""mailserv.syntax.encode, and the proxy's upstream encoders built on it: the server and the
upstream client write strings, atoms, sets and flags the same way."""

from __future__ import annotations

import pytest

from mailserv.backends.proxy import wire
from mailserv.syntax import encode


@pytest.mark.parametrize(
    "value",
    [b"INBOX", b"NIL", b"", b"two words", b'a "q" \\ b', b"x" * 1000, b"x" * 1024, b"caf\xc3\xa9"],
)
def test_upstream_astring_is_the_server_astring(value: bytes) -> None:
    sent = wire.string(value)
    if isinstance(sent, wire.Literal):
        assert encode.astring(value) == encode.literal(sent.data)
    else:
        assert encode.astring(value) == sent


def test_quoted_never_an_atom() -> None:
    assert encode.quoted(b"abc") == b'"abc"'
    assert encode.quoted(b"a\x01") is None
    assert encode.quoted(b"x" * encode.MAX_QUOTED) is None
    assert wire.quoted("abc") == b'"abc"'
    assert wire.quoted("é") == wire.Literal("é".encode())


def test_is_atom() -> None:
    assert encode.is_atom(b"[Gmail")
    assert not encode.is_atom(b"nil")
    assert not encode.is_atom(b"a]")
    assert not encode.is_atom(b"")


def test_uid_set_and_ranges_round_trip() -> None:
    assert wire.uid_set([9, 3, 4, 5, 5, 1]) == b"1,3:5,9"
    assert wire.uid_set([]) == b""
    assert wire.set_ranges("5:3,9") == [(3, 5), (9, 9)]
    assert wire.uid_ranges("3:5,9") == [3, 4, 5, 9]
    for bad in ("3:*", "", "a", "0", "1,,2", "1:99999999999"):
        with pytest.raises(ValueError):
            wire.set_ranges(bad)
    with pytest.raises(ValueError):
        wire.uid_ranges("1:20000000")


def test_is_flag() -> None:
    assert wire.is_flag("\\Seen")
    assert wire.is_flag("$Label")
    assert not wire.is_flag("\\")
    assert not wire.is_flag("a]b")
    assert not wire.is_flag("é")
    assert not wire.is_flag("two words")
