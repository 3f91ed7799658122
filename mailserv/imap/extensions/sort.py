"""SORT and UID SORT (RFC 5256), with RFC 5957's DISPLAYFROM/DISPLAYTO (SORT=DISPLAY) and
ESORT's ``RETURN (...)`` (:mod:`mailserv.imap.extensions.esort`).

``SORT [RETURN (opts)] (criteria) charset search-key...``: the search is SEARCH's (same
parser, same backend search), the order :mod:`mailserv.imap.sorting`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from mailserv.imap import esearch
from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.commands.messages import search_program, view_of
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Reply
from mailserv.imap.session import Session
from mailserv.imap.sorting import (
    criteria_args,
    matching,
    parse_criteria,
    picked,
    sort_order,
    write_numbers,
)
from mailserv.slicing import TimeSlices
from mailserv.syntax.tokens import Command, Token


async def sort(session: Session, command: Command) -> Reply:
    return await esearch.returning(session, command, partial(_sort, session, command))


async def _sort(
    session: Session,
    command: Command,
    options: esearch.ReturnOptions | None,
    args: Sequence[Token],
) -> Reply:
    first, search_args = criteria_args(args, "SORT")
    criteria = parse_criteria(first)
    program = search_program(session, search_args)
    view = view_of(session)
    names = [name for name, _ in criteria]
    seqs, keys = await matching(session, view, program, names)
    slices = TimeSlices(session.services.turns)
    order = await slices.run(sort_order(criteria, keys))
    column = keys.uids if command.uid else seqs
    numbers = await slices.run(picked(column, order))
    await esearch.found(session, command, options, numbers, program)
    if options is None:
        await write_numbers(session, b"* SORT", numbers)
    else:
        session.write(await esearch.response(slices, command.tag, command.uid, numbers, options))
    return Reply()


EXTENSION = Extension(
    "SORT",
    capabilities=(Capability(b"SORT"), Capability(b"SORT=DISPLAY")),
    commands=(CommandSpec("SORT", sort, SELECTED, uid=True, expunge_ok=False),),
)
