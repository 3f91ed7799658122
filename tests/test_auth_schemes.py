"""Password schemes: known hashes per scheme, prefix handling, never an exception."""

from __future__ import annotations

from typing import cast

import pytest
from argon2 import PasswordHasher

from mailserv.auth.schemes import SUPPORTED_SCHEMES, hash_password, split_scheme, verify_password

PW = "pässwörd".encode()

# glibc/libxcrypt crypt(3) output (Python 3.11's crypt module) and published SHA-crypt vectors.
SHA512 = (
    "$6$DovecotSalt$sSagoHSeJGLzmrJnVBjEsPFQsetkq4lA8JK41qPVU0iKJ0fxuhfRhHPbQJCOOymoOxqXmEI7CWe"
    "jENnVgqUaZ1"
)
SHA512_ROUNDS = (
    "$6$rounds=5000$Dovecot.Salt.16$kw.he2JzmpZxpnBU9if9bFJw1i21PSa3zcOf9NeJRxXy2IfGTaJTsF1gQzhz"
    "S.oyv6gbHrGly/srIwsgrnks10"
)
SHA256 = "$5$DovecotSalt$mobYdiBqchNL2NcfKYeT03xByBAzLt1d7gTwgGszmP0"
MD5 = "$1$DovecotS$56Oxe5pdT/kH3X7xEv.68/"
# Ulrich Drepper's SHA-crypt specification test vectors.
DREPPER = [
    ("$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", b"Hello world!"),
    (
        "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
        b"the minimum number is still observed",
    ),
    (
        (
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFd"
            "cbYEdFCoEOfaS35inz1"
        ),
        b"Hello world!",
    ),
    (
        (
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/Urj"
            "mM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
        ),
        b"Hello world!",
    ),
]
# crypt_blowfish / OpenBSD vectors, and a $2y$ hash as Dovecot writes them.
BCRYPT = [
    ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", b"U*U"),
    ("$2y$05$abcdefghijklmnopqrstuuZVEMa1pjhlynBQ1qXmSvGBJpN9h1w8G", PW),
]
ARGON2ID = (
    "$argon2id$v=19$m=64,t=1,p=1$bWFpbHNlcnYtc2FsdC0xNg$8hba3nEwoT3WjVHV5Ytn4E3EGmxCpl8WjyzV449lWRs"
)
ARGON2I = (
    "$argon2i$v=19$m=64,t=1,p=1$bWFpbHNlcnYtc2FsdC0xNg$tIjSxEiiX3SV+KUSBb6o4Bod+6NR/nwHU3fOBWypgGA"
)
FAST = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.mark.parametrize(
    ("stored", "password"),
    [
        ("{PLAIN}" + PW.decode(), PW),
        ("{CLEARTEXT}secret", b"secret"),
        ("{plain}secret", b"secret"),  # scheme names are case-insensitive
        ("{SHA512-CRYPT}" + SHA512, PW),
        ("{SHA512-CRYPT}" + SHA512_ROUNDS, PW),
        ("{SHA256-CRYPT}" + SHA256, PW),
        ("{MD5-CRYPT}" + MD5, PW),
        *[("{SHA256-CRYPT}" + h, p) for h, p in DREPPER if h.startswith("$5$")],
        *[("{SHA512-CRYPT}" + h, p) for h, p in DREPPER if h.startswith("$6$")],
        *[("{BLF-CRYPT}" + h, p) for h, p in BCRYPT],
        ("{ARGON2ID}" + ARGON2ID, b"correct horse"),
        ("{ARGON2I}" + ARGON2I, b"correct horse"),
    ],
)
def test_known_hashes_verify(stored: str, password: bytes) -> None:
    assert verify_password(stored, password)
    assert not verify_password(stored, password + b"x")
    assert not verify_password(stored, b"")


@pytest.mark.parametrize(
    ("stored", "password"),
    [
        (SHA512, PW),
        (SHA256, PW),
        (MD5, PW),
        (BCRYPT[0][0], b"U*U"),
        (BCRYPT[1][0], PW),
        (ARGON2ID, b"correct horse"),
        (ARGON2I, b"correct horse"),
    ],
)
def test_bare_crypt_values_by_marker(stored: str, password: bytes) -> None:
    assert verify_password(stored, password)
    assert not verify_password(stored, b"wrong")


