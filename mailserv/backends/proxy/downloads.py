"""Downloads: message bytes fetched from the upstream, parsed once and cached.

A message is parsed once, from its full text (``BODY.PEEK[]``), the first time FETCH
needs it; the result is cached per (UIDVALIDITY, UID) for the user.  An upstream with
OBJECTID (RFC 8474) is asked for EMAILID and THREADID with the text, and its ids are the
ones kept (so the proxy's ids are the upstream's, as a client that also talks to the
upstream, or to another proxy of it, expects).  The bytes go to the
backend's :class:`ContentCache`, and a content request brings the uncached messages that
follow it in the last FETCH batch along (bounded), since clients read them in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from mailserv.backends.proxy import wire
from mailserv.backends.proxy.channel import Channel
from mailserv.backends.proxy.client import UpstreamProtocol
from mailserv.backends.proxy.mirror import NO_INFO, Mirror
from mailserv.backends.proxy.rows import fetch_items, upstream_ids
from mailserv.message.parse import parse_message

if TYPE_CHECKING:
    from mailserv.backends.proxy.user import UserState

_ITEMS = b"(UID BODY.PEEK[])"
_ITEMS_OBJECTID = b"(UID EMAILID THREADID BODY.PEEK[])"
_DOWNLOAD_BYTES = 8 << 20
_DOWNLOAD_COUNT = 1000
_PREFETCH_BYTES = 4 << 20
_PREFETCH_COUNT = 200


class Downloads:
    """The message bytes of mailbox ``name``, fetched on ``channel``."""

    def __init__(self, user: UserState, name: str, channel: Channel) -> None:
        self.user = user
        self.name = name
        self.channel = channel
        self.last_fetch: Sequence[int] = ()
        """The UIDs of the latest FETCH: the order a content request prefetches in."""
        self._recent: dict[int, bytes] = {}
        channel.on_removed = self.forget

    def forget(self, uids: list[int]) -> None:
        """Expunged messages: their bytes of the latest download are dropped."""
        for uid in uids:
            self._recent.pop(uid, None)

    async def content(self, uid: int) -> bytes:
        channel = self.channel
        mirror = channel.mirror
        if channel.live and mirror is not None:
            data = self._recent.get(uid)
            if data is None:
                data = self.user.backend.content.get(self._content_key(mirror, uid))
            if data is not None:
                return data
        mirror = await channel.mirrored()
        if uid not in mirror.meta:
            raise KeyError(uid)
        data = self.user.backend.content.get(self._content_key(mirror, uid))
        if data is not None:
            return data
        got = await self._download(self._prefetch(mirror, uid))
        if uid not in got:
            raise KeyError(uid)
        return got[uid]

    def _content_key(self, mirror: Mirror, uid: int) -> tuple[str, str, int, int]:
        return (self.user.username, self.name, mirror.uidvalidity, uid)

    def _prefetch(self, mirror: Mirror, uid: int) -> list[int]:
        """``uid`` and the uncached ones after it in the last FETCH batch (bounded)."""
        batch = [uid]
        if self.user.backend.content.budget <= 0:
            return batch
        order = self.last_fetch
        try:
            start = list(order).index(uid) + 1
        except ValueError:
            return batch
        total = mirror.meta[uid].size
        cache = self.user.backend.content
        for other in order[start:]:
            meta = mirror.meta.get(other)
            if meta is None or self._content_key(mirror, other) in cache:
                continue
            total += meta.size
            if total > _PREFETCH_BYTES or len(batch) >= _PREFETCH_COUNT:
                break
            batch.append(other)
        return batch

    async def parse(self, uids: list[int]) -> None:
        """Download and parse messages whose MessageInfo is not known yet."""
        mirror = self.channel.mirror
        assert mirror is not None
        chunk: list[int] = []
        total = 0
        for uid in uids:
            meta = mirror.meta.get(uid)
            if meta is None:
                continue
            chunk.append(uid)
            total += meta.size
            if total >= _DOWNLOAD_BYTES or len(chunk) >= _DOWNLOAD_COUNT:
                await self._download(chunk)
                chunk, total = [], 0
        if chunk:
            await self._download(chunk)

    async def _download(self, uids: list[int]) -> dict[int, bytes]:
        """``BODY.PEEK[]`` of ``uids``: parsed where unparsed, cached, and returned."""
        got: dict[int, bytes] = {}
        ids: dict[int, tuple[str | None, str | None]] = {}

        def collect(response: wire.Response) -> bool:
            found = fetch_items(response)
            if found is None:
                return False
            body = found.get("BODY[]")
            uid = found.get("UID")
            if not isinstance(body, bytes) or not isinstance(uid, int):
                return False
            got[uid] = body
            if "EMAILID" in found or "THREADID" in found:
                ids[uid] = upstream_ids(found)
            return "FLAGS" not in found

        async def send(conn: UpstreamProtocol) -> None:
            items = _ITEMS_OBJECTID if "OBJECTID" in conn.capabilities else _ITEMS
            await conn.command(b"UID FETCH", wire.uid_set(uids), items, handler=collect)

        await self.channel.run(send)
        mirror = self.channel.mirror
        if mirror is None:
            return got
        cache = self.user.backend.content
        self._recent = dict(got)
        parsed = []
        for uid, raw in got.items():
            if uid in mirror.meta and mirror.meta[uid].info is NO_INFO:
                info = parse_message(raw)
                if uid in ids:
                    emailid, threadid = ids[uid]
                    info = replace(info, emailid=emailid or info.emailid, threadid=threadid)
                mirror.set_info(uid, info)
                parsed.append((uid, info))
            cache.put(self._content_key(mirror, uid), raw)
        self.user.infos.remember(self.name, mirror.uidvalidity, parsed)
        return got
