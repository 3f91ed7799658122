"""THREAD and UID THREAD (RFC 5256): THREAD=ORDEREDSUBJECT and THREAD=REFERENCES.

``THREAD algorithm charset search-key...``: the search is SEARCH's, the threading
:mod:`mailserv.imap.threads`' from the fields stored with each message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mailserv.imap.arguments import text_atom
from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.commands.messages import search_program, view_of
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.imap.sorting import Work, criteria_args, matching, sent_date
from mailserv.imap.threads import Message, ordered_subject, references
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
    seqs, metas = await matching(session, view, program)
    slices = TimeSlices(session.services.clock)
    messages = []
    for seq, meta in zip(seqs, metas, strict=True):
        info = meta.info
        number = meta.uid if command.uid else seq
        messages.append(
            Message(
                number,
                sent_date(meta),
                info.message_id,
                info.references,
                info.base_subject,
                info.reply,
            )
        )
        await slices.pause()
    threads = await slices.run(algorithm(messages))
    session.write(b"* THREAD " + threads + b"\r\n" if threads else b"* THREAD\r\n")
    return Reply()


EXTENSION = Extension(
    "THREAD",
    capabilities=tuple(Capability(b"THREAD=" + name.encode()) for name in ALGORITHMS),
    commands=(CommandSpec("THREAD", thread, SELECTED, uid=True, expunge_ok=False),),
)
