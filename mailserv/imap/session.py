"""What a command handler sees of its connection: the ``Session`` interface.

Handlers (``imap/commands/``, ``imap/extensions/``) and the selected-mailbox view are
written against this interface, never against the Twisted protocol that implements it
(:class:`mailserv.imap.server.IMAPServerProtocol`).  They read the session's state and
its shared services (portal, throttle, clock, TLS context, SASL mechanisms, settings) and
change the state only through its methods.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from mailserv.events.metrics import IMetrics, NoMetrics
from mailserv.events.sink import IEventSink, NoEvents
from mailserv.imap.counting import CountingText
from mailserv.imap.notify import MailboxBoard
from mailserv.quota import QuotaLedger, QuotaLimits

if TYPE_CHECKING:
    from OpenSSL.SSL import Connection
    from twisted.cred.portal import Portal
    from twisted.internet.interfaces import IReactorTime
    from twisted.internet.ssl import CertificateOptions

    from mailserv.auth.sasl import Mechanisms
    from mailserv.auth.throttle import ILoginThrottle
    from mailserv.imap.notify import Notifier
    from mailserv.imap.registry import Registry
    from mailserv.imap.settings import ServerSettings
    from mailserv.imap.view import SelectedView
    from mailserv.interfaces import IAccount
    from mailserv.slicing import Turns


IMAP4REV2 = "IMAP4REV2"
"""ENABLE name of RFC 9051's behaviour (:mod:`mailserv.imap.extensions.imap4rev2`)."""
UTF8_ACCEPT = "UTF8=ACCEPT"
"""ENABLE name of RFC 6855 (:mod:`mailserv.imap.extensions.utf8_accept`)."""


def is_rev2(session: Session) -> bool:
    """Whether the client turned IMAP4rev2 on: no RECENT, ESEARCH answers, UTF-8 names."""
    return IMAP4REV2 in session.enabled


def utf8_names(session: Session) -> bool:
    """Whether mailbox names go both ways as UTF-8, not modified UTF-7 (RFC 6855 3,
    RFC 9051 5.1); 8-bit UTF-8 may then be sent in quoted strings."""
    return UTF8_ACCEPT in session.enabled or IMAP4REV2 in session.enabled


class State(Enum):
    """RFC 3501 section 3: the connection's state."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class Services:
    """What every session of a listener shares; the factory builds it once."""

    portal: Portal
    settings: ServerSettings
    clock: IReactorTime
    turns: Turns
    """The reactor's turns as every long command of the process shares them (with the
    backend's lanes when it has sliced work of its own: ``ISlicedBackend``)."""
    throttle: ILoginThrottle
    mechanisms: Mechanisms
    tls: CertificateOptions | None
    """The context STARTTLS switches to; None: no STARTTLS."""
    registry: Registry
    """The extensions: commands, CAPABILITY, ENABLE, STATUS items."""
    quota: QuotaLedger = field(default_factory=QuotaLedger)
    """The quota reservations of this process's additions in flight."""
    board: MailboxBoard = field(default_factory=MailboxBoard)
    """NOTIFY: the sessions told of mailbox name changes made in this process."""
    metrics: IMetrics = field(default_factory=NoMetrics)
    """What the engine counts (commands, logins, errors); NoMetrics when metrics are off."""
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    """Server-wide secret for SASL (SCRAM's salts of unknown users): derived from the TLS
    key, so the same in every worker and after a restart; random without TLS."""
    events: IEventSink = field(default_factory=NoEvents)
    """Where the changes sessions make are told (webhooks: :mod:`mailserv.events.report`)."""
    counting: CountingText = field(default_factory=CountingText)
    """``1 2 3 ...``, cut for the runs of consecutive numbers of SEARCH answers."""


class Session(Protocol):
    """One client connection, as command handlers use it."""

    @property
    def state(self) -> State: ...
    @property
    def services(self) -> Services: ...
    @property
    def settings(self) -> ServerSettings: ...
    @property
    def account(self) -> IAccount | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def selected(self) -> SelectedView | None: ...
    @property
    def enabled(self) -> AbstractSet[str]:
        """The extensions the client turned on with ENABLE."""

    notifier: Notifier | None
    """NOTIFY SET's watcher (RFC 5465), None without one."""
    quota_limits: QuotaLimits | None
    """The signed-in user's quota limits once looked up (:func:`mailserv.quota.session_limits`)."""

    @property
    def idling(self) -> bool: ...
    @property
    def auth_failures(self) -> int: ...
    @property
    def ended(self) -> bool:
        """Closing after BYE, or the connection lost (may change while a handler awaits)."""

    @property
    def secure(self) -> bool: ...
    @property
    def tls_connection(self) -> Connection | None:
        """The TLS object of the connection (for SASL channel binding), None without TLS."""

    @property
    def compressed(self) -> bool:
        """COMPRESS=DEFLATE is on (RFC 4978)."""

    @property
    def plaintext_auth_allowed(self) -> bool: ...
    @property
    def peer(self) -> str: ...

    # -- input and output -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send ``data`` (sent with the command's other responses when it ends)."""

    async def drain(self) -> None:
        """Wait while the client reads slower than we write."""

    async def read_line(self) -> bytes:
        """The client's next raw line (IDLE's DONE, a SASL response)."""

    # -- state changes ----------------------------------------------------------------

    def logged_in(self, username: str, account: IAccount, logout: Callable[[], object]) -> None:
        """Enter the authenticated state (``logout`` is called when the session ends)."""

    def note_auth_failure(self) -> int:
        """Count a failed login on this connection; the count so far."""

    def disconnect(self, text: str) -> None:
        """Say BYE now; close after the running command's tagged reply, flushing no
        pending update (LOGOUT, too many failed logins, a mailbox lost)."""

    def shutdown(self, text: str) -> None:
        """BYE and close from outside any command: at once if none runs (or it waits for
        the client, as IDLE does), else when the running command ends."""

    def start_tls(self) -> None:
        """Switch to TLS (the handler has written its tagged OK)."""

    def start_compression(self) -> None:
        """Deflate both directions from now (the handler has written its tagged OK)."""

    def select(self, view: SelectedView) -> None: ...

    def deselect(self) -> None: ...

    def enable(self, names: Iterable[str]) -> list[str]:
        """Turn ``names`` on; those that were not on already."""

    def set_idling(self, idling: bool) -> None:
        """While idling, updates go out as they come."""
