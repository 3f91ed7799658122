"""Selected state, message level: FETCH STORE SEARCH COPY EXPUNGE (and their UID forms)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

from mailserv import errors, quota
from mailserv.events import report
from mailserv.imap import esearch, shared
from mailserv.imap import fetch as fetch_responses
from mailserv.imap.arguments import astring, flags, mailbox, text_atom
from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.fetchatt import FetchAttributes, parse_fetch_items, takes_options
from mailserv.imap.registry import FetchRequest, parameters
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.search.parse import BadCharset, parse_search
from mailserv.imap.session import UTF8_ACCEPT, is_rev2, utf8_names
from mailserv.imap.view import SelectedView, turn_on_modseq
from mailserv.interfaces import (
    RECENT,
    CopyResult,
    FlagChange,
    FlagChangeColumns,
    MessageMeta,
    Narrowed,
    StoreMode,
)
from mailserv.search import (
    And,
    ModSeqAtLeast,
    Not,
    SearchProgram,
    backend_narrowing,
    walk,
    without,
)
from mailserv.search.binding import bind
from mailserv.search.evaluate import SearchContext, evaluate
from mailserv.slicing import TimeSlices
from mailserv.syntax.sequences import SAVED, SequenceSet, format_set, parse_sequence_set
from mailserv.syntax.tokens import Atom, Command, ParenList, Token

if TYPE_CHECKING:
    from mailserv.imap.session import Session

SEARCH_CHUNK = 5000
"""Matches of a SEARCH numbered and formatted at once (about 2 ms)."""
_STORE_MODES = {"FLAGS": StoreMode.REPLACE, "+FLAGS": StoreMode.ADD, "-FLAGS": StoreMode.REMOVE}


def view_of(session: Session) -> SelectedView:
    assert session.selected is not None
    return session.selected


def writable(session: Session) -> SelectedView:
    view = view_of(session)
    if view.readonly:
        raise No("Mailbox is read-only (EXAMINE, or no right to change it)", "READ-ONLY")
    return view


def _sequence(session: Session, token: Token) -> SequenceSet:
    # RFC 5182's $ where its SEARCH key is offered (mailserv.imap.extensions.searchres)
    saved = SAVED in session.services.registry.search_keys
    try:
        return parse_sequence_set(text_atom(token), saved)
    except ValueError as exc:
        raise Bad(f"Invalid sequence set: {exc}") from exc


def _message_set(session: Session, command: Command, token: Token) -> list[int]:
    return view_of(session).select(_sequence(session, token), command.uid)


async def fetch(session: Session, command: Command) -> Reply:
    registry = session.services.registry
    args = _item_options(command.args, registry.fetch_items, registry.fetch_modifiers)
    if len(args) not in (2, 3):
        raise Bad("FETCH takes a sequence set, data items and optional modifiers")
    view = view_of(session)
    sequence = _sequence(session, args[0])
    uids = view.select(sequence, command.uid)
    items = parse_fetch_items(args[1], registry.fetch_items)
    request = FetchRequest(session, view, sequence, command.uid, uids, items, [], {})
    if len(args) == 3:
        modifiers = parameters(args[2], registry.fetch_modifiers, "FETCH modifier")
        request.modifiers = {modifier.name: value for modifier, value in modifiers}
        request.tests = [modifier.parse(value) for modifier, value in modifiers]
        for modifier, value in modifiers:
            if modifier.prepare is not None:
                await modifier.prepare(request, value)
    await fetch_responses.fetch(
        session, view, request.uids, request.items, command.uid, request.tests
    )
    return Reply()


def _item_options(
    args: Sequence[Token], items: FetchAttributes, modifiers: Mapping[str, object]
) -> Sequence[Token]:
    """``FETCH 1 PREVIEW (LAZY) [modifiers]``: a lone item with its options, made a list
    (``(PREVIEW (LAZY))``) so the item reader sees them together."""
    if len(args) < 3 or not takes_options(args[1], items) or not isinstance(args[2], ParenList):
        return args
    first = args[2].items[0] if args[2].items else None
    if len(args) == 3 and isinstance(first, Atom) and first.value.upper() in modifiers:
        return args
    return [args[0], ParenList((args[1], args[2])), *args[3:]]


async def store(session: Session, command: Command) -> Reply:
    if len(command.args) < 3:
        raise Bad("STORE takes a sequence set, an item and flags")
    view = writable(session)
    uids = _message_set(session, command, command.args[0])
    rest = list(command.args[1:])
    unchangedsince: int | None = None
    if isinstance(rest[0], ParenList):
        known = session.services.registry.store_modifiers
        for modifier, value in parameters(rest.pop(0), known, "STORE modifier"):
            unchangedsince = modifier.unchangedsince(session, value)
        if len(rest) < 2:
            raise Bad("STORE takes a sequence set, modifiers, an item and flags")
    item = text_atom(rest[0]).upper()
    silent = item.endswith(".SILENT")
    mode = _STORE_MODES.get(item.removesuffix(".SILENT"))
    if mode is None:
        raise Bad(f"Unknown STORE item {item[:40]}")
    wanted: frozenset[str] = frozenset().union(*(flags(arg) for arg in rest[1:]))
    if RECENT in wanted:
        raise Bad("\\Recent cannot be stored")
    if not uids:
        return Reply()
    await shared.require_selected(session, shared.store_rights(mode, wanted), "STORE")
    result = await view.mailbox.store(uids, mode, wanted, session, unchangedsince=unchangedsince)
    report.flags_changed(session, view.mailbox, result.changed)
    slices = TimeSlices(session.services.turns)
    changes = await view.own_changes(result.changed, slices, silent)
    failed = set(result.failed)
    if not silent:
        shown = [uid for uid in uids if uid not in failed] if failed else uids
        await _report_flags(
            session, view, shown, changes, command.uid, slices, unchanged=result.unchanged
        )
    elif view.shows_modseq and changes:
        # RFC 7162 3.1.3: the new mod-sequences even after .SILENT
        await _report_flags(session, view, changes.uids, changes, command.uid, slices, False)
    if not failed:
        return Reply()
    numbers = sorted(failed) if command.uid else view.seqs_of(sorted(failed))
    return Reply("Conditional STORE failed", b"MODIFIED " + format_set(numbers).encode())


_REPORT_STEP = 2048
"""STORE's FETCH responses formatted and written between two pauses for other sessions."""
_SCAN_STEP = 2048
"""Messages the engine's evaluation of a whole query fetches at a time: what one batch
made is freed before the next is fetched (the 100k parsed messages of one fetch were freed
in one reactor turn, 90-117 ms, and the collector's passes walked them until then)."""
_FIRST_STEP = 1000
"""Messages the engine's evaluation looks at first when only the first matches are read
(``search_uids``'s ``enough``); each step after doubles."""


