"""SASL for the IMAP engine: the mechanism seam, and the registry the engine asks.

A mechanism is one module providing :class:`ISASLMechanism`, exposed to twisted.plugin through
a module in ``mailserv/plugins/`` (the built-in ones are in :mod:`mailserv.plugins.mechanisms`;
a third-party distribution ships its own ``mailserv/plugins/<name>.py``).  The engine owns the
wire (``+ <base64>`` challenges, ``*`` to cancel, SASL-IR); a mechanism sees decoded octets
only: its exchange answers each client response with a :class:`Challenge` or, at the end,
with the twisted.cred :class:`Credentials` the portal checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from twisted.cred.credentials import ICredentials
from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from OpenSSL.SSL import Connection

    from mailserv.auth.users import IUserStore

MAX_RESPONSE = 16384
"""Largest decoded client response the engine passes to a mechanism."""


class SASLError(Exception):
    """A malformed client response: the engine answers BAD with this text."""


class SASLFailed(Exception):
    """A well-formed exchange that cannot succeed: the engine answers NO with this text.

    ``code`` is the IMAP response code (RFC 5530), e.g. ``AUTHORIZATIONFAILED``; ``user``
    the user the client named, when the exchange got that far (for the login log line).
    """

    def __init__(self, text: str, code: str = "AUTHENTICATIONFAILED", user: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.user = user

    @property
    def counts(self) -> bool:
        """Whether it counts as a failed login for the throttles: not when the server could
        not decide (``UNAVAILABLE``: an OAuth provider down, too slow, answering 5xx)."""
        return self.code != "UNAVAILABLE"


@dataclass(frozen=True)
class SASLContext:
    """What a mechanism may know of the connection it authenticates.

    ``secure``: the connection is TLS; ``plaintext_allowed``: the server's policy lets a
    password cross this connection (TLS, loopback, or allowed by configuration).
    ``tls``: the connection's TLS object, for channel binding (None without TLS).
    ``key_store``: the user store whose stored secrets a stored-key mechanism (SCRAM) reads
    mid-exchange; None when the backend signs users in by itself (the proxy) or the operator
    turned such mechanisms off.  ``secret``: a server-wide secret, the same in every worker
    and across restarts while the TLS key stays (fake salts for unknown users).
    """

    secure: bool
    plaintext_allowed: bool
    tls: Connection | None = None
    key_store: IUserStore | None = None
    secret: bytes = b""


@dataclass(frozen=True)
class Challenge:
    """Send ``data`` to the client and wait for its next response."""

    data: bytes


@dataclass(frozen=True)
class Credentials:
    """The exchange is over: check ``credentials`` with the portal.

    ``final`` is server data the client must see before the tagged OK (RFC 4422's additional
    data with success); the engine sends it as a last challenge.
    """

    credentials: ICredentials
    final: bytes | None = None


class ISASLExchange(Interface):
    """One authentication in progress on one connection."""

    def step(response: bytes | None) -> Awaitable[Challenge | Credentials]:
        """Take the client's decoded response (None: no initial response was sent).

        Awaited by the engine.  Raises :class:`SASLError` (BAD) or :class:`SASLFailed` (NO).
        """


class ISASLMechanism(IPlugin):
    """A SASL mechanism the IMAP server can offer (``AUTH=<name>``); found by twisted.plugin."""

    name = Attribute("The registered mechanism name, upper case (str).")

    def available(context: SASLContext) -> bool:
        """Whether to offer the mechanism on this connection (e.g. only with TLS)."""

    def start(context: SASLContext) -> ISASLExchange:
        """A new exchange for one AUTHENTICATE command."""


class Mechanisms:
    """The mechanisms found once at start, by name, in the order they were found."""

    def __init__(self, mechanisms: Iterable[ISASLMechanism]) -> None:
        self._by_name: dict[str, ISASLMechanism] = {}
        for mechanism in mechanisms:
            self._by_name.setdefault(str(mechanism.name).upper(), mechanism)

    @classmethod
    def discover(cls, extra: Iterable[ISASLMechanism] = ()) -> Mechanisms:
        """Every ISASLMechanism in the ``mailserv.plugins`` package (built-in PLAIN first),
        and ``extra`` ones the server built itself (OAUTHBEARER with its token validator)."""
        from mailserv.discovery import plugins

        found: list[ISASLMechanism] = plugins(ISASLMechanism) + list(extra)
        found.sort(key=lambda m: (_BUILTIN_ORDER.get(str(m.name).upper(), 99), str(m.name)))
        return cls(found)

    def offered(self, context: SASLContext) -> list[str]:
        return [name for name, m in self._by_name.items() if m.available(context)]

    def find(self, name: str, context: SASLContext) -> ISASLMechanism | None:
        """The mechanism called ``name`` if it is offered on this connection."""
        mechanism = self._by_name.get(name.upper())
        if mechanism is None or not mechanism.available(context):
            return None
        return mechanism

    def needs_tls(self, name: str) -> bool:
        """Whether ``name`` is one of ours that a connection without TLS may not use."""
        return self.find(name, SASLContext(secure=True, plaintext_allowed=True)) is not None


_BUILTIN_ORDER = {"PLAIN": 0, "LOGIN": 1}


def secret_from_tls(options: object) -> bytes | None:
    """A server-wide secret derived from the private key of ``options`` (a Twisted
    CertificateOptions), or None when it holds no key."""
    key = getattr(options, "privateKey", None)
    if key is None:
        return None
    if hasattr(key, "to_cryptography_key"):  # a pyOpenSSL PKey (older Twisted)
        key = key.to_cryptography_key()
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return hashlib.sha256(b"mailserv SASL secret\x00" + der).digest()


def utf8(value: bytes, what: str) -> str:
    """``value`` as text, or SASLError naming ``what``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SASLError(f"{what} is not UTF-8") from exc
