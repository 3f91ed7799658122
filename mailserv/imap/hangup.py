"""Closing a connection after ``* BYE`` within a bound, over plain TCP and TLS alike.

A TLS transport's ``loseConnection`` sends close_notify and then waits for the peer's
close_notify before it closes the TCP connection; a client that waits for the server to
close (isync/mbsync 1.4 does) would then wait forever.  RFC 8446 6.1 does not require the
closer to wait for the peer's close_notify, so once ours is out the TCP write side is shut
too (FIN), and whatever is still open ``timeout`` seconds later is aborted.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableDescriptor,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
    ITransport,
)
from twisted.protocols.tls import TLSMemoryBIOProtocol

__all__ = ["hang_up", "set_no_delay"]


def set_no_delay(transport: ITransport | None) -> None:
    """Turn Nagle's algorithm off: a response's last small segment must not wait for
    the client's delayed ACK.  TLS transports over TCP pass the call to their socket."""
    if transport is None or not ITCPTransport.providedBy(transport):
        return
    try:
        transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
    except OSError:
        pass  # the socket is already gone


def hang_up(
    transport: ITransport, clock: IReactorTime, timeout: float, producing: bool = False
) -> IDelayedCall:
    """Close ``transport`` after what was written to it; abort it after ``timeout``.

    ``producing``: the caller is registered as the transport's producer.  The caller
    cancels the returned call when the connection is lost.
    """
    if producing:
        # A registered producer holds TLS's close_notify back (and a paused one holds a
        # TCP close back): nothing more will be produced anyway.
        transport.unregisterProducer()  # type: ignore[attr-defined]
    transport.loseConnection()
    below = _tcp_below_tls(transport)
    if below is not None and _close_notify_sent(transport):
        below.loseWriteConnection()
        _close_later(transport, clock)
    return clock.callLater(timeout, _abort, transport)


def _close_later(transport: ITransport, clock: IReactorTime) -> None:
    """Make the TLS layer's close of the TCP connection take effect in a later turn.

    With its write side shut, a TCP transport's ``loseConnection`` ends the connection at
    once, inside the call.  The TLS layer makes that call when it reads the client's
    close_notify (OpenSSL clients answer ours), from its own read loop, and after it
    returns it still writes through the TLS connection object that ending the connection
    dropped: an AttributeError in the log for every such client.  Deferring the close by
    one turn lets that read finish first.  The TLS layer closes through its own transport:
    the TCP one for implicit TLS; after STARTTLS the TCP transport's protocol is the TLS
    layer, and its transport Twisted's bypass object over the TCP one.
    """
    layer = transport if isinstance(transport, TLSMemoryBIOProtocol) else None
    if layer is None and getattr(transport, "TLS", False):
        layer = getattr(transport, "protocol", None)
    below = getattr(layer, "transport", None) if isinstance(layer, TLSMemoryBIOProtocol) else None
    if below is None:
        return
    close = below.loseConnection

    def later(*args: Any) -> None:
        clock.callLater(0, close, *args)

    below.loseConnection = later


def _abort(transport: Any) -> None:
    if getattr(transport, "connected", True):
        transport.abortConnection()


def _tcp_below_tls(transport: ITransport) -> Any:
    """The TCP transport a TLS transport writes through, if it can shut its write side.

    Implicit TLS (``TLSMemoryBIOFactory``) wraps the TCP transport; after STARTTLS the TCP
    transport itself carries the TLS layer (its ``loseWriteConnection`` bypasses TLS).
    """
    if isinstance(transport, TLSMemoryBIOProtocol):
        below = transport.transport
    elif ISSLTransport.providedBy(transport) and getattr(transport, "TLS", False):
        below = transport
    else:
        return None
    return below if IHalfCloseableDescriptor.providedBy(below) else None


def _close_notify_sent(transport: ITransport) -> bool:
    """Whether the TLS layer has sent its close_notify (not before the handshake ends)."""
    try:
        handle = transport.getHandle()  # type: ignore[attr-defined]
        return bool(handle is not None and handle.get_shutdown() & SSL.SENT_SHUTDOWN)
    except (AttributeError, SSL.Error):
        return False
