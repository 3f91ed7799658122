"""Decoded text of a stored message, for SEARCH HEADER / TEXT / BODY."""

from __future__ import annotations

import binascii
from collections.abc import Callable

from mailserv.message.headers import decode_charset, iter_fields, search_text, to_text
from mailserv.message.info import MessageInfo, Part

_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(set(range(256)) - set(_BASE64))


def header_values(raw: bytes, info: MessageInfo, name: str) -> list[str]:
    """Every value of the top-level header field ``name`` (any case), unfolded and decoded."""
    wanted = name.encode("utf-8", "surrogateescape").lower()
    root = info.root
    return [
        search_text(match.group(2))
        for match in iter_fields(raw, root.header_start, root.body_start)
        if match.group(1).lower() == wanted
    ]


def header_text(raw: bytes, info: MessageInfo) -> str:
    """The whole top-level header, one decoded ``Name: value`` line per field."""
    root = info.root
    return "\n".join(
        f"{to_text(match.group(1))}: {search_text(match.group(2))}"
        for match in iter_fields(raw, root.header_start, root.body_start)
    )


def body_text(raw: bytes, info: MessageInfo) -> str:
    """The text/* parts (those of attached messages too), transfer- and charset-decoded."""
    out: list[str] = []
    _collect(raw, info.root, out)
    return "\n".join(out)


def _collect(raw: bytes, part: Part, out: list[str]) -> None:
    if part.content_type.startswith("multipart/"):
        if not part.parts:  # no usable boundary: search what is there
            out.append(decode_part(raw, part))
        for child in part.parts:
            _collect(raw, child, out)
    elif part.message is not None:
        _collect(raw, part.message, out)
    elif part.content_type.startswith("text/"):
        out.append(decode_part(raw, part))


def decode_part(raw: bytes, part: Part) -> str:
    """A part's body as text: Content-Transfer-Encoding undone, then the charset."""
    return decode_charset(
        transfer_decode(raw[part.body_start : part.end], part.encoding), part.charset
    )


def transfer_decode(data: bytes, encoding: str) -> bytes:
    """Undo base64 or quoted-printable leniently; other encodings are identity."""
    if encoding == "base64":
        try:
            return binascii.a2b_base64(data)
        except (binascii.Error, ValueError):
            # Bad padding or a stray character: keep the whole quanta that are there.
            clean = data.translate(None, _NOT_BASE64)
            clean = clean[: len(clean) - len(clean) % 4 if len(clean) % 4 == 1 else len(clean)]
            return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


# -- what SEARCH compares: decoded, then case-folded (the engine's scan, and the indexes
# of the maildir and sql backends, which must answer exactly as the scan does) ------------


def folded_header(raw: bytes, info: MessageInfo) -> str:
    """The whole top-level header, decoded (TEXT searches it)."""
    return "\n".join(_folded(lambda: [header_text(raw, info)]))


def folded_body(raw: bytes, info: MessageInfo) -> str:
    """The text parts, decoded (BODY and TEXT search them)."""
    return "\n".join(_folded(lambda: [body_text(raw, info)]))


def folded_values(raw: bytes, info: MessageInfo, name: str) -> list[str]:
    """Every value of the top-level header field ``name`` (HEADER searches them)."""
    return _folded(lambda: header_values(raw, info, name))


def _folded(make: Callable[[], list[str]]) -> list[str]:
    try:
        return [value.casefold() for value in make()]
    except (ValueError, LookupError):
        return []