async def _report_flags(
    session: Session,
    view: SelectedView,
    uids: Sequence[int],
    changes: FlagChangeColumns,
    uid_mode: bool,
    slices: TimeSlices,
    with_flags: bool = True,
    unchanged: Sequence[FlagChange] | None = None,
) -> None:
    """The flags of ``uids`` (ascending) after the STORE: from ``changes`` (a subset of
    ``uids``, as the backend made them), and for the messages left as they were, from
    ``unchanged`` when the backend read them with the STORE, else read."""
    show_uid = uid_mode or view.shows_modseq  # RFC 7162 3.1: UID and MODSEQ with CONDSTORE
    at = 0
    for start in range(0, len(uids), _REPORT_STEP):
        part = uids[start : start + _REPORT_STEP]
        stop = bisect_right(changes.uids, part[-1], at)
        mine = changes[at:stop]
        at = stop
        if len(mine) == len(part):  # every message of the part changed
            lines = view.flag_fetches(mine, show_uid, with_flags)
        else:
            both = await _with_unchanged(view, part, mine, unchanged)
            lines = view.flag_fetches(both, show_uid, with_flags, note=True)
        view.write_fetches(lines)
        await session.drain()
        await slices.pause()


async def _with_unchanged(
    view: SelectedView,
    uids: Sequence[int],
    changes: FlagChangeColumns,
    unchanged: Sequence[FlagChange] | None = None,
) -> FlagChangeColumns:
    """``changes`` and the flags of the other messages of ``uids`` (``unchanged``, else
    read), by UID."""
    changed = set(changes.uids)
    kept: dict[int, FlagChange | MessageMeta]
    if unchanged is not None:
        kept = {change.uid: change for change in unchanged}
    else:
        read = fetch_responses.metas_reader(view.mailbox, info=False)
        metas = await read([uid for uid in uids if uid not in changed])
        kept = {meta.uid: meta for meta in metas}
    shown: list[int] = []
    flags: list[frozenset[str]] = []
    modseqs: list[int] = []
    at = 0
    for uid in uids:
        if uid in changed:
            flags.append(changes.flags[at])
            modseqs.append(changes.modseqs[at])
            at += 1
        elif uid in kept:
            flags.append(kept[uid].flags)
            modseqs.append(kept[uid].modseq)
        else:
            continue  # expunged meanwhile
        shown.append(uid)
    return FlagChangeColumns(shown, flags, modseqs)


