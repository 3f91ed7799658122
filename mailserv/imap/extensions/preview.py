"""PREVIEW (RFC 8970): FETCH ``PREVIEW`` and ``PREVIEW (LAZY)``, a short plain-text excerpt
of the message, kept in its MessageInfo since it entered the store
(:mod:`mailserv.message.preview`).  A message stored before previews were kept has none:
``PREVIEW`` computes it from the message then, ``PREVIEW (LAZY)`` answers NIL without
reading the message (the client asks again without LAZY when it wants it)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from mailserv.imap.fetchatt import FetchAttribute, Renderer
from mailserv.imap.registry import Capability, Extension
from mailserv.interfaces import MessageMeta
from mailserv.message.preview import make_preview
from mailserv.syntax import encode
from mailserv.syntax.errors import ParseError

if TYPE_CHECKING:
    from mailserv.imap.view import SelectedView


def _parse(section: str | None, partial: tuple[int, int] | None) -> Hashable:
    if section is not None or partial is not None:
        raise ParseError(None, "PREVIEW takes no section or partial range")
    return False


def _options(argument: Hashable, words: Sequence[str]) -> Hashable:
    """``(LAZY)``: the only modifier RFC 8970 defines; the argument says whether it came."""
    unknown = [word for word in words if word.upper() != "LAZY"]
    if unknown or not words:
        raise ParseError(None, f"Unknown PREVIEW modifier {(unknown or [''])[0][:40]!r}")
    return True


def _missing(lazy: Hashable, meta: MessageMeta) -> bool:
    """The message's bytes are read only for a preview to compute now (not LAZY)."""
    return not lazy and meta.info.preview is None


def _render(view: SelectedView, lazy: Hashable) -> Renderer:
    def render(meta: MessageMeta, raw: bytes) -> bytes:
        text = meta.info.preview
        if text is None and raw:
            text = make_preview(raw, meta.info)
        if text is None:
            return b"PREVIEW NIL"
        return b"PREVIEW " + encode.string(text.encode("utf-8"))

    return render


ITEM = FetchAttribute("PREVIEW", _parse, _render, options=_options, content_for=_missing)

EXTENSION = Extension("PREVIEW", capabilities=(Capability(b"PREVIEW"),), fetch_items=(ITEM,))
