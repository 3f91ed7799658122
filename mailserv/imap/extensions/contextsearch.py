"""CONTEXT=SEARCH (RFC 5267 section 4): SEARCH results kept up to date.

``SEARCH RETURN (UPDATE ...) criteria`` (or UID SEARCH) answers as usual, then keeps the
result as a context named by the command's tag: whenever messages enter or leave it, the
session is told ``* ESEARCH (TAG "t") [UID] ADDTO (0 set)`` / ``REMOVEFROM (0 set)``
(position 0: SEARCH results are in mailbox order), in UIDs or sequence numbers as the
command was.  ``CANCELUPDATE "t" ...`` ends contexts; so does leaving the mailbox.
``CONTEXT`` is accepted as the hint it is; PARTIAL and the other options do not change what
is followed (4.3: the whole result is).

When the updates go out: with the view's other updates (:mod:`mailserv.imap.view`), after a
command or at once while IDLE; ADDTO after the EXISTS that numbers the new messages (4.3.3),
REMOVEFROM for expunged messages just before their EXPUNGE (or VANISHED), so only where
EXPUNGE may be sent (4.3.4); changes of flags (the session's own STORE included) after the
FETCH responses that tell them.  What a change touches is looked at again, nothing more:
the messages that arrived or changed flags, searched among themselves (the backend's search,
or the engine's evaluation of them), per context.  The criteria are bound when the context
starts (sequence numbers, ``$`` and \\Recent become the UIDs they named then); a criterion
that changes with time alone (WITHIN's YOUNGER/OLDER) is followed only as messages change.

Bounds: ``ServerSettings.max_search_contexts`` contexts per session (RFC 5267 4.3.1: at
least one); one more gets ``* NO [NOUPDATE "t"]`` and the command still answers.  A tag in
use by a context cannot start another (BAD).  CONTEXT=SORT is not offered: UPDATE and
CONTEXT on SORT are refused (BAD).  All of it is the engine's, so it is offered with every
backend, the proxy included.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from mailserv.imap import esearch
from mailserv.imap.arguments import astring
from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.commands.messages import search_uids, view_of
from mailserv.imap.esearch import Found
from mailserv.imap.registry import Capability, Extension, ResultOption
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Session
from mailserv.imap.view import SelectedView
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


@dataclass(slots=True)
class UpdateContext:
    """One UPDATE search: its tag, how it numbers, its criteria (bound to UIDs) and the
    UIDs the client was told match."""

    tag: str
    uid: bool
    program: SearchProgram
    members: set[int] = field(default_factory=set)

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

    def touched(self, uids: Sequence[int]) -> None:
        if self.by_tag:
            self._pending.update(uids)

    async def refresh(self, slices: TimeSlices) -> None:
        if not self._pending or not self.by_tag:
            self._pending.clear()
            return
        view = self.view
        pending = sorted(self._pending)
        self._pending = set()
        doomed = view.expunge_pending()  # they leave with their EXPUNGE (``removing``)
        changes: dict[str, tuple[list[int], list[int]]] = {}
        for start in range(0, len(pending), _STEP):
            candidates = view.shown(pending[start : start + _STEP])
            for context in list(self.by_tag.values()):
                matched = await search_uids(self.session, view, context.program, candidates)
                if self.by_tag.get(context.tag) is not context or view.closed:
                    continue  # cancelled, or the mailbox left, meanwhile
                left, came = changes.setdefault(context.tag, ([], []))
                context.moves(candidates, frozenset(matched), doomed, left, came)
            await slices.pause()
        for tag, (left, came) in changes.items():
            followed = self.by_tag.get(tag)
            line = await followed.update(view, left, came, slices) if followed else b""
            if line and not view.closed:
                self.session.write(line)

    def removing(self, uids: Sequence[int]) -> bytes:
        self._pending.difference_update(uids)
        lines = []
        for context in self.by_tag.values():
            members = context.members
            leaving = sorted(uid for uid in set(uids) if uid in members)
            if not leaving:
                continue
            members.difference_update(leaving)
            numbers = leaving if context.uid else self.view.seqs_of(leaving)
            if numbers:
                lines.append(context.line(b"REMOVEFROM (0 %s)" % format_set(numbers).encode()))
        return b"".join(lines)

    def close(self) -> None:
        self.by_tag.clear()
        self._pending.clear()


def _contexts(session: Session) -> SearchContexts:
    view = view_of(session)
    if not isinstance(view.contexts, SearchContexts):
        view.contexts = SearchContexts(session, view)
    return view.contexts


def _search_only(session: Session, command: Command) -> None:
    """Before the search runs: not on SORT (CONTEXT=SORT is not offered)."""
    if command.name != "SEARCH":
        raise Bad(f"UPDATE and CONTEXT are SEARCH's here: {command.name} has no CONTEXT=SORT")


def _check(session: Session, command: Command) -> None:
    """And no tag in use by a context starts another (4.3)."""
    _search_only(session, command)
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
    context = UpdateContext(tag, found.uid, SearchProgram(key, program.charset), members)
    contexts.by_tag[tag] = context


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
    capabilities=(Capability(b"CONTEXT=SEARCH"),),
    commands=(CommandSpec("CANCELUPDATE", cancel_update, SELECTED),),
    result_options=(
        ResultOption(UPDATE, _start, _nothing, check=_check),
        ResultOption(CONTEXT, _hint, _nothing, check=_search_only),
    ),
    response_codes=frozenset({"NOUPDATE"}),
)
