"""Modified UTF-7 (RFC 3501 5.1.3)."""

from __future__ import annotations

import pytest

from mailserv.syntax import utf7

EXAMPLES = [
    ("INBOX", b"INBOX"),
    ("", b""),
    ("R&D", b"R&-D"),
    ("&", b"&-"),
    ("Entwürfe", b"Entw&APw-rfe"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("😀", b"&2D3eAA-"),
    ("a\tb", b"a&AAk-b"),
    ("Ä&Ö", b"&AMQ-&-&ANY-"),
    ("日本語", b"&ZeVnLIqe-"),
]


@pytest.mark.parametrize(("text", "encoded"), EXAMPLES)
def test_encode(text: str, encoded: bytes) -> None:
    assert utf7.encode(text) == encoded


@pytest.mark.parametrize(("text", "encoded"), EXAMPLES)
def test_decode(text: str, encoded: bytes) -> None:
    assert utf7.decode(encoded) == text


def test_raw_utf8_accepted_literally() -> None:
    assert utf7.decode("Entwürfe".encode()) == "Entwürfe"
    assert utf7.decode("R&D ä".encode()) == "R&D ä"


def test_adjacent_runs_accepted() -> None:
    assert utf7.decode(b"&AOQ-&AOQ-") == "ää"


@pytest.mark.parametrize(
    "raw",
    [
        b"&",  # unterminated shift
        b"&AOQ",  # unterminated shift
        b"a&Jjo!-",  # invalid base64 character
        b"&A-",  # not whole UTF-16 units
        b"&AOQA-",  # 5 characters: not whole units
        b"&AOR-",  # non-zero padding bits
        b"&AGE-",  # shifted printable ASCII ("a")
        b"&ACY-",  # "&" shifted instead of "&-"
        b"&2D0-",  # lone high surrogate
        b"&3gA-",  # lone low surrogate
        b"&AOQ=-",  # padding not allowed
        b"&AOQ/-",  # "/" instead of ","
        b"\xff\xfe",  # neither modified UTF-7 nor UTF-8
        b"\xc3",  # truncated UTF-8
    ],
)
def test_decode_rejects(raw: bytes) -> None:
    with pytest.raises(ValueError):
        utf7.decode(raw)


def test_encode_lone_surrogate_rejected() -> None:
    with pytest.raises(ValueError):
        utf7.encode("a\ud800b")
