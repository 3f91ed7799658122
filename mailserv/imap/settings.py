"""Limits and policies of the IMAP engine; every bound a client could push on lives here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailserv.quota import QuotaPolicy

OfferScram = Literal["auto", "true", "false"]
"""When AUTHENTICATE SCRAM-SHA-256(-PLUS) is offered (``ServerSettings.offer_scram``)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    max_line: int = 64 * 1024
    """Longest command line (without literals), in bytes."""
    max_literal: int = 64 * 1024 * 1024
    """Largest literal, hence APPENDLIMIT."""
    max_command_size: int = 80 * 1024 * 1024
    """A whole command, literals included."""
    max_literal_plus: int = 64 * 1024 * 1024
    """Largest non-synchronizing literal accepted (RFC 7888 LITERAL+)."""
    max_connections: int = 20_000
    """Connections held at once, in all."""
    max_connections_per_address: int = 2_000
    """Connections held at once from one client address."""
    max_pipelined: int = 64
    """Commands parsed and queued behind the running one; beyond it the server stops
    reading from the connection until the queue drains (TCP flow control, never BYE)."""
    max_queued_bytes: int = 16 * 1024 * 1024
    """Bytes of queued commands (literals included) beyond which the server stops reading,
    as for ``max_pipelined``."""
    close_timeout: float = 2.0
    """Seconds a connection may take to go after the server said BYE (TLS close_notify
    sent, TCP closing) before it is aborted."""
    idle_timeout: float = 30 * 60
    """Seconds of silence allowed after login (RFC 3501 5.4: at least 30 minutes)."""
    preauth_timeout: float = 60
    """Seconds of silence allowed before login."""
    idle_keepalive: float = 120
    """Seconds between ``* OK Still here`` during IDLE, so NAT keeps the flow."""
    max_auth_failures: int = 3
    """Failed logins on one connection before BYE."""
    auth_failure_delay: float = 1.0
    """Seconds a failed login waits before its NO (doubling per failure, capped)."""
    user_max_auth_failures: int = 20
    """Failed logins of one user name, from any address, within the failed-login throttle's
    window (5 minutes) before that user's password logins are refused for a while."""
    allow_plaintext_auth: bool = False
    """Allow LOGIN/AUTHENTICATE without TLS from non-loopback addresses."""
    starttls_tls13: bool = True
    """Let STARTTLS negotiate TLS 1.3.  ``--limit starttls_tls13=false`` caps it at 1.2 for
    clients that read and write one TLS connection from two threads (imaplib2, under
    offlineimap), which can lose their first command when TLS 1.3's session tickets reach
    them just after the handshake; implicit TLS is not affected."""
    offer_scram: OfferScram = "auto"
    """When to offer AUTHENTICATE SCRAM-SHA-256 (and -PLUS on TLS).  CAPABILITY is sent
    before the user is known, and clients such as mbsync pick SCRAM whenever it is offered
    and do not fall back, so ``auto`` (the default) offers it only while every user of the
    user store can do SCRAM: each holds ``{SCRAM-SHA-256}`` keys or signs in over IMAP with
    OAuth only (app-passwords mode with no app password), and no app password exists (an
    app password is an argon2id hash, which SCRAM cannot check).  The store answers from a
    cache: the passwd-file's when it changes on disk, the SQL users table's for a few
    seconds (:mod:`mailserv.auth.scramoffer`).  ``true`` offers it always, ``false`` never."""
    max_search_keys: int = 1000
    """Search keys in one SEARCH."""
    max_mailbox_name: int = 1024
    """Bytes in a mailbox name."""
    quota: QuotaPolicy = field(default_factory=QuotaPolicy)
    """Per-user STORAGE and MESSAGE limits (RFC 9208); none by default."""
    max_notify_mailboxes: int = 1000
    """Mailboxes one NOTIFY SET may watch (RFC 5465): above it NOTIFY SET is refused, and
    a session whose filters grow past it later gets NOTIFICATIONOVERFLOW."""
    max_search_contexts: int = 8
    """RFC 5267 UPDATE contexts one session may hold in its mailbox (at least 1 is kept):
    a SEARCH asking for one more is answered with ``NOUPDATE`` and not followed."""
    within_recheck: float = 60
    """Seconds between two searches again of an UPDATE context whose criteria hold WITHIN's
    OLDER or YOUNGER (RFC 5032), whose answer changes with time alone."""