def search_program(session: Session, args: Sequence[Token]) -> SearchProgram:
    """SEARCH's ``[CHARSET name] key...`` (also read by SORT and THREAD)."""
    named = args[1] if len(args) > 1 and _is_word(args[0], "CHARSET") else None
    if UTF8_ACCEPT in session.enabled and named is not None and astring(named).upper() != b"UTF-8":
        # RFC 6855 3 (erratum 4029): SORT's and THREAD's charset can only be UTF-8
        raise Bad("After ENABLE UTF8=ACCEPT the charset can only be UTF-8")
    try:
        return parse_search(
            args, session.settings.max_search_keys, extra=session.services.registry.search_keys
        )
    except BadCharset as exc:
        raise No(f"Unsupported charset {exc.charset[:40]}", exc.response_code) from exc


async def search_uids(
    session: Session,
    view: SelectedView,
    program: SearchProgram,
    among: Sequence[int] | None = None,
    enough: int | None = None,
) -> list[int]:
    """The UIDs of the view's mailbox that match, ascending (the backend's search if any);
    ``among``: only those UIDs (ascending) are looked at, not the whole view.  ``enough``:
    the caller reads only the first ``enough`` matches, so the engine's own evaluation may
    stop once it has them (it goes through the mailbox in growing steps, lowest UIDs first;
    a backend's search answers whole)."""
    box = view.mailbox
    key = bind(program.key, view.uids, view.recent, view.saved)
    bound = SearchProgram(key, program.charset)
    uids = view.uids if among is None else among
    found = await backend_narrowing(box, bound, uids)
    if found is None:
        found = await _complement(session, view, bound, uids)
    if isinstance(found, Narrowed):  # the matches are among these: evaluate them alone
        return await _evaluated(session, view, bound, found.uids, enough)
    if found is None:
        return await _evaluated(session, view, bound, uids, enough)
    return sorted(found)


async def _evaluated(
    session: Session,
    view: SelectedView,
    program: SearchProgram,
    uids: Sequence[int],
    enough: int | None,
) -> list[int]:
    """The engine's own evaluation of the bound ``program`` on ``uids`` (see
    :func:`search_uids`)."""
    box = view.mailbox
    slices = TimeSlices(session.services.turns)
    context = SearchContext(view.uids, view.recent, box.content, slices.pause)
    found: list[int] = []
    start = 0
    step = _SCAN_STEP if enough is None else max(enough, _FIRST_STEP)
    while start < len(uids) and (enough is None or len(found) < enough):
        found += await evaluate(program, await box.fetch(uids[start : start + step]), context)
        start += step
        if enough is not None:
            step *= 2
    return sorted(found)


