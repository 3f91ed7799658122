"""SASL PLAIN (RFC 4616) and LOGIN exchanges, as pure functions the IMAP engine drives.

The engine owns the wire: it sends ``+ <base64 challenge>``, handles ``*`` (cancel) and turns
the ValueErrors raised here into BAD responses.  Everything here works on decoded octets.
"""

from __future__ import annotations

import base64
import binascii

MAX_RESPONSE = 4096
"""Largest decoded response accepted; RFC 4616 asks servers to take at least 255 octets for
each of authzid, authcid and password."""

MAX_ENCODED_RESPONSE = (MAX_RESPONSE + 2) // 3 * 4


def decode_response(line: bytes) -> bytes:
    """Strict base64 of one client response line (no CRLF); ``=`` is the empty response.

    ValueError on bad characters, bad padding or a response over MAX_RESPONSE.
    """
    if len(line) > MAX_ENCODED_RESPONSE:
        raise ValueError("response too long")
    if line == b"=":  # RFC 4959: an empty initial response
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except binascii.Error as exc:
        raise ValueError("response is not valid base64") from exc


def encode_challenge(challenge: bytes) -> bytes:
    """The base64 text to send after ``+ `` (empty for an empty challenge)."""
    return base64.b64encode(challenge)


def _utf8(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8") from exc


def decode_plain(response: bytes) -> tuple[str, str, bytes]:
    """``[authzid] NUL authcid NUL passwd`` → (authzid or "", authcid, password octets)."""
    if len(response) > MAX_RESPONSE:
        raise ValueError("PLAIN response too long")
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise ValueError("PLAIN response must hold exactly two NUL separators")
    authzid, authcid, password = parts
    if not authcid:
        raise ValueError("PLAIN response has an empty authentication identity")
    if not password:
        raise ValueError("PLAIN response has an empty password")
    return (
        _utf8(authzid, "authorization identity"),
        _utf8(authcid, "authentication identity"),
        password,
    )


class LoginExchange:
    """The non-standard but common LOGIN mechanism: ask ``Username:``, then ``Password:``.

    The engine sends ``challenge`` (base64-encoded) while ``done`` is false and passes each
    decoded client response to ``feed``; the final ``feed`` returns (user, password).  A
    client's initial response (SASL-IR) counts as the answer to the first challenge.
    """

    challenges: tuple[bytes, bytes] = (b"Username:", b"Password:")

    def __init__(self) -> None:
        self._user: str | None = None
        self._result: tuple[str, bytes] | None = None

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def challenge(self) -> bytes:
        """The prompt the client must answer next (unencoded)."""
        if self._result is not None:
            raise ValueError("LOGIN exchange is complete")
        return self.challenges[0 if self._user is None else 1]

    def feed(self, response: bytes) -> tuple[str, bytes] | None:
        """Take one decoded response: None while more is needed, then (user, password)."""
        if self._result is not None:
            raise ValueError("LOGIN exchange is complete")
        if len(response) > MAX_RESPONSE:
            raise ValueError("LOGIN response too long")
        if self._user is None:
            if not response:
                raise ValueError("LOGIN user name is empty")
            if b"\x00" in response:
                raise ValueError("LOGIN user name contains NUL")
            self._user = _utf8(response, "LOGIN user name")
            return None
        if not response:
            raise ValueError("LOGIN password is empty")
        self._result = (self._user, response)
        return self._result
