"""BODY[section] (RFC 3501 6.4.5): slices of the raw message at offsets found by the parser."""

from __future__ import annotations

import re

from mailserv.message.headers import iter_fields
from mailserv.message.info import MessageInfo, Part

_MESSAGE_TEXTS = frozenset({"HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})


def find_part(info: MessageInfo, part: tuple[int, ...]) -> tuple[Part, bool] | None:
    """The entity a section-part names, and whether it is a message rather than a part.

    ``()`` is the whole message.  Part 1 of a non-multipart message is its body; the
    numbers after a message/rfc822 part go into the encapsulated message.
    """
    entity = info.root
    is_message = True
    for number in part:
        if not is_message and entity.message is not None:
            entity = entity.message  # a message/rfc822 part: number inside its message
            is_message = True
        if entity.content_type.startswith("multipart/"):
            if not 0 < number <= len(entity.parts):
                return None
            entity = entity.parts[number - 1]
        elif not (is_message and number == 1):
            return None
        is_message = False
    return entity, is_message


class FieldPicker:
    """The fields of a header block named in ``names`` (HEADER.FIELDS), case-insensitively.

    Built once per FETCH item: one compiled pattern finds the named lines (with their
    continuation lines) at C speed, instead of every field being matched and compared.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        alternatives = b"|".join(re.escape(n.encode("utf-8", "surrogateescape")) for n in names)
        self._pattern = (
            re.compile(rb"(?im)^(?:" + alternatives + rb")[ \t]*+:[^\n]*+(?:\n[ \t][^\n]*+)*+\n?")
            if names
            else None
        )

    def pick(self, raw: bytes, entity: Part) -> bytes:
        """The named fields of ``entity``'s header, as :func:`header_fields` gives them."""
        if self._pattern is None:
            return b"\r\n"
        block = raw[entity.header_start : entity.body_start]
        out = [m.group() for m in self._pattern.finditer(block)]
        if out and not out[-1].endswith(b"\n"):  # only the block's last line can lack one
            out[-1] += b"\r\n"
        out.append(b"\r\n")
        return b"".join(out)


def section_bytes(
    raw: bytes,
    info: MessageInfo,
    part: tuple[int, ...],
    text: str | None,
    fields: tuple[str, ...] = (),
    picker: FieldPicker | None = None,
) -> bytes:
    """The octets of ``BODY[<part>.<text> (<fields>)]``; b"" when that section does not exist.

    ``text`` is None (the part's content, or the whole message for ``()``), ``"MIME"``,
    ``"HEADER"``, ``"TEXT"``, ``"HEADER.FIELDS"`` or ``"HEADER.FIELDS.NOT"`` (any case).
    ``picker``, built once from ``fields`` when one FETCH item is rendered for many
    messages, saves building it per message.
    """
    kind = None if text is None else text.upper()
    if not part:
        return _whole_message_section(raw, info, kind, fields, picker)
    found = find_part(info, part)
    if found is None:
        return b""
    entity, is_message = found
    if kind is None:
        if not part:
            return raw[entity.header_start : entity.end]
        return raw[entity.body_start : entity.end]
    if kind == "MIME":
        return raw[entity.header_start : entity.body_start] if part else b""
    if kind not in _MESSAGE_TEXTS:
        return b""
    if not is_message:
        if entity.message is None:
            return b""
        entity = entity.message
    if kind == "TEXT":
        return raw[entity.body_start : entity.end]
    if kind == "HEADER":
        return raw[entity.header_start : entity.body_start]
    if kind == "HEADER.FIELDS":
        return (picker or FieldPicker(fields)).pick(raw, entity)
    return header_fields(raw, entity, fields, exclude=True)


def header_block(raw: bytes, info: MessageInfo, part: tuple[int, ...] = ()) -> bytes:
    """The header of the message at ``part`` (``()`` or a message/rfc822 part), else b""."""
    return section_bytes(raw, info, part, "HEADER")


def _whole_message_section(
    raw: bytes,
    info: MessageInfo,
    kind: str | None,
    fields: tuple[str, ...],
    picker: FieldPicker | None,
) -> bytes:
    """``BODY[]``, ``BODY[HEADER]``, ``BODY[TEXT]`` and ``BODY[HEADER.FIELDS...]`` of the
    message: its offsets alone are needed, which a record kept as read gives without
    decoding its part tree (:meth:`mailserv.message.lazyinfo.LazyInfo.top`)."""
    start, body, end = info.top()
    if kind is None:
        return raw[start:end]
    if kind == "TEXT":
        return raw[body:end]
    if kind == "HEADER":
        return raw[start:body]
    if kind not in _MESSAGE_TEXTS:
        return b""  # MIME names a part's header: the message has none
    entity = Part(start, body, end, "message/rfc822", "7bit", None)  # offsets alone are read
    if kind == "HEADER.FIELDS":
        return (picker or FieldPicker(fields)).pick(raw, entity)
    return header_fields(raw, entity, fields, exclude=True)


def header_fields(raw: bytes, entity: Part, names: tuple[str, ...], exclude: bool) -> bytes:
    """The fields of ``entity``'s header named (or, with ``exclude``, not named) in ``names``.

    Names compare case-insensitively; folded lines are kept as they are; the result ends with
    the blank line.
    """
    wanted = {name.encode("utf-8", "surrogateescape").lower() for name in names}
    out: list[bytes] = []
    for match in iter_fields(raw, entity.header_start, entity.body_start):
        if (match.group(1).lower() in wanted) is not exclude:
            line = match.group()
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)
