"""Credentials as text, and a short memory of passwords that verified.

Mail clients open several connections at once and reconnect often; every LOGIN would cost
one slow hash verification (argon2id spends tens of milliseconds of CPU on purpose).  A
successful verification is remembered for a few minutes as a keyed BLAKE2b digest of the
password, bound to the stored hash: the key is random per process, so the cache holds
nothing an attacker could reuse, and a changed password no longer matches.  Failures are
never remembered, so guessing still pays full price.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred

from mailserv.auth.schemes import verify_password

ThreadRunner = Callable[..., "Deferred[Any]"]

DUMMY_HASH = (
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$dbyhgGRjTl1UsjOeWMGOPQ"
    "$P2L+7FaLWPDU1m1MoQfsC6+swTjNOCA2nNjpJbNf+4I"
)
"""Verified when the user is unknown, so a failed login takes as long either way."""


def user_and_password(credentials: IUsernamePassword) -> tuple[str, bytes]:
    """The user name as text and the password as octets, or UnauthorizedLogin."""
    user: object = credentials.username
    password: object = credentials.password
    try:
        if isinstance(user, bytes):
            user = user.decode("utf-8")
        if isinstance(password, str):
            password = password.encode("utf-8")
    except UnicodeError as exc:
        raise UnauthorizedLogin("malformed credentials") from exc
    if not isinstance(user, str) or not isinstance(password, bytes):
        raise UnauthorizedLogin("malformed credentials")
    return user, password


class VerifiedCache:
    """(stored hash, password) pairs that verified within the last ``ttl`` seconds.

    At most ``size`` entries, the oldest dropped first; ``ttl`` 0 turns the cache off.
    """

    def __init__(
        self, ttl: float = 300.0, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._key = os.urandom(32)
        self._entries: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    def _digest(self, password: bytes) -> bytes:
        return hashlib.blake2b(password, key=self._key, digest_size=32).digest()

    def verified(self, stored: str, password: bytes) -> bool:
        """True when this password matched ``stored`` recently."""
        if self.ttl <= 0:
            return False
        key = (stored, self._digest(password))
        expires = self._entries.get(key)
        if expires is None:
            return False
        if expires < self._clock():
            del self._entries[key]
            return False
        return True

    def remember(self, stored: str, password: bytes) -> None:
        if self.ttl <= 0 or self.size <= 0:
            return
        key = (stored, self._digest(password))
        self._entries[key] = self._clock() + self.ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    async def check(self, stored: str | None, password: bytes, in_thread: ThreadRunner) -> None:
        """Return when ``password`` matches ``stored``, else raise UnauthorizedLogin.

        ``stored`` None or empty (no such user, no password) still costs one verification
        (of :data:`DUMMY_HASH`), so timing does not tell which names exist; ``in_thread``
        runs the slow verification off the reactor.
        """
        if stored and self.verified(stored, password):
            return
        matched = await in_thread(verify_password, stored or DUMMY_HASH, password)
        if not (stored and matched):
            raise UnauthorizedLogin("authentication failed")
        self.remember(stored, password)
