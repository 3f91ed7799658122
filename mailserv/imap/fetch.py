"""FETCH responses: precomputed ENVELOPE/BODYSTRUCTURE bytes, sections cut by offset.

The items are compiled once per command into renderers; per message the work is a few
byte joins, and message content is read only when an item needs it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from mailserv.events import report
from mailserv.imap import shared
from mailserv.imap.fetchatt import (
    BodySection,
    ExtensionItem,
    FetchItem,
    LateRenderer,
    Renderer,
    Simple,
    needs_content,
    needs_info,
    sets_seen,
)
from mailserv.imap.fetchparams import decode_extended
from mailserv.imap.replies import Bad
from mailserv.interfaces import SEEN, IFlagsMailbox, IMailbox, MessageMeta, StoreMode
from mailserv.message.sections import FieldPicker, section_bytes
from mailserv.slicing import TimeSlices
from mailserv.syntax import dates, encode

if TYPE_CHECKING:
    from mailserv.imap.session import Session
    from mailserv.imap.view import SelectedView

_META_BATCH = 1000
_CONTENT_BATCH = 100
_PAUSE_EVERY = 32
"""Messages rendered between two checks of the time slice within a batch."""


def _compile(view: SelectedView, item: FetchItem) -> LateRenderer:
    if isinstance(item, BodySection):
        return _section_renderer(item)
    if isinstance(item, ExtensionItem):
        return item.attribute.render(view, item.argument)
    name = item.name
    if name == "UID":
        return lambda m, raw: b"UID %d" % m.uid
    if name == "FLAGS":
        return lambda m, raw: b"FLAGS " + view.flags_with_recent(m.uid, m.flags, m.modseq)
    if name == "INTERNALDATE":
        return lambda m, raw: b"INTERNALDATE " + dates.format_date_time(m.internaldate)
    if name == "RFC822.SIZE":
        return lambda m, raw: b"RFC822.SIZE %d" % m.size
    if name in _PRECOMPUTED:
        # session imports notify, which imports this
        from mailserv.imap.session import is_rev2, utf8_names

        label, value = name.encode() + b" ", _PRECOMPUTED[name]
        if name != "ENVELOPE" and is_rev2(view.session):  # RFC 9051 7.5.2: RFC 2231 decoded
            return lambda m, raw: label + utf8_strings(decode_extended(value(m)))
        if utf8_names(view.session):  # RFC 6855 3, RFC 9051: strings in UTF-8, quoted
            return lambda m, raw: label + utf8_strings(value(m))
        return lambda m, raw: label + value(m)
    if name == "RFC822":
        return lambda m, raw: b"RFC822 " + encode.literal(raw)
    if name == "RFC822.HEADER":
        return lambda m, raw: (
            b"RFC822.HEADER " + encode.literal(section_bytes(raw, m.info, (), "HEADER"))
        )
    if name == "RFC822.TEXT":
        return lambda m, raw: (
            b"RFC822.TEXT " + encode.literal(section_bytes(raw, m.info, (), "TEXT"))
        )
    raise Bad(f"Unsupported FETCH item {name}")


_PRECOMPUTED: dict[str, Callable[[MessageMeta], bytes]] = {
    "ENVELOPE": lambda m: m.info.envelope,
    "BODY": lambda m: m.info.body,
    "BODYSTRUCTURE": lambda m: m.info.bodystructure,
}
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"|\{(\d+)\}\r\n')
"""A quoted string, or a literal's ``{n}`` (its octets follow)."""