async def _complement(
    session: Session, view: SelectedView, program: SearchProgram, uids: Sequence[int]
) -> list[int] | None:
    """NOT of a key the backend answers or narrows down, where it declined the NOT (the
    complement of a superset is no answer: NOT HEADER of a field its index keeps no column
    of): ``uids`` less the key's matches, evaluated here among its candidates if need be.
    None when the query is no NOT, or the backend declines the key too."""
    key = program.key
    while isinstance(key, And) and len(key.keys) == 1:
        key = key.keys[0]
    if not isinstance(key, Not):
        return None
    inner = SearchProgram(key.key, program.charset)
    found = await backend_narrowing(view.mailbox, inner, uids)
    if found is None:
        return None
    if isinstance(found, Narrowed):
        found = await _evaluated(session, view, inner, found.uids, None)
    return without(uids, found)


async def search(session: Session, command: Command) -> Reply:
    """SEARCH, and with ``RETURN (...)`` first, ESEARCH's answer (RFC 4731)."""
    return await esearch.returning(session, command, partial(_search, session, command))


async def _search(
    session: Session,
    command: Command,
    options: esearch.ReturnOptions | None,
    args: Sequence[Token],
) -> Reply:
    view = view_of(session)
    if UTF8_ACCEPT in session.enabled and args and _is_word(args[0], "CHARSET"):
        raise Bad("No CHARSET after ENABLE UTF8=ACCEPT: search strings are UTF-8")  # RFC 6855 3
    if options is None and is_rev2(session):
        options = esearch.ReturnOptions({"ALL"})  # RFC 9051 6.4.4: ESEARCH answers every SEARCH
    program = search_program(session, args)
    wants_modseq = any(isinstance(node, ModSeqAtLeast) for node in walk(program.key))
    enough = None if wants_modseq else esearch.first_needed(options)
    found = await search_uids(session, view, program, enough=enough)
    # Tens of thousands of matches take the reactor tens of ms to number and format: in
    # slices (the view does not change while this session's command runs).
    slices = TimeSlices(session.services.turns)
    shown: list[int] = []  # only messages this session has been told of
    numbers: list[int] = []
    for start in range(0, len(found), SEARCH_CHUNK):
        part = found[start : start + SEARCH_CHUNK]
        if command.uid or wants_modseq:
            shown += view.shown(part)
        if not command.uid:
            numbers += view.seqs_of(part)
        await slices.pause()
    if command.uid:
        numbers = shown
    modseq = None
    if wants_modseq:
        turn_on_modseq(session)  # RFC 7162 3.1.5: and the highest modseq of those found
        highest = 0
        for start in range(0, len(shown), SEARCH_CHUNK):
            metas = await view.mailbox.fetch(shown[start : start + SEARCH_CHUNK])
            highest = max(highest, max((m.modseq for m in metas), default=0))
            await slices.pause()
        modseq = highest or None
    await esearch.found(session, command, options, numbers, program)
    if options is not None:
        session.write(
            await esearch.response(
                slices, command.tag, command.uid, numbers, options, modseq, ascending=True
            )
        )
        return Reply()
    line = [b"* SEARCH"]
    if numbers:
        line.append(await esearch.number_list(slices, numbers, session.services.counting))
    if modseq is not None:
        line.append(b"(MODSEQ %d)" % modseq)
    session.write(b" ".join(line) + b"\r\n")
    return Reply()


def _is_word(token: Token, word: str) -> bool:
    return isinstance(token, Atom) and token.value.upper() == word


