"""SASL PLAIN decoding and the LOGIN exchange."""

from __future__ import annotations

import base64

import pytest

from mailserv.auth.sasl import (
    MAX_ENCODED_RESPONSE,
    MAX_RESPONSE,
    LoginExchange,
    decode_plain,
    decode_response,
    encode_challenge,
)


def test_plain_without_authzid() -> None:
    assert decode_plain(b"\x00tim\x00tanstaaftanstaaf") == ("", "tim", b"tanstaaftanstaaf")


def test_plain_with_authzid_and_utf8() -> None:
    message = b"Ursel\x00Kurt\x00xipj3plmq"
    assert decode_plain(message) == ("Ursel", "Kurt", b"xipj3plmq")
    assert decode_plain("\x00jürgen\x00straße".encode()) == ("", "jürgen", "straße".encode())


def test_plain_password_octets_are_kept() -> None:
    assert decode_plain(b"\x00u\x00\xff\xfe p") == ("", "u", b"\xff\xfe p")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "two NUL"),
        (b"timpassword", "two NUL"),
        (b"\x00tim", "two NUL"),
        (b"a\x00b\x00c\x00d", "two NUL"),
        (b"\x00\x00pw", "empty authentication"),
        (b"\x00tim\x00", "empty password"),
        (b"\xff\x00tim\x00pw", "authorization identity is not UTF-8"),
        (b"\x00t\xc3\x00pw", "authentication identity is not UTF-8"),
        (b"\x00tim\x00" + b"p" * MAX_RESPONSE, "too long"),
    ],
)
def test_plain_rejects(message: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_plain(message)


def test_plain_accepts_255_octet_fields() -> None:
    big = "é" * 127 + "x"  # 255 octets
    message = f"{big}\x00{big}\x00".encode() + b"p" * 255
    assert decode_plain(message) == (big, big, b"p" * 255)


def test_decode_response_strict() -> None:
    assert decode_response(base64.b64encode(b"\x00tim\x00pw")) == b"\x00tim\x00pw"
    assert decode_response(b"=") == b""
    assert decode_response(b"") == b""
    for bad in (b"AB C", b"AB=C", b"A", b"AB\n", b"****", b"QUJD\x00", b"QUJ"):
        with pytest.raises(ValueError, match="base64"):
            decode_response(bad)
    with pytest.raises(ValueError, match="too long"):
        decode_response(b"A" * (MAX_ENCODED_RESPONSE + 4))
    assert len(decode_response(base64.b64encode(b"x" * MAX_RESPONSE))) == MAX_RESPONSE


def test_encode_challenge() -> None:
    assert encode_challenge(b"Username:") == b"VXNlcm5hbWU6"
    assert encode_challenge(b"Password:") == b"UGFzc3dvcmQ6"
    assert encode_challenge(b"") == b""


def test_login_exchange() -> None:
    exchange = LoginExchange()
    assert not exchange.done
    assert exchange.challenge == b"Username:"
    assert exchange.feed(b"tim") is None
    assert exchange.challenge == b"Password:"
    assert exchange.feed(b"secret \xff") == ("tim", b"secret \xff")
    assert exchange.done
    with pytest.raises(ValueError, match="complete"):
        _ = exchange.challenge
    with pytest.raises(ValueError, match="complete"):
        exchange.feed(b"more")


def test_login_exchange_matches_wire_prompts() -> None:
    assert [encode_challenge(c) for c in LoginExchange.challenges] == [
        b"VXNlcm5hbWU6",
        b"UGFzc3dvcmQ6",
    ]


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        (b"", "user name is empty"),
        (b"a\x00b", "NUL"),
        (b"\xff", "not UTF-8"),
        (b"u" * (MAX_RESPONSE + 1), "too long"),
    ],
)
def test_login_exchange_rejects_user(user: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        LoginExchange().feed(user)


def test_login_exchange_rejects_password() -> None:
    exchange = LoginExchange()
    exchange.feed(b"tim")
    with pytest.raises(ValueError, match="password is empty"):
        exchange.feed(b"")
    with pytest.raises(ValueError, match="too long"):
        exchange.feed(b"p" * (MAX_RESPONSE + 1))
    assert exchange.feed(b"ok") == ("tim", b"ok")