def utf8_strings(data: bytes) -> bytes:
    """Precomputed ENVELOPE/BODY/BODYSTRUCTURE bytes for a client that takes UTF-8
    (RFC 6855 3, RFC 9051 4.3): every literal (the 8-bit header values) in UTF-8, read as
    windows-1252 when it is not UTF-8, and quoted when printable."""
    if b"{" not in data:
        return data  # no literal: nothing to change (the usual case)
    out: list[bytes] = []
    pos = 0
    while (found := _STRING.search(data, pos)) is not None:
        if found.group(1) is None:  # a quoted string: ASCII already
            out.append(data[pos : found.end()])
            pos = found.end()
            continue
        start = found.end()
        end = start + int(found.group(1))
        out += [data[pos : found.start()], encode.string(as_utf8(data[start:end]), utf8=True)]
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def as_utf8(value: bytes) -> bytes:
    """``value`` when it is UTF-8, else its octets read as windows-1252 (undefined ones as
    U+FFFD): raw 8-bit headers are mostly Latin-1 or windows-1252 text."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace").encode("utf-8")
    return value


def _section_renderer(item: BodySection) -> Renderer:
    label = item.label()
    part, text, fields, partial = item.part, item.text, item.fields, item.partial
    picker = FieldPicker(fields) if text is not None and text.upper() == "HEADER.FIELDS" else None

    def render(m: MessageMeta, raw: bytes) -> bytes:
        data = section_bytes(raw, m.info, part, text, fields, picker)
        if partial is not None:
            origin, count = partial
            data = data[origin : origin + count]
        return label + b" " + encode.literal(data)

    return render


def metas_reader(
    mailbox: IMailbox, info: bool
) -> Callable[[Sequence[int]], Awaitable[Sequence[MessageMeta]]]:
    """The mailbox's ``fetch``; its ``fetch_flags`` when it has one and the caller reads
    no ``info`` (``IFlagsMailbox``)."""
    if not info and IFlagsMailbox.providedBy(mailbox):
        return mailbox.fetch_flags  # type: ignore[attr-defined,no-any-return]
    return mailbox.fetch


async def fetch(
    session: Session,
    view: SelectedView,
    uids: Sequence[int],
    items: list[FetchItem],
    uid_mode: bool,
    tests: Sequence[Callable[[MessageMeta], bool]] = (),
) -> None:
    """Write ``* n FETCH`` for each UID still in the mailbox that passes the ``tests``
    (those of the command's modifiers)."""
    if uid_mode and not any(isinstance(i, Simple) and i.name == "UID" for i in items):
        items = [Simple("UID"), *items]
    renderers = [_compile(view, item) for item in items]
    flags_renderer = _compile(view, Simple("FLAGS"))
    wants_flags = any(isinstance(i, Simple) and i.name == "FLAGS" for i in items)
    content = needs_content(items)
    wants = [
        partial(item.attribute.content_for, item.argument)
        for item in items
        if isinstance(item, ExtensionItem) and item.attribute.content_for is not None
    ]
    slices = TimeSlices(session.services.turns)
    newly_seen = await _mark_seen(session, view, uids, slices) if sets_seen(items) else set()
    # RFC 7162 3.1: with CONDSTORE on, a FETCH that set \Seen tells UID and MODSEQ too
    add_uid = add_modseq = False
    if newly_seen and view.shows_modseq:
        add_uid = not any(isinstance(i, Simple) and i.name == "UID" for i in items)
        add_modseq = not any(isinstance(i, ExtensionItem) and i.name == "MODSEQ" for i in items)
    mailbox = view.mailbox
    read = metas_reader(mailbox, content or bool(wants) or needs_info(items))
    batch = _CONTENT_BATCH if content else _META_BATCH
    for start in range(0, len(uids), batch):
        metas: Sequence[MessageMeta] = await read(uids[start : start + batch])
        out = []
        for at, meta in enumerate(metas, start=1):
            if at % _PAUSE_EVERY == 0:
                # Rendering may decode stored records (BODY[...] of a message whose parsed
                # form was kept as read): a batch of them is no single reactor turn.
                await slices.pause()
            seq = view.seq_of(meta.uid)
            if seq is None or (tests and not all(test(meta) for test in tests)):
                continue
            raw = b""
            if content or (wants and any(want(meta) for want in wants)):
                try:
                    raw = await mailbox.content(meta.uid)
                except KeyError:
                    continue
            rendered = [render(meta, raw) for render in renderers]
            parts = [p for p in rendered if isinstance(p, bytes)]
            if len(parts) < len(rendered):  # most are bytes: no await per item then
                parts = [p if isinstance(p, bytes) else await p for p in rendered]
            if meta.uid in newly_seen:
                if not wants_flags:
                    flags = flags_renderer(meta, raw)
                    parts.append(flags if isinstance(flags, bytes) else await flags)
                if add_uid:
                    parts.insert(0, b"UID %d" % meta.uid)
                if add_modseq:
                    parts.append(b"MODSEQ (%d)" % meta.modseq)
            out.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
        view.write_fetches(out)
        await session.drain()
        await slices.pause()


async def _mark_seen(
    session: Session, view: SelectedView, uids: Sequence[int], slices: TimeSlices
) -> set[int]:
    """BODY[...] without PEEK sets \\Seen (RFC 3501 6.4.5); the UIDs that changed.  Not
    in a shared mailbox where the user lacks ``s`` (RFC 4314 4: the read goes on)."""
    if view.readonly or not uids or not await shared.allowed_selected(session, "s"):
        return set()
    result = await view.mailbox.store(uids, StoreMode.ADD, frozenset({SEEN}), session)
    report.flags_changed(session, view.mailbox, result.changed)
    return set((await view.own_changes(result.changed, slices)).uids)
