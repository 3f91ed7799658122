"""THREAD and UID THREAD (RFC 5256): THREAD=ORDEREDSUBJECT and THREAD=REFERENCES.

``THREAD algorithm charset search-key...``: the search is SEARCH's, the threading
:mod:`mailserv.imap.threads`' from the fields stored with each message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from mailserv.imap.arguments import text_atom
from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.commands.messages import search_program, view_of
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.imap.sorting import (
    THREAD_KEYS,
    Work,
    criteria_args,
    gathered,
    matching,
    released,
)
from mailserv.imap.threads import Message, ordered_subject, references
from mailserv.interfaces import SortKeys
from mailserv.slicing import TimeSlices
from mailserv.syntax.tokens import Command

ALGORITHMS: dict[str, Callable[[Sequence[Message]], Work[bytes]]] = {
    "ORDEREDSUBJECT": ordered_subject,
    "REFERENCES": references,
}


async def thread(session: Session, command: Command) -> Reply:
    first, search_args = criteria_args(command.args, "THREAD")
    name = text_atom(first).upper()
    algorithm = ALGORITHMS.get(name)
    if algorithm is None:
        raise Bad(f"Unknown threading algorithm {name[:40]}")
    program = search_program(session, search_args)
    view = view_of(session)
    seqs, keys = await matching(session, view, program, THREAD_KEYS)
    slices = TimeSlices(session.services.turns)
    messages = await slices.run(_messages(keys.uids if command.uid else seqs, keys))
    threads = await slices.run(algorithm(messages))
    await slices.run(released(messages))
    session.write(b"* THREAD " + threads + b"\r\n" if threads else b"* THREAD\r\n")
    return Reply()


def _messages(numbers: Sequence[int], keys: SortKeys) -> Work[list[Message]]:
    """The messages as the algorithms take them, from the columns of :data:`THREAD_KEYS`."""
    columns = [keys.columns[name] for name in THREAD_KEYS]  # in the order of Message's fields

    def made(part: Sequence[int], at: int) -> Iterator[Message]:
        rows = zip(part, *(column[at : at + len(part)] for column in columns), strict=True)
        return map(Message._make, rows)

    return (yield from gathered(numbers, made))


EXTENSION = Extension(
    "THREAD",
    capabilities=tuple(Capability(b"THREAD=" + name.encode()) for name in ALGORITHMS),
    commands=(CommandSpec("THREAD", thread, SELECTED, uid=True, expunge_ok=False),),
)
