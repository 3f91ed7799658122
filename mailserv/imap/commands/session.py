"""Commands valid in any state: CAPABILITY, NOOP, LOGOUT."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv.imap import capabilities
from mailserv.imap.commands import ANY, CommandSpec
from mailserv.imap.replies import Bad, Reply
from mailserv.syntax.tokens import Command

if TYPE_CHECKING:
    from mailserv.imap.session import Session


def _no_args(command: Command) -> None:
    if command.args:
        raise Bad(f"{command.name} takes no arguments")


async def capability(session: Session, command: Command) -> Reply:
    _no_args(command)
    session.write(b"* CAPABILITY " + b" ".join(capabilities.for_session(session)) + b"\r\n")
    return Reply()


async def noop(session: Session, command: Command) -> Reply:
    _no_args(command)
    if session.selected is not None:
        await session.selected.refresh()
    return Reply()


async def logout(session: Session, command: Command) -> Reply:
    """``* BYE`` and the tagged OK, nothing else: once the session is closing, pending
    updates of the selected mailbox are not flushed (their sequence numbers would be news
    to a client that is leaving).  The server then closes without waiting for the client."""
    _no_args(command)
    session.disconnect("mailserv logging out")
    return Reply()


SPECS = (
    CommandSpec("CAPABILITY", capability, ANY),
    CommandSpec("NOOP", noop, ANY),
    CommandSpec("LOGOUT", logout, ANY, exclusive=True),
)
