"""Content-transfer decoding (RFC 2045 section 6) of one leaf part, for BINARY (RFC 3516).

Computed on request from the stored message, never kept.  The decoders are generators that
yield after every ``STEP`` encoded bytes, so a caller can run a large part in time slices
(:meth:`mailserv.slicing.TimeSlices.run`) and a small one at once (:func:`at_once`).
"""

from __future__ import annotations

import binascii
from collections.abc import Generator

from mailserv.message.info import MessageInfo, Part
from mailserv.message.sections import find_part

STEP = 128 * 1024
"""Encoded bytes decoded between two yields (well under a time slice)."""
IDENTITY = frozenset({"7bit", "8bit", "binary"})
"""Encodings whose content is the body as it is."""
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64_ALPHABET)))
"""Deleted before decoding: line breaks, padding and any stray byte (RFC 2045 6.8 says to
ignore characters outside the alphabet)."""

Steps = Generator[None, None, bytes]


class NotLeaf(ValueError):
    """The section names a multipart or a message/rfc822 part: it has no one encoding."""


class UnknownEncoding(ValueError):
    """A Content-Transfer-Encoding this server cannot decode (its name is the message)."""


def leaf(raw: bytes, info: MessageInfo, part: tuple[int, ...]) -> tuple[Part, bool] | None:
    """The entity ``part`` names (None when there is none) and whether it is the whole
    message (``()``); NotLeaf for a multipart or message/rfc822 part."""
    found = find_part(info, part)
    if found is None:
        return None
    entity = found[0]
    if part and (entity.content_type.startswith("multipart/") or entity.message is not None):
        raise NotLeaf(entity.content_type)
    return entity, not part


def content(raw: bytes, entity: Part, whole: bool) -> Steps:
    """The decoded content of ``entity`` (the whole message as stored when ``whole``);
    UnknownEncoding, raised before the first step, when it cannot be decoded."""
    if whole:
        return _ready(raw[entity.header_start : entity.end])
    encoding = entity.encoding
    body = raw[entity.body_start : entity.end]
    if encoding in IDENTITY:
        return _ready(body)
    if encoding == "base64":
        return _base64(body)
    if encoding == "quoted-printable":
        return _quoted_printable(body)
    raise UnknownEncoding(encoding)


def at_once(steps: Steps) -> bytes:
    """Run the steps to the end without pausing (a small part)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _ready(data: bytes) -> Steps:
    return data
    yield  # a generator that has nothing to do


def _base64(body: bytes) -> Steps:
    """Every run of four alphabet characters gives three bytes; a last run of two or three
    gives one or two, a last lone character nothing.  The same bytes whatever the steps."""
    out: list[bytes] = []
    carry = b""
    for start in range(0, len(body), STEP):
        chunk = carry + body[start : start + STEP].translate(None, _NOT_BASE64)
        whole = len(chunk) - len(chunk) % 4
        out.append(binascii.a2b_base64(chunk[:whole]))
        carry = chunk[whole:]
        yield
    if len(carry) > 1:
        out.append(binascii.a2b_base64(carry + b"=" * (4 - len(carry))))
    return b"".join(out)


def _quoted_printable(body: bytes) -> Steps:
    """Decoded a line run at a time: a step ends after a line break, or (a line longer than
    a step) where no ``=XX`` escape is cut."""
    out: list[bytes] = []
    start = 0
    while start < len(body):
        stop = start + STEP
        if stop < len(body):
            newline = body.rfind(b"\n", start, stop)
            if newline >= 0:
                stop = newline + 1
            else:
                escape = body.rfind(b"=", stop - 2, stop)
                stop = escape if escape > start else stop
        out.append(binascii.a2b_qp(body[start:stop]))
        start = stop
        yield
    return b"".join(out)


__all__ = ["IDENTITY", "STEP", "NotLeaf", "Steps", "UnknownEncoding", "at_once", "content", "leaf"]
