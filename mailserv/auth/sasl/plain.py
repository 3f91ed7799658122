"""PLAIN (RFC 4616): ``[authzid] NUL authcid NUL passwd`` in one response."""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from zope.interface import implementer

from mailserv.auth.sasl import (
    Challenge,
    Credentials,
    ISASLExchange,
    ISASLMechanism,
    SASLContext,
    SASLError,
    SASLFailed,
    utf8,
)


def decode_plain(response: bytes) -> tuple[str, str, bytes]:
    """``[authzid] NUL authcid NUL passwd`` → (authzid or "", authcid, password octets)."""
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise SASLError("PLAIN response must hold exactly two NUL separators")
    authzid, authcid, password = parts
    if not authcid:
        raise SASLError("PLAIN response has an empty authentication identity")
    if not password:
        raise SASLError("PLAIN response has an empty password")
    return utf8(authzid, "authorization identity"), utf8(authcid, "user name"), password


@implementer(ISASLExchange)
class _PlainExchange:
    async def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:  # no initial response: ask for it with an empty challenge
            return Challenge(b"")
        authzid, user, password = decode_plain(response)
        if authzid and authzid != user:
            raise SASLFailed("Authorization identity must match the user", "AUTHORIZATIONFAILED")
        return Credentials(UsernamePassword(user.encode("utf-8"), password))


@implementer(ISASLMechanism)
class Plain:
    name = "PLAIN"

    def available(self, context: SASLContext) -> bool:
        return context.plaintext_allowed

    def start(self, context: SASLContext) -> ISASLExchange:
        return _PlainExchange()


mechanism = Plain()
