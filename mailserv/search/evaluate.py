"""Answer a ``SearchProgram`` over a session's messages: the engine's fallback evaluator.

The tree is compiled once per SEARCH into closures.  Keys that need only ``MessageMeta``
(flags, dates, sizes, sets, the decoded header fields kept in ``MessageInfo``) run as plain
functions in one synchronous pass; only BODY, TEXT and HEADER of other fields load the
message, at most once per message, after the cheap terms of an AND have had their say.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date

from mailserv.interfaces import RECENT, MessageMeta
from mailserv.message import text
from mailserv.message.addresses import SEPARATOR, raw_search_line
from mailserv.message.ids import email_id, thread_id
from mailserv.search import (
    All,
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    InSet,
    InternalSince,
    ModSeqAtLeast,
    Not,
    ObjectIdIs,
    Or,
    SavedDateCompare,
    SearchKey,
    SearchProgram,
    SizeCompare,
    StringField,
    UidIn,
    walk,
)
from mailserv.search.binding import sequence_uids
from mailserv.syntax.flags import SYSTEM_FLAGS
from mailserv.syntax.sequences import uids_in


@dataclass(frozen=True, slots=True)
class SearchContext:
    """What evaluation needs from the session besides the messages themselves.

    ``uids``: the session's UIDs in sequence order (message n is ``uids[n - 1]``);
    ``recent``: the UIDs \\Recent to this session; ``content``: loads a raw message, raising
    KeyError when it was expunged meanwhile (it then never matches); ``pause``: awaited
    between pieces of the work (``TimeSlices.pause``: lets the reactor serve others).
    """

    uids: Sequence[int]
    recent: AbstractSet[int]
    content: Callable[[int], Awaitable[bytes]]
    pause: Callable[[], Awaitable[None]] | None = None


Check = Callable[[MessageMeta], bool]
AsyncCheck = Callable[[MessageMeta, "_Message"], Awaitable[bool]]

_HEADER_ATTRS = {
    StringField.BCC: "bcc",
    StringField.CC: "cc",
    StringField.FROM: "from_",
    StringField.SUBJECT: "subject",
    StringField.TO: "to",
}
_PRECOMPUTED = {field.value.lower(): attr for field, attr in _HEADER_ATTRS.items()}
_ADDRESS_ATTRS = frozenset({"from_", "to", "cc", "bcc"})
"""Fields holding lines: the header text, then its addresses normalised (FROM/TO/CC/BCC
search them all; HEADER only the first)."""
_COMPARE: dict[DateOp, Callable[[date, date], bool]] = {
    DateOp.BEFORE: operator.lt,
    DateOp.ON: operator.eq,
    DateOp.SINCE: operator.ge,
}
# Relative costs, so an AND tries cheap terms first and loads content last.
_COST_META = 1
_COST_DATE = 2
_COST_FIELD = 4
_COST_HEADER = 100
_COST_BODY = 1000


_STEP = 512
"""Messages checked between two ``pause()`` calls when only metadata is needed."""


async def _no_pause() -> None:
    return None


class _Gone(Exception):
    """The message vanished while we searched it."""


def needs_content(key: SearchKey) -> bool:
    """True when some message must be loaded to answer ``key`` (BODY, TEXT, most HEADER)."""
    return any(isinstance(node, Contains) and _content_key(node) for node in walk(key))


def _content_key(node: Contains) -> bool:
    if node.field in (StringField.BODY, StringField.TEXT):
        return node.value != ""
    if node.field is StringField.HEADER:
        return node.value == "" or node.header.lower() not in _PRECOMPUTED
    return False


async def evaluate(
    program: SearchProgram, metas: Sequence[MessageMeta], ctx: SearchContext
) -> list[int]:
    """UIDs of the ``metas`` that match, ascending.

    Errors of ``ctx.content`` other than KeyError (e.g. BackendUnavailable) propagate.
    """
    plan = _compile(program.key, ctx)
    pause = ctx.pause or _no_pause
    matched: list[int] = []
    if plan.check is not None:
        check = plan.check
        for start in range(0, len(metas), _STEP):
            matched += [meta.uid for meta in metas[start : start + _STEP] if check(meta)]
            await pause()
    else:
        acheck = plan.acheck
        assert acheck is not None
        for meta in metas:
            try:
                if await acheck(meta, _Message(ctx, meta)):
                    matched.append(meta.uid)
            except _Gone:
                continue
            await pause()
    matched.sort()
    return matched


@dataclass(frozen=True, slots=True)
class _Plan:
    """A compiled key: ``check`` when it needs only metadata, else ``acheck``."""

    cost: int
    check: Check | None = None
    acheck: AsyncCheck | None = None
    always: bool = False


def _true(meta: MessageMeta) -> bool:
    return True


def _never(meta: MessageMeta) -> bool:
    return False


_ALWAYS = _Plan(0, _true, always=True)


def _compile(key: SearchKey, ctx: SearchContext) -> _Plan:
    if isinstance(key, All):
        return _ALWAYS
    if isinstance(key, HasFlag):
        return _Plan(_COST_META, _flag(key.flag, key.present, ctx.recent))
    if isinstance(key, Contains):
        return _contains(key)
    if isinstance(key, DateCompare):
        return _Plan(_COST_DATE, _date(key))
    if isinstance(key, SizeCompare):
        return _Plan(_COST_META, _size(key))
    if isinstance(key, InternalSince):
        moment = key.moment
        return _Plan(_COST_META, lambda meta: meta.internaldate >= moment)
    if isinstance(key, InSet):
        members = _members(key, ctx.uids)
        return _Plan(_COST_META, lambda meta: meta.uid in members)
    if isinstance(key, UidIn):
        chosen = key.uids
        return _Plan(_COST_META, lambda meta: meta.uid in chosen)
    if isinstance(key, ModSeqAtLeast):
        least = key.modseq
        return _Plan(_COST_META, lambda meta: meta.modseq >= least)
    if isinstance(key, ObjectIdIs):
        return _object_id(key)
    if isinstance(key, SavedDateCompare):
        return _Plan(_COST_DATE, _saved(key))
    if isinstance(key, Not):
        return _not(_compile(key.key, ctx))
    if isinstance(key, Or):
        return _or(_compile(key.left, ctx), _compile(key.right, ctx))
    if isinstance(key, And):
        return _and([_compile(k, ctx) for k in key.keys])
    raise TypeError(f"The engine cannot evaluate {type(key).__name__}")


def _flag(flag: str, present: bool, recent: AbstractSet[int]) -> Check:
    folded = flag.casefold()
    if folded == RECENT.casefold():
        if present:
            return lambda meta: meta.uid in recent
        return lambda meta: meta.uid not in recent

    canonical = SYSTEM_FLAGS.get(folded, flag)
    folded_sets: dict[frozenset[str], bool] = {}  # few distinct flag sets in a mailbox

    def has(meta: MessageMeta) -> bool:
        flags = meta.flags
        if canonical in flags:
            return True
        if not flags:
            return False
        known = folded_sets.get(flags)
        if known is None:
            known = folded_sets[flags] = any(f.casefold() == folded for f in flags)
        return known

    if present:
        return has
    return lambda meta: not has(meta)


def _date(key: DateCompare) -> Check:
    compare = _COMPARE[key.op]
    target = key.date
    if key.field is DateField.INTERNAL:
        return lambda meta: compare(meta.internaldate.date(), target)

    def sent(meta: MessageMeta) -> bool:
        when = meta.info.sent
        return when is not None and compare(when.date(), target)

    return sent


def _saved(key: SavedDateCompare) -> Check:
    if key.op is None or key.date is None:
        return lambda meta: meta.savedate is not None
    compare = _COMPARE[key.op]
    target = key.date
    return lambda meta: compare((meta.savedate or meta.internaldate).date(), target)


def _object_id(key: ObjectIdIs) -> _Plan:
    wanted = key.value
    if key.thread:
        return _Plan(_COST_FIELD, lambda meta: thread_id(meta.info) == wanted)

    async def emailid(meta: MessageMeta, message: _Message) -> bool:
        # Records stored before EMAILIDs were kept have none: the message's bytes tell.
        found = meta.info.emailid
        return (found if found is not None else email_id(await message.raw())) == wanted

    return _Plan(_COST_FIELD, acheck=emailid)


def _size(key: SizeCompare) -> Check:
    limit = key.size
    if key.larger:
        return lambda meta: meta.size > limit
    return lambda meta: meta.size < limit


def _members(key: InSet, uids: Sequence[int]) -> AbstractSet[int]:
    if not key.uid:
        return sequence_uids(key.set, uids)
    if not uids:
        return frozenset()
    return frozenset(uids_in(key.set.resolve(uids[-1]), uids))


def field_needle(key: Contains) -> tuple[str, str] | None:
    """How the scan answers FROM, TO, CC, BCC and SUBJECT, for a backend that keeps those
    texts case-folded: ``(attr, needle)``, a message matching when ``needle`` is in its
    ``MessageInfo.<attr>`` case-folded.  None for any other key (HEADER included) and for an
    address needle holding the line separator (the scan matches nothing then)."""
    attr = _HEADER_ATTRS.get(key.field)
    if attr is None:
        return None
    needle = key.value.casefold()
    if attr in _ADDRESS_ATTRS and SEPARATOR in needle:
        return None
    return attr, needle


def _contains(key: Contains) -> _Plan:
    needle = key.value.casefold()
    attr = _HEADER_ATTRS.get(key.field)
    if attr is None and key.field is StringField.HEADER and needle:
        attr = _PRECOMPUTED.get(key.header.lower())
    if attr is not None:
        if not needle:
            return _ALWAYS
        get = operator.attrgetter("info." + attr)
        if attr in _ADDRESS_ATTRS:
            if SEPARATOR in needle:  # no line of the text holds one: nothing matches
                return _Plan(_COST_META, _never)
            if key.field is StringField.HEADER:  # the header's own text, not the forms
                return _Plan(
                    _COST_FIELD, lambda meta: needle in raw_search_line(get(meta)).casefold()
                )
        return _Plan(_COST_FIELD, lambda meta: needle in get(meta).casefold())
    if key.field is StringField.HEADER:
        name = key.header

        async def header(meta: MessageMeta, message: _Message) -> bool:
            values = await message.header_values(name)
            return any(needle in value for value in values) if needle else bool(values)

        return _Plan(_COST_HEADER, acheck=header)
    if not needle:
        return _ALWAYS
    if key.field is StringField.BODY:

        async def body(meta: MessageMeta, message: _Message) -> bool:
            return needle in await message.body()

        return _Plan(_COST_BODY, acheck=body)

    async def whole(meta: MessageMeta, message: _Message) -> bool:
        return needle in await message.header() or needle in await message.body()

    return _Plan(_COST_BODY + _COST_HEADER, acheck=whole)


async def _run(plan: _Plan, meta: MessageMeta, message: _Message) -> bool:
    if plan.check is not None:
        return plan.check(meta)
    assert plan.acheck is not None
    return await plan.acheck(meta, message)


def _not(plan: _Plan) -> _Plan:
    check = plan.check
    if check is not None:
        return _Plan(plan.cost, lambda meta: not check(meta))
    acheck = plan.acheck
    assert acheck is not None

    async def negate(meta: MessageMeta, message: _Message) -> bool:
        return not await acheck(meta, message)

    return _Plan(plan.cost, acheck=negate)


def _or(left: _Plan, right: _Plan) -> _Plan:
    if left.always or right.always:
        return _ALWAYS
    first, second = sorted((left, right), key=lambda plan: plan.cost)
    cost = first.cost + second.cost
    a, b = first.check, second.check
    if a is not None and b is not None:
        return _Plan(cost, lambda meta: a(meta) or b(meta))

    async def either(meta: MessageMeta, message: _Message) -> bool:
        return await _run(first, meta, message) or await _run(second, meta, message)

    return _Plan(cost, acheck=either)


def _and(plans: list[_Plan]) -> _Plan:
    plans = sorted((plan for plan in plans if not plan.always), key=lambda plan: plan.cost)
    if not plans:
        return _ALWAYS
    if len(plans) == 1:
        return plans[0]
    cost = sum(plan.cost for plan in plans)
    checks = tuple(plan.check for plan in plans if plan.check is not None)
    achecks = tuple(plan.acheck for plan in plans if plan.acheck is not None)
    if not achecks:
        if len(checks) == 2:
            a, b = checks
            return _Plan(cost, lambda meta: a(meta) and b(meta))
        return _Plan(cost, lambda meta: all(check(meta) for check in checks))

    async def both(meta: MessageMeta, message: _Message) -> bool:
        for check in checks:
            if not check(meta):
                return False
        for acheck in achecks:
            if not await acheck(meta, message):
                return False
        return True

    return _Plan(cost, acheck=both)


class _Message:
    """One message's content and its decoded, case-folded texts, each made at most once."""

    __slots__ = ("_body", "_ctx", "_header", "_meta", "_raw", "_values")

    def __init__(self, ctx: SearchContext, meta: MessageMeta) -> None:
        self._ctx = ctx
        self._meta = meta
        self._raw: bytes | None = None
        self._header: str | None = None
        self._body: str | None = None
        self._values: dict[str, list[str]] = {}

    async def raw(self) -> bytes:
        if self._raw is None:
            try:
                self._raw = await self._ctx.content(self._meta.uid)
            except KeyError:
                raise _Gone() from None
        return self._raw

    async def header(self) -> str:
        if self._header is None:
            self._header = text.folded_header(await self.raw(), self._meta.info)
        return self._header

    async def body(self) -> str:
        if self._body is None:
            self._body = text.folded_body(await self.raw(), self._meta.info)
        return self._body

    async def header_values(self, name: str) -> list[str]:
        key = name.lower()
        values = self._values.get(key)
        if values is None:
            values = text.folded_values(await self.raw(), self._meta.info, name)
            self._values[key] = values
        return values
