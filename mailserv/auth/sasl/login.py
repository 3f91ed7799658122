"""LOGIN (draft-murchison-sasl-login): ask ``Username:``, then ``Password:``.

Not a standard, but what older Outlook and many devices offer.  A client's initial response
(SASL-IR) answers the first prompt.
"""

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
    utf8,
)


@implementer(ISASLExchange)
class _LoginExchange:
    def __init__(self) -> None:
        self._user: str | None = None

    async def step(self, response: bytes | None) -> Challenge | Credentials:
        if response is None:
            return Challenge(b"Username:")
        if self._user is None:
            if not response or b"\x00" in response:
                raise SASLError("LOGIN user name is empty or contains NUL")
            self._user = utf8(response, "LOGIN user name")
            return Challenge(b"Password:")
        if not response:
            raise SASLError("LOGIN password is empty")
        return Credentials(UsernamePassword(self._user.encode("utf-8"), response))


@implementer(ISASLMechanism)
class Login:
    name = "LOGIN"

    def available(self, context: SASLContext) -> bool:
        return context.plaintext_allowed

    def start(self, context: SASLContext) -> ISASLExchange:
        return _LoginExchange()


mechanism = Login()
