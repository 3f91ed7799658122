"""Password hashes in Dovecot's ``{SCHEME}value`` notation, so operators can bring theirs along.

Verification never raises: a malformed or unsupported stored value is a failed login (and a
log line for the operator), not a crash in the login path.  New hashes are always argon2id.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, VerifyMismatchError
from passlib.handlers.md5_crypt import md5_crypt  # type: ignore[import-untyped,unused-ignore]
from passlib.handlers.sha2_crypt import (  # type: ignore[import-untyped,unused-ignore]
    sha256_crypt,
    sha512_crypt,
)
from twisted.logger import Logger

_log = Logger()

DEFAULT_SCHEME = "ARGON2ID"

_BCRYPT_MAX_PASSWORD = 72
"""crypt_blowfish (Dovecot's BLF-CRYPT) reads this many bytes; the bcrypt package refuses more."""

_CRYPT_MARKERS = (
    ("$argon2id$", "ARGON2ID"),
    ("$argon2i$", "ARGON2I"),
    ("$1$", "MD5-CRYPT"),
    ("$2a$", "BLF-CRYPT"),
    ("$2b$", "BLF-CRYPT"),
    ("$2y$", "BLF-CRYPT"),
    ("$5$", "SHA256-CRYPT"),
    ("$6$", "SHA512-CRYPT"),
)
"""How a stored value without ``{SCHEME}`` names its algorithm (the crypt(3) ``$n$`` id)."""


def _plain(value: str, password: bytes) -> bool:
    return hmac.compare_digest(value.encode("utf-8"), password)


def _passlib(handler: object) -> Callable[[str, bytes], bool]:
    def verify(value: str, password: bytes) -> bool:
        return bool(handler.verify(password, value))  # type: ignore[attr-defined]

    return verify


def _blf_crypt(value: str, password: bytes) -> bool:
    return bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], value.encode("ascii"))


def _argon2(value: str, password: bytes) -> bool:
    if not value.startswith(("$argon2id$", "$argon2i$")):
        raise ValueError("not an argon2i/argon2id hash")
    try:
        return PasswordHasher().verify(value, password)
    except VerifyMismatchError:
        return False
    except Argon2Error as exc:
        raise ValueError(str(exc)) from exc


_VERIFIERS: dict[str, Callable[[str, bytes], bool]] = {
    "PLAIN": _plain,
    "CLEARTEXT": _plain,
    "MD5-CRYPT": _passlib(md5_crypt),
    "SHA256-CRYPT": _passlib(sha256_crypt),
    "SHA512-CRYPT": _passlib(sha512_crypt),
    "BLF-CRYPT": _blf_crypt,
    "ARGON2ID": _argon2,
    "ARGON2I": _argon2,
}

SUPPORTED_SCHEMES = frozenset(_VERIFIERS)


def split_scheme(stored: str) -> tuple[str | None, str]:
    """``{SCHEME}value`` → (upper-cased scheme, value); a bare crypt value by its ``$n$`` id.

    The scheme is None when neither a prefix nor a known marker names one.
    """
    if stored.startswith("{"):
        end = stored.find("}")
        if end < 0:
            return None, stored
        return stored[1:end].upper(), stored[end + 1 :]
    for marker, scheme in _CRYPT_MARKERS:
        if stored.startswith(marker):
            return scheme, stored
    return None, stored


def verify_password(stored: str, password: bytes) -> bool:
    """True when ``password`` matches ``stored``; False on mismatch *and* on unusable hashes."""
    scheme, value = split_scheme(stored)
    verifier = _VERIFIERS.get(scheme) if scheme is not None else None
    if verifier is None:
        _log.warn(
            "Unsupported password scheme {scheme!r}; login refused",
            scheme=scheme if scheme is not None else stored[:12],
        )
        return False
    try:
        return verifier(value, password)
    except Exception as exc:  # noqa: BLE001 -- a broken stored hash must not crash a login
        _log.warn(
            "Unusable {scheme} password hash ({error}); login refused",
            scheme=scheme,
            error=f"{type(exc).__name__}: {exc}",
        )
        return False


def hash_password(password: bytes, *, hasher: PasswordHasher | None = None) -> str:
    """A new ``{ARGON2ID}$argon2id$...`` value; ``hasher`` lets tests pick cheap parameters."""
    return f"{{{DEFAULT_SCHEME}}}{(hasher or PasswordHasher()).hash(password)}"
