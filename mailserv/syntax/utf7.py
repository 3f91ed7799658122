"""Modified UTF-7 for mailbox names (RFC 3501 section 5.1.3).

Printable ASCII stands for itself except ``&``, written ``&-``; every other run of characters
is UTF-16BE in base64 (``,`` instead of ``/``, no padding) between ``&`` and ``-``.
"""

from __future__ import annotations

import base64
import binascii
import re

_NON_PRINTABLE_RUN = re.compile(r"([^\x20-\x7e]+)")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+,]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]")


def encode(name: str) -> bytes:
    """A name as modified UTF-7; ValueError for a lone surrogate."""
    pieces = _NON_PRINTABLE_RUN.split(name)
    out = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            out.append(piece.replace("&", "&-").encode("ascii"))
        else:
            data = base64.b64encode(piece.encode("utf-16-be"), b"+,").rstrip(b"=")
            out.append(b"&" + data + b"-")
    return b"".join(out)


def decode(raw: bytes) -> str:
    """A modified UTF-7 name as text; ValueError when it is not valid.

    Lenient on one point: a name holding 8-bit bytes is taken as raw UTF-8 (many clients
    send that), with ``&`` then meaning itself.
    """
    if not raw.isascii():
        return raw.decode("utf-8")
    text = raw.decode("ascii")
    out = []
    pos = 0
    while True:
        shift = text.find("&", pos)
        if shift < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:shift])
        end = text.find("-", shift + 1)
        if end < 0:
            raise ValueError("modified UTF-7: '&' without closing '-'")
        run = text[shift + 1 : end]
        out.append(_decode_run(run) if run else "&")
        pos = end + 1


def _decode_run(run: str) -> str:
    if not _BASE64_RUN.fullmatch(run):
        raise ValueError("modified UTF-7: invalid character in base64 run")
    if len(run) % 8 not in (0, 3, 6):
        raise ValueError("modified UTF-7: base64 run is not whole UTF-16 units")
    padded = run + "=" * (-len(run) % 4)
    try:
        data = base64.b64decode(padded, b"+,", validate=True)
    except binascii.Error:
        raise ValueError("modified UTF-7: invalid base64") from None
    if base64.b64encode(data, b"+,").rstrip(b"=").decode("ascii") != run:
        raise ValueError("modified UTF-7: non-zero padding bits")
    chars = data.decode("utf-16-be")  # UnicodeDecodeError (a ValueError) for bad surrogates
    if _PRINTABLE.search(chars):
        raise ValueError("modified UTF-7: printable ASCII must not be base64-encoded")
    return chars
