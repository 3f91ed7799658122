"""Mail this server sends (Sieve's redirect and vacation): handed over by SMTP to a
submission host (``--submission ENDPOINT``), as Dovecot's LDA does.

:class:`IMailSender` is the seam; :class:`SMTPSubmitter` speaks ESMTP with Twisted's
client (``twisted.mail.smtp``) to a Twisted client endpoint (``tcp:localhost:25``,
``tls:mail.example.org:465``, ``unix:/run/postfix/submit``).  One transaction per
message, no retry of its own: a failure is a :class:`SubmissionError` saying whether it is
temporary (the caller may answer 451 so the MTA retries) or permanent (a 5xx reply).
Every step is bounded by ``timeout`` seconds; nothing blocks the reactor.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.mail.smtp import ESMTPSender, ESMTPSenderFactory, SMTPClientError
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = ["IMailSender", "SMTPSubmitter", "SubmissionError", "submitter"]

SEND_TIMEOUT = 30.0
"""Seconds one message may take to hand over (connecting included)."""


class SubmissionError(Exception):
    """The message was not handed over; ``temporary`` unless the server answered 5xx."""

    def __init__(self, text: str, temporary: bool) -> None:
        super().__init__(text)
        self.temporary = temporary


class IMailSender(Interface):
    """Sends mail on the server's behalf."""

    def send(sender: str, recipients: Sequence[str], message: bytes) -> Deferred[None]:
        """Hand ``message`` over for ``recipients`` with envelope sender ``sender`` (empty:
        ``<>``); fires once every recipient is accepted, else fails with SubmissionError."""


class _Sender(ESMTPSender):
    """Reports a connection lost in mid-transaction (endpoints do not tell the factory)."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if getattr(self.factory, "result", None) is not None:  # not yet fired or timed out
            self.factory.clientConnectionLost(None, reason)


class _Factory(ESMTPSenderFactory):
    protocol = _Sender
    noisy = False


@implementer(IMailSender)
class SMTPSubmitter:
    """Sends through the submission host at ``endpoint`` (a client endpoint string)."""

    def __init__(
        self,
        reactor: Any,
        endpoint: str,
        timeout: float = SEND_TIMEOUT,
        hostname: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.description = endpoint
        self.endpoint: IStreamClientEndpoint = clientFromString(reactor, endpoint)
        self.timeout = timeout
        self.hostname = hostname or socket.gethostname() or "localhost"

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> Deferred[None]:
        return Deferred.fromCoroutine(self._send(sender, list(recipients), message))

    async def _send(self, sender: str, recipients: list[str], message: bytes) -> None:
        done: Deferred[tuple[int, list[tuple[bytes, int, bytes]]]] = Deferred()
        factory = _Factory(
            None,
            None,
            sender,
            recipients,
            io.BytesIO(message),
            done,
            retries=0,
            timeout=self.timeout,
            requireAuthentication=False,
            requireTransportSecurity=False,
        )
        factory.domain = self.hostname.encode("idna")
        where = self.description
        connecting = self.endpoint.connect(factory)
        connecting.addTimeout(self.timeout, self.reactor)
        try:
            protocol: Any = await connecting
        except Exception as exc:  # noqa: BLE001 - refused, unreachable, timed out: retry later
            raise SubmissionError(f"cannot connect to {where}: {exc}", True) from exc
        done.addTimeout(self.timeout, self.reactor)
        try:
            accepted, addresses = await done
        except SMTPClientError as exc:
            refused = _refused(where, exc.addresses)
            if refused is not None:  # no recipient was accepted
                raise refused from exc
            text = exc.resp.decode("utf-8", "replace") if exc.resp else str(exc)
            permanent = 500 <= exc.code < 600
            raise SubmissionError(f"{where} answered {exc.code} {text}", not permanent) from exc
        except Exception as exc:  # noqa: BLE001 - timed out, connection lost
            protocol.transport.abortConnection()
            raise SubmissionError(f"sending through {where} failed: {exc!r}", True) from exc
        refused = _refused(where, addresses)
        if refused is not None or accepted < len(recipients):
            raise refused or SubmissionError(f"{where} did not take every recipient", True)


def _refused(where: str, addresses: object) -> SubmissionError | None:
    """The error naming the recipients the server ``where`` refused in ``addresses`` (SMTPClient's
    ``(address, code, text)`` list), None when it refused none; temporary if any was 4xx."""
    if not isinstance(addresses, list):
        return None
    refused = [(a, code, text) for a, code, text in addresses if not 200 <= code < 300]
    if not refused:
        return None
    said = "; ".join(
        f"{a.decode('utf-8', 'replace')}: {code} {text.decode('utf-8', 'replace')}"
        for a, code, text in refused
    )
    return SubmissionError(f"{where} refused {said}", any(400 <= c < 500 for _, c, _ in refused))


def submitter(reactor: Any, endpoint: str | None) -> IMailSender | None:
    """The sender of ``--submission``, None when it is not set; ValueError with a clear
    text when ``endpoint`` is no client endpoint string."""
    if endpoint is None:
        return None
    try:
        return SMTPSubmitter(reactor, endpoint)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"submission {endpoint!r} is no client endpoint string (e.g. tcp:localhost:25): {exc}"
        ) from None
