"""MOVE (RFC 6851): MOVE and UID MOVE, sharing COPY's transfer."""

from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.commands.messages import transfer
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Reply
from mailserv.imap.session import Session
from mailserv.syntax.tokens import Command


async def move(session: Session, command: Command) -> Reply:
    return await transfer(session, command, move=True)


EXTENSION = Extension(
    "MOVE",
    capabilities=(Capability(b"MOVE"),),
    commands=(CommandSpec("MOVE", move, SELECTED, uid=True),),
)
