"""Password hashes in Dovecot's ``{SCHEME}value`` notation, so operators can bring theirs along.

Verification never raises: a malformed or unsupported stored value is a failed login (and a
log line for the operator), not a crash in the login path.  New hashes are argon2id unless
SCRAM-SHA-256 is asked for: Dovecot's ``{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey``
(base64 fields), the keys RFC 5802 derives, which AUTHENTICATE SCRAM-SHA-256 needs and which
LOGIN and PLAIN verify by deriving them from the password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, VerifyMismatchError
from passlib.handlers.md5_crypt import md5_crypt  # type: ignore[import-untyped,unused-ignore]
from passlib.handlers.sha2_crypt import (  # type: ignore[import-untyped,unused-ignore]
    sha256_crypt,
    sha512_crypt,
)
from scramp import ScramException, ScramMechanism  # type: ignore[import-untyped,unused-ignore]
from twisted.logger import Logger

_log = Logger()

DEFAULT_SCHEME = "ARGON2ID"
SCRAM_SCHEME = "SCRAM-SHA-256"
SCRAM_ITERATIONS = 4096
"""RFC 7677's floor, and Dovecot's default (scramp refuses fewer)."""

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


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What a ``{SCRAM-SHA-256}`` value stores: enough to run SCRAM, never the password."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes


def parse_scram(stored: str) -> ScramKeys | None:
    """The keys of a ``{SCRAM-SHA-256}`` value; None for any other scheme or a malformed one."""
    scheme, value = split_scheme(stored)
    if scheme != SCRAM_SCHEME:
        return None
    fields = value.split(",")
    if len(fields) != 4 or not fields[0].isascii() or not fields[0].isdigit():
        return None
    try:
        salt, stored_key, server_key = (base64.b64decode(f, validate=True) for f in fields[1:])
    except (binascii.Error, ValueError):
        return None
    if len(stored_key) != 32 or len(server_key) != 32 or not salt:
        return None
    return ScramKeys(int(fields[0]), salt, stored_key, server_key)


def scram_keys(password: bytes, iterations: int, salt: bytes | None = None) -> ScramKeys:
    """RFC 5802's keys of ``password`` (SASLprep'd by scramp; ValueError if it cannot be)."""
    try:
        text = password.decode("utf-8")
        made = ScramMechanism(SCRAM_SCHEME).make_auth_info(text, iterations, salt)
    except (UnicodeDecodeError, ScramException) as exc:
        raise ValueError(f"no SCRAM keys for this password: {exc}") from exc
    salt_made, stored_key, server_key, count = made
    return ScramKeys(count, salt_made, stored_key, server_key)


def _scram(value: str, password: bytes) -> bool:
    keys = parse_scram(f"{{{SCRAM_SCHEME}}}{value}")
    if keys is None:
        raise ValueError("not iterations,salt,StoredKey,ServerKey in base64")
    derived = scram_keys(password, keys.iterations, keys.salt)
    return hmac.compare_digest(derived.stored_key, keys.stored_key) and hmac.compare_digest(
        derived.server_key, keys.server_key
    )


_VERIFIERS: dict[str, Callable[[str, bytes], bool]] = {
    "PLAIN": _plain,
    "CLEARTEXT": _plain,
    "MD5-CRYPT": _passlib(md5_crypt),
    "SHA256-CRYPT": _passlib(sha256_crypt),
    "SHA512-CRYPT": _passlib(sha512_crypt),
    "BLF-CRYPT": _blf_crypt,
    "ARGON2ID": _argon2,
    "ARGON2I": _argon2,
    SCRAM_SCHEME: _scram,
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


HASH_SCHEMES = (DEFAULT_SCHEME, SCRAM_SCHEME)
"""The schemes :func:`hash_password` writes."""


def hash_password(
    password: bytes, *, hasher: PasswordHasher | None = None, scheme: str = DEFAULT_SCHEME
) -> str:
    """A new ``{ARGON2ID}$argon2id$...`` value (``hasher`` lets tests pick cheap parameters),
    or with ``scheme`` SCRAM-SHA-256 a ``{SCRAM-SHA-256}`` one (ValueError for a password
    SASLprep refuses, e.g. one with control characters)."""
    if scheme == SCRAM_SCHEME:
        keys = scram_keys(password, SCRAM_ITERATIONS)
        fields = (keys.salt, keys.stored_key, keys.server_key)
        encoded = ",".join(base64.b64encode(f).decode("ascii") for f in fields)
        return f"{{{SCRAM_SCHEME}}}{keys.iterations},{encoded}"
    if scheme != DEFAULT_SCHEME:
        raise ValueError(f"cannot hash with {scheme}; choose one of {', '.join(HASH_SCHEMES)}")
    return f"{{{DEFAULT_SCHEME}}}{(hasher or PasswordHasher()).hash(password)}"
