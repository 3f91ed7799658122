"""RFC 2231 extended parameter values in BODY/BODYSTRUCTURE, the IMAP4rev2 way.

The parser (:mod:`mailserv.message.parse`) merges continuations and keeps an extended value
in its ASCII ``charset'language'%XX`` form under the name with ``*`` (``"NAME*"``), which is
what an IMAP4rev1 client can be sent (RFC 2231 4.1 asks for merged continuations, RFC 3501
has no way to carry non-ASCII).  RFC 9051 7.5.2 asks more of an IMAP4rev2 server: such a
parameter is decoded, converted to UTF-8 and returned as ``"NAME*"`` with that UTF-8 value.

The stored bytes hold both kinds of structure; :func:`decode_extended` walks the BODY or
BODYSTRUCTURE grammar so only parameter lists are touched, never an ENVELOPE string or a
Content-Language list that happens to look alike.  Anything it does not recognise leaves
the bytes as they are.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from mailserv.message.headers import decode_charset
from mailserv.syntax import encode

_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_LITERAL = re.compile(rb"\{(\d+)\}\r\n")
_ATOM = re.compile(rb"[^ ()\"{]+")
_UNESCAPE = re.compile(rb"\\(.)")
_EXTENDED = re.compile(r"([^']*)'[^']*'(.*)", re.DOTALL)
_ENCAPSULATING = ((b"MESSAGE", b"RFC822"), (b"MESSAGE", b"GLOBAL"))


class _Unexpected(Exception):
    """The bytes are not a BODY/BODYSTRUCTURE this walker knows."""


class _Walk:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.edits: list[tuple[int, int, bytes]] = []

    def char(self, pos: int) -> int:
        if pos >= len(self.data):
            raise _Unexpected
        return self.data[pos]

    def space(self, pos: int) -> int:
        if self.char(pos) != 0x20:
            raise _Unexpected
        return pos + 1

    def string(self, pos: int) -> tuple[bytes | None, int]:
        """The string at ``pos`` (None for anything else) and where the value ends."""
        found = _QUOTED.match(self.data, pos)
        if found is not None:
            return _UNESCAPE.sub(rb"\1", found.group(1)), found.end()
        found = _LITERAL.match(self.data, pos)
        if found is not None:
            end = found.end() + int(found.group(1))
            return self.data[found.end() : end], end
        return None, self.skip(pos)

    def skip(self, pos: int) -> int:
        """The end of the value (atom, string or list) at ``pos``."""
        first = self.char(pos)
        if first == 0x28:  # (
            pos += 1
            while self.char(pos) != 0x29:
                pos = self.skip(pos)
                if self.char(pos) == 0x20:
                    pos += 1
            return pos + 1
        if first in (0x22, 0x7B):  # " {
            found = _QUOTED.match(self.data, pos) or _LITERAL.match(self.data, pos)
            if found is None:
                raise _Unexpected
            return found.end() + (int(found.group(1)) if first == 0x7B else 0)
        found = _ATOM.match(self.data, pos)
        if found is None:
            raise _Unexpected
        return found.end()

    def params(self, pos: int) -> int:
        """A ``body-fld-param`` at ``pos``: extended values decoded; its end."""
        if self.char(pos) != 0x28:
            return self.skip(pos)
        pos += 1
        while self.char(pos) != 0x29:
            name, pos = self.string(pos)
            pos = self.space(pos)
            start = pos
            value, pos = self.string(pos)
            if name is not None and value is not None and name.endswith(b"*"):
                decoded = _decode(value)
                if decoded is not None:
                    self.edits.append((start, pos, decoded))
            if self.char(pos) == 0x20:
                pos += 1
        return pos + 1

    def extension(self, pos: int) -> int:
        """What follows the parameters or MD5 in BODYSTRUCTURE: the disposition's
        parameters are decoded too; the end of the part."""
        if self.char(pos) == 0x29:
            return pos + 1  # BODY: no extension data
        pos = self.space(pos)
        if self.char(pos) == 0x28:  # ("ATTACHMENT" (params))
            pos = self.space(self.skip(pos + 1))
            pos = self.params(pos)
            if self.char(pos) != 0x29:
                raise _Unexpected
            pos += 1
        else:
            pos = self.skip(pos)
        while self.char(pos) == 0x20:  # language, location, later extensions
            pos = self.skip(pos + 1)
        if self.char(pos) != 0x29:
            raise _Unexpected
        return pos + 1

    def body(self, pos: int) -> int:
        if self.char(pos) != 0x28:
            raise _Unexpected
        pos += 1
        if self.char(pos) == 0x28:  # multipart: the parts, then the subtype
            while self.char(pos) == 0x28:
                pos = self.body(pos)
            pos = self.skip(self.space(pos))
            if self.char(pos) == 0x29:
                return pos + 1
            pos = self.params(self.space(pos))
            return self.extension(pos)
        kind, pos = self.string(pos)
        subtype, pos = self.string(self.space(pos))
        pos = self.params(self.space(pos))
        for _ in range(4):  # id, description, encoding, size
            pos = self.skip(self.space(pos))
        media = ((kind or b"").upper(), (subtype or b"").upper())
        if media in _ENCAPSULATING:
            pos = self.skip(self.space(pos))  # the envelope
            pos = self.body(self.space(pos))
            pos = self.skip(self.space(pos))  # lines
        elif media[0] == b"TEXT":
            pos = self.skip(self.space(pos))  # lines
        if self.char(pos) == 0x29:
            return pos + 1
        pos = self.skip(self.space(pos))  # MD5
        return self.extension(pos)

    def result(self) -> bytes:
        out: list[bytes] = []
        last = 0
        for start, end, replacement in self.edits:
            out += [self.data[last:start], replacement]
            last = end
        out.append(self.data[last:])
        return b"".join(out)


def _decode(value: bytes) -> bytes | None:
    """``charset'language'%XX`` as an IMAP string of its UTF-8 text; None when it is not
    of that form."""
    found = _EXTENDED.fullmatch(value.decode("latin-1"))
    if found is None:
        return None
    text = decode_charset(unquote_to_bytes(found.group(2)), found.group(1) or None)
    return encode.string(text.encode("utf-8"), utf8=True)


def decode_extended(data: bytes) -> bytes:
    """BODY or BODYSTRUCTURE bytes with every extended parameter value (a ``"NAME*"``
    parameter) decoded to UTF-8, as RFC 9051 7.5.2 asks of an IMAP4rev2 server."""
    if b"*" not in data:
        return data  # no parameter name ends with '*' (the usual case)
    walk = _Walk(data)
    try:
        if walk.body(0) != len(data):
            return data
    except _Unexpected:
        return data
    return walk.result()
