"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4): results kept up to date.

``SEARCH RETURN (UPDATE ...) criteria`` (or UID SEARCH) answers as usual, then keeps the
result as a context named by the command's tag: whenever messages enter or leave it, the
session is told ``* ESEARCH (TAG "t") [UID] ADDTO (0 set)`` / ``REMOVEFROM (0 set)``
(position 0: SEARCH results are in mailbox order), in UIDs or sequence numbers as the
command was.  ``SORT RETURN (UPDATE ...)`` keeps its members in sort order and tells each
message with its position (``ADDTO (2 17 5 40)``, pairs applied in order).
``CANCELUPDATE "t" ...`` ends contexts; so does leaving the mailbox.  ``CONTEXT`` is
accepted as the hint it is; PARTIAL and the other options do not change what is followed
(4.3: the whole result is).

When the updates go out: with the view's other updates (:mod:`mailserv.imap.view`), after a
command or at once while IDLE; ADDTO after the EXISTS that numbers the new messages (4.3.3),
REMOVEFROM for expunged messages just before their EXPUNGE (or VANISHED), so only where
EXPUNGE may be sent (4.3.4); changes of flags (the session's own STORE included) after the
FETCH responses that tell them.  What a change touches is looked at again, nothing more:
the messages that arrived or changed flags, searched among themselves (the backend's search,
or the engine's evaluation of them), per context.  The criteria are bound when the context
starts (sequence numbers, ``$`` and \\Recent become the UIDs they named then).  A context
whose criteria change with time alone (WITHIN's YOUNGER/OLDER) is also searched again, over
the whole mailbox with its moments moved to now, every ``ServerSettings.within_recheck``
seconds while it lasts; what that finds goes out with the next updates (at once while IDLE).

Bounds: ``ServerSettings.max_search_contexts`` contexts per session (RFC 5267 4.3.1: at
least one); one more gets ``* NO [NOUPDATE "t"]`` and the command still answers.  A tag in
use by a context cannot start another (BAD).  All of it is the engine's work on what the
backend answers, so it is offered with every backend, the proxy included.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from mailserv.imap import esearch
from mailserv.imap.arguments import astring
from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.commands.messages import search_uids, view_of
from mailserv.imap.esearch import Found
from mailserv.imap.extensions import within
from mailserv.imap.registry import Capability, Extension, ResultOption
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Session
from mailserv.imap.sorting import KEYS, Criterion, Key, criteria_args, parse_criteria, sorted_slices
from mailserv.imap.view import SelectedView
from mailserv.interfaces import MessageMeta
from mailserv.search import SearchProgram
from mailserv.search.binding import bind
from mailserv.slicing import TimeSlices
from mailserv.syntax.encode import string
from mailserv.syntax.sequences import format_set
from mailserv.syntax.tokens import Command

UPDATE = "UPDATE"
CONTEXT = "CONTEXT"
_STEP = 4096
"""Changed messages looked at again between two chances for the reactor."""
_log = Logger()


@dataclass(slots=True)
class UpdateContext:
    """One UPDATE search: its tag, how it numbers, its criteria (bound to UIDs) and the
    UIDs the client was told match."""

    tag: str
    uid: bool
    program: SearchProgram
    members: set[int] = field(default_factory=set)
    began: datetime | None = None
    """When OLDER/YOUNGER in ``program`` counted back from (for the first search, when the
    context was kept: the search's own moment is earlier by its run time, in whole seconds);
    None when it has neither."""

    def moved_on(self, now: datetime) -> bool:
        """Move the OLDER/YOUNGER moments to ``now``; whether there were any."""
        if self.began is None:
            return False
        key = within.moved(self.program.key, now - self.began)
        self.program, self.began = SearchProgram(key, self.program.charset), now
        return True

    def moves(
        self,
        candidates: Sequence[int],
        matched: AbstractSet[int],
        doomed: AbstractSet[int],
        left: list[int],
        came: list[int],
    ) -> None:
        """Follow what ``candidates`` (ascending) became: those that ``matched`` join, the
        others leave (unless ``doomed``: their EXPUNGE will tell); added to ``left`` and
        ``came``."""
        members = self.members
        out = [u for u in candidates if u in members and u not in matched and u not in doomed]
        new = [u for u in candidates if u in matched and u not in members]
        members.difference_update(out)
        members.update(new)
        left += out
        came += new

    async def update(
        self, view: SelectedView, left: list[int], came: list[int], slices: TimeSlices
    ) -> bytes:
        """The ``* ESEARCH`` line telling ``left`` and ``came`` (ascending UIDs), or b""."""
        data = []
        for name, uids in ((b"REMOVEFROM", left), (b"ADDTO", came)):
            if uids:
                numbers = uids if self.uid else view.seqs_of(uids)
                numbered = await esearch.ordered_set(slices, numbers, ascending=True)
                data.append(name + b" (0 " + numbered + b")")
        return self.line(b" ".join(data)) if data else b""

    def removal(self, view: SelectedView, leaving: list[int]) -> bytes:
        """REMOVEFROM for ``leaving`` (ascending UIDs, still numbered), or b""."""
        numbers = leaving if self.uid else view.seqs_of(leaving)
        return self.line(b"REMOVEFROM (0 %s)" % format_set(numbers).encode()) if numbers else b""

    def line(self, data: bytes) -> bytes:
        marker = b" UID " if self.uid else b" "
        return b"* ESEARCH (TAG " + string(self.tag.encode()) + b")" + marker + data + b"\r\n"


class SearchContexts:
    """The UPDATE contexts of one selected view (:class:`mailserv.imap.view.ResultWatch`)."""

    def __init__(self, session: Session, view: SelectedView) -> None:
        self.session = session
        self.view = view
        self.by_tag: dict[str, UpdateContext] = {}
        self._pending: set[int] = set()
        """Messages that arrived or changed since the last refresh."""
        self._due = False
        """Time passed for the contexts with OLDER/YOUNGER: search them again."""
        self._timer: IDelayedCall | None = None

    def touched(self, uids: Sequence[int]) -> None:
        if self.by_tag:
            self._pending.update(uids)

    def follow_time(self) -> None:
        """A context with OLDER/YOUNGER is kept: its recheck is due every
        ``within_recheck`` seconds from now on, while one is left."""
        if self._timer is None or not self._timer.active():
            clock = self.session.services.clock
            self._timer = clock.callLater(self.session.settings.within_recheck, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.view.closed or all(c.began is None for c in self.by_tag.values()):
            return
        self._due = True
        self.follow_time()
        if self.session.idling:
            d = defer.Deferred.fromCoroutine(self.view.flush_idle())
            d.addErrback(lambda f: _log.failure("WITHIN recheck failed", f))

    async def refresh(self, slices: TimeSlices) -> None:
        due, self._due = self._due, False
        pending = sorted(self._pending)
        self._pending = set()
        if not self.by_tag or not (pending or due):
            return
        view = self.view
        doomed = view.expunge_pending()  # they leave with their EXPUNGE (``removing``)
        changes: dict[str, tuple[list[int], list[int]]] = {}
        if due:
            now = within.now()
            timed = [c for c in self.by_tag.values() if c.moved_on(now)]
            await self._follow(timed, list(view.uids), doomed, changes, slices)
        await self._follow(list(self.by_tag.values()), pending, doomed, changes, slices)
        for tag, (left, came) in changes.items():
            followed = self.by_tag.get(tag)
            line = await followed.update(view, left, came, slices) if followed else b""
            if line and not view.closed:
                self.session.write(line)

    async def _follow(
        self,
        contexts: list[UpdateContext],
        uids: list[int],
        doomed: AbstractSet[int],
        changes: dict[str, tuple[list[int], list[int]]],
        slices: TimeSlices,
    ) -> None:
        """Search ``uids`` (ascending) again for each context; who left and came."""
        view = self.view
        for start in range(0, len(uids) if contexts else 0, _STEP):
            candidates = view.shown(uids[start : start + _STEP])
            for context in contexts:
                matched = await search_uids(self.session, view, context.program, candidates)
                if self.by_tag.get(context.tag) is not context or view.closed:
                    continue  # cancelled, or the mailbox left, meanwhile
                left, came = changes.setdefault(context.tag, ([], []))
                context.moves(candidates, frozenset(matched), doomed, left, came)
            await slices.pause()

    def removing(self, uids: Sequence[int]) -> bytes:
        self._pending.difference_update(uids)
        lines = []
        for context in self.by_tag.values():
            members = context.members
            leaving = sorted(uid for uid in set(uids) if uid in members)
            if not leaving:
                continue
            members.difference_update(leaving)
            lines.append(context.removal(self.view, leaving))
        return b"".join(lines)

    def close(self) -> None:
        self.by_tag.clear()
        self._pending.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _Descending:
    """A string that sorts the other way round (REVERSE on a text criterion)."""

    __slots__ = ("value",)

    def __init__(self, value: Key) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


Row = tuple[object, ...]
"""A message's sort keys, its UID last (mailbox order breaks ties, as SORT does)."""


def sort_row(criteria: Sequence[Criterion], meta: MessageMeta) -> Row:
    values: list[object] = []
    for name, reverse in criteria:
        value = KEYS[name](meta)
        if not reverse:
            values.append(value)
        else:
            values.append(_Descending(value) if isinstance(value, str) else -value)
    values.append(meta.uid)
    return tuple(values)


@dataclass(slots=True)
class SortContext(UpdateContext):
    """An UPDATE SORT (CONTEXT=SORT): the members in sort order, so that ADDTO and
    REMOVEFROM give positions (RFC 5267 4.3.3, 4.3.4), one message per pair.  Sort keys
    never change (flags are not one), so only membership moves a message."""

    criteria: Sequence[Criterion] = ()
    rows: list[Row] = field(default_factory=list)
    by_uid: dict[int, Row] = field(default_factory=dict)

    async def fill(self, view: SelectedView, slices: TimeSlices) -> None:
        """The rows of the members, sorted."""
        rows = []
        for start in range(0, len(members := sorted(self.members)), _STEP):
            for meta in await view.mailbox.fetch(members[start : start + _STEP]):
                rows.append(sort_row(self.criteria, meta))
            await slices.pause()
        self.rows = await slices.run(sorted_slices(rows))
        self.by_uid = {row[-1]: row for row in self.rows}  # type: ignore[misc]
        self.members.intersection_update(self.by_uid)

    async def update(
        self, view: SelectedView, left: list[int], came: list[int], slices: TimeSlices
    ) -> bytes:
        data = [self.removal(view, left, bare=True)] if left else []
        metas = await view.mailbox.fetch(came) if came else []
        rows = sorted(sort_row(self.criteria, meta) for meta in metas)
        self.members.difference_update(set(came) - {row[-1] for row in rows})  # gone meanwhile
        pairs = []
        for row in rows:
            at = bisect_left(self.rows, row)
            self.rows.insert(at, row)
            uid: int = row[-1]  # type: ignore[assignment]
            self.by_uid[uid] = row
            pairs.append(b"%d %d" % (at + 1, uid if self.uid else view.seq_of(uid) or 0))
        if pairs:
            data.append(b"ADDTO (" + b" ".join(pairs) + b")")
        return self.line(b" ".join(data)) if data else b""

    def removal(self, view: SelectedView, leaving: list[int], bare: bool = False) -> bytes:
        """One pair per message, the last position first (each pair sees the list as the
        pairs before it left it)."""
        rows = sorted((self.by_uid.pop(uid) for uid in leaving if uid in self.by_uid), reverse=True)
        pairs = []
        for row in rows:
            at = bisect_left(self.rows, row)
            del self.rows[at]
            uid: int = row[-1]  # type: ignore[assignment]
            pairs.append(b"%d %d" % (at + 1, uid if self.uid else view.seq_of(uid) or 0))
        if not pairs:
            return b""
        data = b"REMOVEFROM (" + b" ".join(pairs) + b")"
        return data if bare else self.line(data)


def _contexts(session: Session) -> SearchContexts:
    view = view_of(session)
    if not isinstance(view.contexts, SearchContexts):
        view.contexts = SearchContexts(session, view)
    return view.contexts


def _check(session: Session, command: Command) -> None:
    """Before the search runs: no tag in use by a context starts another (4.3)."""
    contexts = view_of(session).contexts
    if isinstance(contexts, SearchContexts) and command.tag in contexts.by_tag:
        raise Bad(f"Tag reuse: {command.tag[:40]} already names a search context")


async def _start(session: Session, found: Found) -> None:
    """UPDATE: keep the result as a context, or refuse with NOUPDATE past the limit."""
    tag = found.command.tag
    contexts = _contexts(session)
    if len(contexts.by_tag) >= max(1, session.settings.max_search_contexts):
        session.write(
            b"* NO [NOUPDATE " + string(tag.encode()) + b"] Too many search contexts, "
            b"CANCELUPDATE one first\r\n"
        )
        return
    view = contexts.view
    program = found.program
    key = bind(program.key, view.uids, view.recent, view.saved)
    uids = view.uids
    members = set(found.numbers) if found.uid else {uids[n - 1] for n in found.numbers}
    bound = SearchProgram(key, program.charset)
    began = within.now() if within.relative(key) else None
    if began is not None:
        contexts.follow_time()
    if found.command.name != "SORT":
        contexts.by_tag[tag] = UpdateContext(tag, found.uid, bound, members, began)
        return
    known = session.services.registry.result_options.keys()
    _, args = esearch.split_return(found.command.args, "SORT", known)
    criteria = parse_criteria(criteria_args(args, "SORT")[0])
    context = SortContext(tag, found.uid, bound, members, began, criteria=criteria)
    contexts.by_tag[tag] = context  # before the await: the tag is taken
    await context.fill(view, TimeSlices(session.services.turns))


async def _hint(session: Session, found: Found) -> None:
    """CONTEXT (4.2): a hint; nothing is cached beyond what UPDATE keeps."""


def _nothing(session: Session) -> None:
    pass


async def cancel_update(session: Session, command: Command) -> Reply:
    """``CANCELUPDATE "tag" ...`` (4.3.5): those contexts send nothing more."""
    if not command.args:
        raise Bad("CANCELUPDATE takes the tags of the searches to stop updating")
    tags = [astring(arg).decode("utf-8", "replace") for arg in command.args]
    contexts = view_of(session).contexts
    known = contexts.by_tag if isinstance(contexts, SearchContexts) else {}
    unknown = [tag for tag in tags if tag not in known]
    if unknown:
        raise No(f"No search context has the tag {unknown[0][:40]}")
    for tag in tags:
        known.pop(tag, None)
    return Reply()


EXTENSION = Extension(
    "CONTEXT=SEARCH",
    capabilities=(Capability(b"CONTEXT=SEARCH"), Capability(b"CONTEXT=SORT")),
    commands=(CommandSpec("CANCELUPDATE", cancel_update, SELECTED),),
    result_options=(
        ResultOption(UPDATE, _start, _nothing, check=_check),
        ResultOption(CONTEXT, _hint, _nothing),
    ),
    response_codes=frozenset({"NOUPDATE"}),
)
