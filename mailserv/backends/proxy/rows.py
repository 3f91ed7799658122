"""Listing an upstream mailbox: SELECT's state, and a row per message from ``UID FETCH``.

A row is what the mirror keeps of a message without its text: UID, flags, internal date,
size and, where the upstream has CONDSTORE, mod-sequence.  :func:`fetch_items` reads any
FETCH response into its items by name; :func:`upstream_ids` its EMAILID and THREADID.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime

from mailserv.backends.proxy import wire
from mailserv.backends.proxy.client import UpstreamProtocol
from mailserv.message.ids import OBJECT_ID
from mailserv.message.info import MessageInfo

Row = tuple[int, frozenset[str], datetime, int, int | None]
"""(uid, flags, internal date, size, modseq) as the upstream lists a message."""

_ROW_ITEMS = b"(UID FLAGS RFC822.SIZE INTERNALDATE)"
_ROW_ITEMS_MODSEQ = b"(UID FLAGS RFC822.SIZE INTERNALDATE MODSEQ)"
_SELECT_REPLIES = ("EXISTS", "RECENT", "FLAGS", "OK", "VANISHED", "FETCH")


def fetch_items(response: wire.Response) -> dict[str, object] | None:
    """The items of a FETCH response by name; None for any other response."""
    if response.kind != "FETCH" or not response.data:
        return None
    items = response.data[0]
    if not isinstance(items, list):
        return None
    return wire.pairs(items)


def object_id(value: object) -> str | None:
    """An RFC 8474 ``(id)`` (STATUS MAILBOXID, FETCH EMAILID/THREADID) when well formed;
    None for NIL or anything else."""
    if isinstance(value, list) and len(value) == 1:
        text = wire.to_text(value[0])
        if OBJECT_ID.fullmatch(text):
            return text
    return None


def upstream_ids(found: dict[str, object]) -> tuple[str | None, str | None]:
    """(EMAILID, THREADID) of a FETCH response; THREADID NIL is "" (the upstream said it
    has none), None when the response did not carry it."""
    thread = (object_id(found["THREADID"]) or "") if "THREADID" in found else None
    return object_id(found.get("EMAILID")), thread


async def adopt_upstream_ids(
    conn: UpstreamProtocol, infos: dict[int, MessageInfo], uids: Collection[int]
) -> list[tuple[int, MessageInfo]]:
    """Give the cached infos of ``uids`` that hold our own EMAILID and THREADID (cached
    before the upstream had OBJECTID, or by a version that did not ask) the upstream's,
    asked for with no body; the infos changed.  ``conn`` has the mailbox selected."""
    stale = sorted(uid for uid in uids if uid in infos and infos[uid].threadid is None)
    if not stale:
        return []
    ids: dict[int, tuple[str | None, str | None]] = {}

    def collect(response: wire.Response) -> bool:
        found = fetch_items(response)
        uid = None if found is None else found.get("UID")
        if found is None or not isinstance(uid, int) or "THREADID" not in found:
            return False
        ids[uid] = upstream_ids(found)
        return "FLAGS" not in found

    items = b"(UID EMAILID THREADID)"
    await conn.command(b"UID FETCH", wire.uid_set(stale), items, handler=collect)
    changed = []
    for uid, (emailid, threadid) in ids.items():
        if uid in infos:
            info = replace(infos[uid], emailid=emailid or infos[uid].emailid, threadid=threadid)
            infos[uid] = info
            changed.append((uid, info))
    return changed


async def select(conn: UpstreamProtocol, mailbox: wire.Arg) -> dict[str, int]:
    """SELECT ``mailbox``: EXISTS and the numeric response codes (UIDVALIDITY, UIDNEXT,
    HIGHESTMODSEQ; NOMODSEQ as 0).  CommandFailed when the upstream refuses."""
    state: dict[str, int] = {}

    def selecting(response: wire.Response) -> bool:
        kind = response.kind
        if kind == "EXISTS" and response.number is not None:
            state["EXISTS"] = response.number
        elif kind == "OK" and response.code is not None:
            value = response.code_data[0] if response.code_data else 0
            state[response.code] = value if isinstance(value, int) else 0
        return kind in _SELECT_REPLIES

    await conn.command(b"SELECT", mailbox, handler=selecting)
    return state


async def rows_after(conn: UpstreamProtocol, after: int, modseq: bool) -> list[Row]:
    """The rows of the selected mailbox's messages above UID ``after``, ascending."""
    rows: list[Row] = []
    await each_row_after(conn, after, modseq, rows.append)
    rows.sort()
    return rows


async def each_row_after(
    conn: UpstreamProtocol, after: int, modseq: bool, each: Callable[[Row], object]
) -> None:
    """Call ``each`` with the row of every message above UID ``after``, as its line
    arrives: in the wire's order, so an EXPUNGE or VANISHED told after it in the same
    answer (a message expunged elsewhere while listed) finds it already there."""

    def collect(response: wire.Response) -> bool:
        found = fetch_items(response)
        if found is None:
            return False
        uid = found.get("UID")
        size = found.get("RFC822.SIZE")
        if not isinstance(uid, int) or not isinstance(size, int) or uid <= after:
            return False
        date = wire.internaldate(found.get("INTERNALDATE"))
        if date is None:
            return False
        flags = wire.flag_set(found.get("FLAGS"))
        each((uid, flags, date, size, wire.modseq_of(found.get("MODSEQ"))))
        return True

    items = _ROW_ITEMS_MODSEQ if modseq else _ROW_ITEMS
    await conn.command(b"UID FETCH", b"%d:*" % (after + 1), items, handler=collect)