async def transfer(session: Session, command: Command, move: bool) -> Reply:
    """COPY, or MOVE (:mod:`mailserv.imap.extensions.move`)."""
    if len(command.args) != 2:
        raise Bad(f"{command.name} takes a sequence set and a mailbox")
    view = writable(session) if move else view_of(session)
    uids = _message_set(session, command, command.args[0])
    destination = mailbox(command.args[1], utf8=utf8_names(session))
    if not uids:
        return Reply(f"{command.name} completed, nothing to do")
    operation = view.mailbox.move if move else view.mailbox.copy
    try:
        # charged to the target's owner; MOVE within one account leaves the usage as it was
        payer = await quota.payer_for(session, destination)
        assert payer is not None  # signed in: a mailbox is selected
        adds = await quota.copied(session, payer, view.mailbox, uids, move)
        async with quota.charge(session, adds, payer):
            routed = await shared.transfer(session, view.mailbox, uids, destination, move)
            if isinstance(routed, CopyResult):
                result = routed
            else:
                result = await operation(uids, routed, session)
    except errors.MailboxNotFound as exc:
        raise No("No such mailbox", "TRYCREATE") from exc
    if not result.pairs:
        return Reply(f"{command.name} completed")
    slices = TimeSlices(session.services.turns)
    sources, targets = await _copied_sets(result.pairs, slices)
    code = b"COPYUID %d %s %s" % (result.uidvalidity, sources, targets)
    await report.transferred(session, view.mailbox, destination, result.pairs, move)
    if not move:
        return Reply("COPY completed", code)
    session.write(b"* OK [" + code + b"] Moved\r\n")
    await view.tell_removed([src for src, _ in result.pairs], slices)
    return Reply("MOVE completed")


COPYUID_PIECE = 5000
"""(Source, target) UID pairs of COPYUID formatted between two pauses (100k at once: 20 ms)."""


async def _copied_sets(pairs: Sequence[tuple[int, int]], slices: TimeSlices) -> tuple[bytes, bytes]:
    """COPYUID's source and target sets (RFC 4315), ``COPYUID_PIECE`` pairs at a time."""
    sources = targets = ""
    last = (0, 0)
    async for part in slices.batches(pairs, COPYUID_PIECE):
        sources = _glued(sources, format_set(src for src, _ in part), last[0], part[0][0])
        targets = _glued(targets, format_set(dst for _, dst in part), last[1], part[0][1])
        last = part[-1]
    return sources.encode(), targets.encode()


def _glued(left: str, right: str, last: int, first: int) -> str:
    """Two sets made by ``format_set``, one after the other, as ``format_set`` makes them
    together: the run ending ``left`` (at ``last``) and the one beginning ``right`` (at
    ``first``) are one when they touch."""
    if not left:
        return right
    if first != last + 1:
        return f"{left},{right}"
    head, _, run = left.rpartition(",")
    begun = run.partition(":")[0]
    joined, _, tail = right.partition(",")
    ended = joined.rpartition(":")[2]
    return ",".join(part for part in (head, f"{begun}:{ended}", tail) if part)


async def copy(session: Session, command: Command) -> Reply:
    return await transfer(session, command, move=False)


async def expunge(session: Session, command: Command) -> Reply:
    view = writable(session)
    restrict = None
    if command.uid:
        if len(command.args) != 1:
            raise Bad("UID EXPUNGE takes a UID set")
        restrict = _message_set(session, command, command.args[0])
        if not restrict:
            return Reply()
    elif command.args:
        raise Bad("EXPUNGE takes no arguments")
    await shared.require_selected(session, "e", "EXPUNGE")
    gone = await view.mailbox.expunge(restrict, session)
    report.expunged(session, view.mailbox, gone)
    await view.tell_removed(gone, TimeSlices(session.services.turns))
    if view.reports_vanished:  # RFC 7162 3.2.7: the HIGHESTMODSEQ after the expunge
        return Reply(code=b"HIGHESTMODSEQ %d" % (await view.mailbox.status()).highestmodseq)
    return Reply()


SPECS = (
    CommandSpec("FETCH", fetch, SELECTED, uid=True, expunge_ok=False),
    CommandSpec("STORE", store, SELECTED, uid=True, expunge_ok=False),
    CommandSpec("SEARCH", search, SELECTED, uid=True, expunge_ok=False),
    CommandSpec("COPY", copy, SELECTED, uid=True),
    CommandSpec("EXPUNGE", expunge, SELECTED, uid=True),
)
