"""COMPRESS=DEFLATE on the wire (RFC 4978): raw DEFLATE both ways, from the octet after
the tagged OK.

Output: :class:`DeflatingTransport` stands in for the connection's transport and
compresses what the server writes; the compressor is flushed (``Z_SYNC_FLUSH``) once per
reactor turn, so a burst of writes costs one flush and the client still sees every reply
at once.  Compressed bytes go to the real transport as they come out of zlib, so the
real transport's producer pausing (a client that does not read) works as before.

Input: :class:`Inflater` keeps the compressed bytes received and inflates at most
``CHUNK`` bytes per call, only when the framer asks for more: what the framer holds stays
within its line and literal bounds whatever the compression ratio (a "bomb" of a few KB
that inflates to gigabytes is read, and refused, a chunk at a time), and compressed input
that is not inflated yet counts as unread input for the server's flow control.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from zope.interface import directlyProvides, implementer, providedBy

__all__ = ["CHUNK", "PER_TURN", "DeflatingTransport", "Inflater"]

_WBITS = -15
"""Raw DEFLATE, no zlib header or checksum (RFC 4978 section 4)."""
CHUNK = 64 * 1024
"""Most bytes one ``Inflater.inflate`` call returns."""
PER_TURN = 4 * CHUNK
"""Most bytes inflated for the framer in one reactor turn (the rest waits for the next)."""


class Inflater:
    """The client's compressed stream, inflated on demand a chunk at a time."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(_WBITS)
        self._input = b""
        self._more = False
        """The last call filled its chunk: zlib may hold output without more input."""

    @property
    def backlog(self) -> int:
        """Compressed bytes received and not inflated yet."""
        return len(self._input)

    def received(self, data: bytes) -> None:
        self._input = self._input + data if self._input else data

    def inflate(self) -> bytes:
        """Up to ``CHUNK`` inflated bytes (empty: more input is needed).

        Raises ``zlib.error`` on a corrupt stream, or on data after a final block (the
        stream of RFC 4978 never ends).
        """
        if not self._input and not self._more:
            return b""
        out = self._inflate.decompress(self._input, CHUNK)
        self._input = self._inflate.unconsumed_tail
        self._more = len(out) == CHUNK
        if self._inflate.eof:
            raise zlib.error("the compressed stream ended")
        return out


@implementer(ITransport)
class DeflatingTransport:
    """The connection's transport with DEFLATE in front of ``write``.

    Everything else (producers, peer, TLS, pausing reads) is the wrapped transport's;
    the wrapper provides the same interfaces.  ``detach`` flushes and gives the wrapped
    transport back (for the close, which must reach the real TLS or TCP layer).
    """

    def __init__(self, transport: ITransport, clock: IReactorTime, level: int = 6) -> None:
        self.wrapped = transport
        self._clock = clock
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, _WBITS)
        self._flush_call: IDelayedCall | None = None
        self._unflushed = False
        directlyProvides(self, providedBy(transport))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def write(self, data: bytes) -> None:
        self._compress(data)
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self.flush)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        for chunk in data:
            self._compress(chunk)
        self.flush()

    def _compress(self, data: bytes) -> None:
        self._unflushed = True
        out = self._deflate.compress(data)
        if out:
            self.wrapped.write(out)

    def flush(self) -> None:
        """Send what zlib holds, ending on a byte boundary the client can inflate up to."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if self._unflushed:
            self._unflushed = False
            self.wrapped.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def detach(self) -> ITransport:
        """Flush and return the wrapped transport; nothing more is written through here."""
        self.flush()
        return self.wrapped

    def loseConnection(self) -> None:
        self.detach().loseConnection()

    def abortConnection(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self.wrapped.abortConnection()  # type: ignore[attr-defined]
