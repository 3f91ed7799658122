"""Opening an authenticated upstream connection: TCP, TLS or STARTTLS, greeting, login.

The certificate is checked by ``optionsForClientTLS``: the chain against the platform's
trust store (or the ``ca=`` file) and the host name by service-identity.  Every step is
bounded by the configured timeout; any failure to reach the upstream is a
``BackendUnavailable`` with a reason a person can act on, and that reason is logged.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger

from mailserv.backends.proxy import wire
from mailserv.backends.proxy.client import CommandFailed, UpstreamProtocol
from mailserv.errors import BackendUnavailable
from mailserv.slicing import Turns

_log = Logger()

MODES = ("tls", "starttls", "plain")


class LoginRefused(Exception):
    """The upstream refused the credentials (not: could not be asked)."""


@dataclass(frozen=True)
class Upstream:
    """Where the upstream is and how to reach it."""

    mode: str
    host: str
    port: int
    ca_file: str | None = None
    timeout: float = 15.0

    @property
    def label(self) -> str:
        return f"{self.mode}:{self.host}:{self.port}"


def trust_root(ca_file: str | None) -> Any:
    """The certificates of ``ca_file`` (PEM, one or more), or the platform's store."""
    if ca_file is None:
        return platformTrust()
    with open(ca_file, "rb") as handle:
        pem = handle.read()
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]
    if not blocks:
        raise ValueError(f"no PEM certificate in {ca_file}")
    return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])


class _OneConnection(Factory):
    """Hands out the one protocol instance (quietly: no log line per connection)."""

    noisy = False

    def __init__(self, protocol: UpstreamProtocol) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: object) -> UpstreamProtocol:
        return self.protocol_instance


class Connector:
    """Opens connections to one upstream; the TLS options are built once.  The connections
    handle big answers within the budget of ``turns`` (the reactor's, shared)."""

    def __init__(self, upstream: Upstream, reactor: object, turns: Turns | None = None) -> None:
        self.upstream = upstream
        self.reactor = reactor
        self.turns = turns
        self._tls = None
        if upstream.mode != "plain":
            self._tls = optionsForClientTLS(upstream.host, trust_root(upstream.ca_file))

    async def open(self) -> UpstreamProtocol:
        """A connection past the greeting (and STARTTLS), not yet logged in."""
        up = self.upstream
        endpoint = HostnameEndpoint(self.reactor, up.host, up.port, timeout=up.timeout)
        if up.mode == "tls":
            assert self._tls is not None
            endpoint = wrapClientTLS(self._tls, endpoint)  # type: ignore[assignment]
        protocol = UpstreamProtocol(
            self.reactor,  # type: ignore[arg-type]
            up.timeout,
            up.label,
            self.turns,
        )
        try:
            connecting: Deferred[Any] = endpoint.connect(_OneConnection(protocol))
            connecting.addTimeout(up.timeout, self.reactor)  # type: ignore[arg-type]
            await connecting
        except Exception as exc:
            raise self._unavailable(f"cannot connect ({_short(exc)})") from exc
        try:
            greeting = await protocol.greeting
            if greeting.kind != "OK":
                raise BackendUnavailable(f"greeting was {greeting.kind} {greeting.text}")
            if not protocol.capabilities:
                await protocol.command(b"CAPABILITY")
            if up.mode == "starttls":
                await self._starttls(protocol)
        except BackendUnavailable as exc:
            protocol.abort("setup failed")
            raise self._unavailable(str(exc).removeprefix("upstream connection lost: ")) from exc
        except CommandFailed as exc:
            protocol.abort("setup failed")
            raise self._unavailable(f"refused: {exc}") from exc
        return protocol

    async def _starttls(self, protocol: UpstreamProtocol) -> None:
        if "STARTTLS" not in protocol.capabilities:
            raise BackendUnavailable("the upstream does not offer STARTTLS")
        await protocol.command(b"STARTTLS")
        protocol.transport.startTLS(self._tls)  # type: ignore[union-attr]
        await protocol.command(b"CAPABILITY")  # never trust what came before TLS

    async def open_as(self, user: str, password: bytes) -> UpstreamProtocol:
        """A new connection logged in as ``user`` (LoginRefused when the upstream says no);
        it is closed whenever the login does not succeed."""
        protocol = await self.open()
        try:
            await login(protocol, user, password)
        except LoginRefused:
            protocol.abort("login refused")
            raise
        except BaseException:
            protocol.abort("login failed")
            raise
        return protocol

    def _unavailable(self, reason: str) -> BackendUnavailable:
        _log.error(
            "Upstream {label} unavailable: {reason}", label=self.upstream.label, reason=reason
        )
        return BackendUnavailable(f"Upstream server unavailable: {reason}")


async def login(protocol: UpstreamProtocol, user: str, password: bytes) -> None:
    """Authenticate (SASL PLAIN when offered, else LOGIN); LoginRefused on NO.

    Afterwards CONDSTORE/QRESYNC are enabled when the upstream has them.
    """
    caps = protocol.capabilities
    name = user.encode("utf-8")
    try:
        if "AUTH=PLAIN" in caps:
            blob = base64.b64encode(b"\0" + name + b"\0" + password)
            if "SASL-IR" in caps:
                response = await protocol.command(b"AUTHENTICATE PLAIN", blob)
            else:
                response = await protocol.exchange(b"AUTHENTICATE PLAIN", replies=[blob])
        elif "LOGINDISABLED" in caps:
            raise BackendUnavailable("the upstream refuses LOGIN on this connection")
        else:
            response = await protocol.command(b"LOGIN", wire.string(name), wire.quoted(password))
    except CommandFailed as exc:
        if exc.response.code in ("UNAVAILABLE", "SERVERBUG", "LIMIT"):
            raise BackendUnavailable(f"upstream login: {exc.response.text}") from exc
        raise LoginRefused(exc.response.text) from exc
    if response.code != "CAPABILITY":
        await protocol.command(b"CAPABILITY")
    wanted = [name for name in ("QRESYNC", "CONDSTORE") if name in protocol.capabilities]
    if wanted and "ENABLE" in protocol.capabilities:
        await protocol.command(b"ENABLE", *(name.encode() for name in wanted))


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
