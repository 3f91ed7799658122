"""BINARY (RFC 3516): FETCH BINARY[part]<partial>, BINARY.PEEK[...], BINARY.SIZE[part].

The content of a leaf part with its Content-Transfer-Encoding removed (base64 and
quoted-printable decoded; 7bit, 8bit and binary as they are), decoded on request from the
stored message (:mod:`mailserv.message.decode`): nothing is cached.  A part larger than one
decoding step is decoded in time slices, so the reactor is never held for long.  The data
goes out as a literal8 (``~{n}``) when it holds a NUL, else as a plain literal.

``BINARY[]`` is the whole message as stored; a multipart or message/rfc822 part has no
single encoding to remove and is refused with NO; an encoding the server cannot decode with
NO [UNKNOWN-CTE] (the FETCH responses already written stand).  APPEND takes literal8
content (the framer reads ``~{n}`` within the same bounds as ``{n}``;
:mod:`mailserv.imap.commands.append`).  Every backend stores the bytes it is given and
hands them back, so BINARY is offered with all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from mailserv.imap.fetchatt import FetchAttribute, LateRenderer, _part_numbers
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import No
from mailserv.imap.view import SelectedView
from mailserv.interfaces import MessageMeta
from mailserv.message import decode
from mailserv.slicing import TimeSlices
from mailserv.syntax import encode
from mailserv.syntax.errors import ParseError


@dataclass(frozen=True, slots=True)
class BinarySection:
    """The argument of a BINARY item: the part numbers (``()`` for the whole message)
    and the partial range ``(origin, count)``."""

    part: tuple[int, ...]
    partial: tuple[int, int] | None = None

    def label(self, name: bytes) -> bytes:
        label = name + b"[" + ".".join(map(str, self.part)).encode("ascii") + b"]"
        if self.partial is not None:
            label += b"<%d>" % self.partial[0]
        return label


def _section(name: str, section: str | None) -> tuple[int, ...]:
    if section is None:
        raise ParseError(None, f"{name} needs a section in brackets, e.g. {name}[1]")
    return _part_numbers(section) if section else ()


def _parse(section: str | None, partial: tuple[int, int] | None) -> BinarySection:
    return BinarySection(_section("BINARY", section), partial)


def _parse_size(section: str | None, partial: tuple[int, int] | None) -> BinarySection:
    if partial is not None:
        raise ParseError(None, "BINARY.SIZE takes no partial range")
    return BinarySection(_section("BINARY.SIZE", section))


def literal8(data: bytes) -> bytes:
    """A literal8 when the data holds a NUL (RFC 3516 4.3), else a plain literal."""
    if b"\x00" in data:
        return b"~{%d}\r\n" % len(data) + data
    return encode.literal(data)


def _renderer(
    view: SelectedView, section: BinarySection, finish: Callable[[bytes], bytes]
) -> LateRenderer:
    """``finish`` applied to the decoded section: at once, or (a large part decoded in
    slices) awaitable."""
    slices = TimeSlices(view.session.services.turns)
    part = section.part

    async def later(data: Awaitable[bytes]) -> bytes:
        return finish(await data)

    def render(meta: MessageMeta, raw: bytes) -> bytes | Awaitable[bytes]:
        try:
            found = decode.leaf(raw, meta.info, part)
            if found is None:
                return finish(b"")
            entity, whole = found
            steps = decode.content(raw, entity, whole)
        except decode.NotLeaf as exc:
            raise No(
                f"BINARY[{'.'.join(map(str, part))}] is a {exc} part, not a leaf: "
                "fetch its parts one by one"
            ) from exc
        except decode.UnknownEncoding as exc:
            raise No(
                f"Cannot decode the content-transfer-encoding {str(exc)[:40]!r}", "UNKNOWN-CTE"
            ) from exc
        if entity.end - entity.body_start <= decode.STEP:
            return finish(decode.at_once(steps))
        return later(slices.run(steps))

    return render


def _render(view: SelectedView, argument: Hashable) -> LateRenderer:
    assert isinstance(argument, BinarySection)
    label = argument.label(b"BINARY") + b" "
    partial = argument.partial

    def finish(data: bytes) -> bytes:
        if partial is not None:
            data = data[partial[0] : partial[0] + partial[1]]
        return label + literal8(data)

    return _renderer(view, argument, finish)


def _render_size(view: SelectedView, argument: Hashable) -> LateRenderer:
    assert isinstance(argument, BinarySection)
    label = argument.label(b"BINARY.SIZE") + b" "
    return _renderer(view, argument, lambda data: label + b"%d" % len(data))


EXTENSION = Extension(
    "BINARY",
    capabilities=(Capability(b"BINARY"),),
    fetch_items=(
        FetchAttribute("BINARY", _parse, _render, needs_content=True, sets_seen=True),
        FetchAttribute("BINARY.PEEK", _parse, _render, needs_content=True),
        FetchAttribute("BINARY.SIZE", _parse_size, _render_size, needs_content=True),
    ),
    response_codes=frozenset({"UNKNOWN-CTE"}),
)