def test_sha_crypt_matches_the_platform_crypt() -> None:
    """Cross-check against crypt(3) where Python still has the module (3.11, 3.12)."""
    crypt = pytest.importorskip("crypt")
    for salt in ("$5$abc", "$6$rounds=2000$0123456789abcdef", "$6$x"):
        for password in ("", "a", "pässwörd", "x" * 200):
            assert verify_password(crypt.crypt(password, salt), password.encode())


def test_bcrypt_long_passwords_are_truncated_like_crypt_blowfish() -> None:
    import bcrypt

    stored = bcrypt.hashpw(b"y" * 72, bcrypt.gensalt(4)).decode()
    assert verify_password("{BLF-CRYPT}" + stored, b"y" * 100)
    assert not verify_password("{BLF-CRYPT}" + stored, b"y" * 71)


def test_argon2_schemes_accept_either_variant() -> None:
    assert verify_password("{ARGON2I}" + ARGON2ID, b"correct horse")
    assert verify_password("{ARGON2ID}" + ARGON2I, b"correct horse")


@pytest.mark.parametrize(
    "stored",
    [
        "{SSHA}abcdef",  # a real Dovecot scheme we do not support
        "{NOPE}secret",
        "{PLAIN",  # unterminated prefix
        "secret",  # no prefix, no crypt marker (DES crypt)
        "",
        "{SHA512-CRYPT}not-a-hash",
        "{SHA512-CRYPT}$6$rounds=10$salt$abc",
        "{SHA256-CRYPT}$5$salt$tooshort",
        "{BLF-CRYPT}$2y$05$short",
        "{BLF-CRYPT}$2y$05$" + "é" * 53,
        "{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$garbage",
        "{ARGON2ID}$argon2d$v=19$m=64,t=1,p=1$bWFpbHNlcnYtc2FsdC0xNg$8hba3nEwoT3WjVHV5Ytn4E3E",
        "{ARGON2ID}" + SHA512,
        "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "$argon2d$v=19$m=64,t=1,p=1$bWFpbHNlcnYtc2FsdC0xNg$8hba3nEwoT3WjVHV5Ytn4E3E",
    ],
)
def test_unusable_values_refuse_without_raising(stored: str) -> None:
    assert verify_password(stored, b"secret") is False


def test_unusable_value_is_logged() -> None:
    from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

    seen: list[LogEvent] = []
    observer = cast(ILogObserver, seen.append)
    globalLogPublisher.addObserver(observer)
    try:
        assert not verify_password("{WHIRLPOOL}abc", b"abc")
        assert not verify_password("{SHA512-CRYPT}$6$broken", b"abc")
    finally:
        globalLogPublisher.removeObserver(observer)
    formats = [e.get("log_format", "") for e in seen]
    assert any("Unsupported password scheme" in f for f in formats)
    assert any("Unusable" in f for f in formats)


def test_plain_with_unicode_and_colon_free_text() -> None:
    assert verify_password("{PLAIN}ünï", "ünï".encode())
    assert not verify_password("{PLAIN}ünï", "ünï".encode("latin-1"))


def test_split_scheme() -> None:
    assert split_scheme("{sha512-crypt}$6$x") == ("SHA512-CRYPT", "$6$x")
    assert split_scheme("$6$x$y") == ("SHA512-CRYPT", "$6$x$y")
    assert split_scheme("$2b$x") == ("BLF-CRYPT", "$2b$x")
    assert split_scheme("plain") == (None, "plain")
    assert "ARGON2ID" in SUPPORTED_SCHEMES


def test_hash_password_is_argon2id_and_salted() -> None:
    first = hash_password(b"hunter2", hasher=FAST)
    second = hash_password(b"hunter2", hasher=FAST)
    assert first.startswith("{ARGON2ID}$argon2id$")
    assert first != second
    assert verify_password(first, b"hunter2")
    assert not verify_password(first, b"hunter3")


def test_hash_password_default_parameters() -> None:
    stored = hash_password(b"pw")
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$")
    assert ":" not in stored and "\n" not in stored
