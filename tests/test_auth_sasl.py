"""SASL mechanisms as the engine drives them: PLAIN and LOGIN exchanges, the registry."""

from __future__ import annotations

import asyncio

import pytest
from twisted.cred.credentials import IUsernamePassword
from zope.interface.verify import verifyObject

from mailserv.auth.sasl import (
    Challenge,
    Credentials,
    ISASLExchange,
    ISASLMechanism,
    Mechanisms,
    SASLContext,
    SASLError,
    SASLFailed,
)
from mailserv.auth.sasl.login import Login
from mailserv.auth.sasl.plain import Plain

TLS = SASLContext(secure=True, plaintext_allowed=True)
CLEAR = SASLContext(secure=False, plaintext_allowed=False)


def run(exchange: ISASLExchange, *responses: bytes | None) -> list[Challenge | Credentials]:
    """Feed ``responses`` in turn; the steps the exchange answered."""

    async def go() -> list[Challenge | Credentials]:
        return [await exchange.step(response) for response in responses]

    return asyncio.run(go())


def user_password(step: Challenge | Credentials) -> tuple[bytes, bytes]:
    assert isinstance(step, Credentials), step
    creds = step.credentials
    assert IUsernamePassword.providedBy(creds)
    return creds.username, creds.password  # type: ignore[attr-defined]


# -- PLAIN ----------------------------------------------------------------------------------


def test_plain_initial_response() -> None:
    (step,) = run(Plain().start(TLS), b"\x00tim\x00tanstaaftanstaaf")
    assert user_password(step) == (b"tim", b"tanstaaftanstaaf")


def test_plain_asks_with_an_empty_challenge() -> None:
    first, second = run(Plain().start(TLS), None, "Kurt\x00Kurt\x00straße".encode())
    assert first == Challenge(b"")
    assert user_password(second) == (b"Kurt", "straße".encode())


def test_plain_keeps_password_octets() -> None:
    (step,) = run(Plain().start(TLS), b"\x00u\x00\xff\xfe p")
    assert user_password(step) == (b"u", b"\xff\xfe p")


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
        (b"\x00t\xc3\x00pw", "user name is not UTF-8"),
    ],
)
def test_plain_rejects_malformed(message: bytes, reason: str) -> None:
    with pytest.raises(SASLError, match=reason):
        run(Plain().start(TLS), message)


def test_plain_other_authorization_identity_fails() -> None:
    with pytest.raises(SASLFailed) as caught:
        run(Plain().start(TLS), b"root\x00tim\x00pw")
    assert caught.value.code == "AUTHORIZATIONFAILED"


# -- LOGIN ----------------------------------------------------------------------------------


def test_login_prompts_then_credentials() -> None:
    steps = run(Login().start(TLS), None, b"tim", b"secret \xff")
    assert steps[:2] == [Challenge(b"Username:"), Challenge(b"Password:")]
    assert user_password(steps[2]) == (b"tim", b"secret \xff")


def test_login_initial_response_is_the_user() -> None:
    steps = run(Login().start(TLS), b"tim", b"pw")
    assert steps[0] == Challenge(b"Password:")
    assert user_password(steps[1]) == (b"tim", b"pw")


@pytest.mark.parametrize(
    ("responses", "reason"),
    [
        ((b"",), "user name is empty"),
        ((b"a\x00b",), "NUL"),
        ((b"\xff",), "not UTF-8"),
        ((b"tim", b""), "password is empty"),
    ],
)
def test_login_rejects(responses: tuple[bytes, ...], reason: str) -> None:
    with pytest.raises(SASLError, match=reason):
        run(Login().start(TLS), *responses)


# -- the registry ---------------------------------------------------------------------------


def test_built_in_mechanisms_are_found_as_plugins() -> None:
    mechanisms = Mechanisms.discover()
    assert mechanisms.offered(TLS)[:2] == ["PLAIN", "LOGIN"]
    plain = mechanisms.find("plain", TLS)
    assert plain is not None and verifyObject(ISASLMechanism, plain)
    assert verifyObject(ISASLExchange, plain.start(TLS))


def test_password_mechanisms_are_not_offered_where_passwords_may_not_cross() -> None:
    mechanisms = Mechanisms([Plain(), Login()])
    assert mechanisms.offered(CLEAR) == []
    assert mechanisms.find("PLAIN", CLEAR) is None
    assert mechanisms.find("NOPE", TLS) is None
