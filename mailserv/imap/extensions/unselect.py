"""UNSELECT (RFC 3691): leave the selected state without expunging."""

from mailserv.imap.commands import SELECTED, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.syntax.tokens import Command


async def unselect(session: Session, command: Command) -> Reply:
    if command.args:
        raise Bad("UNSELECT takes no arguments")
    session.deselect()
    return Reply()


EXTENSION = Extension(
    "UNSELECT",
    capabilities=(Capability(b"UNSELECT"),),
    commands=(CommandSpec("UNSELECT", unselect, SELECTED),),
)
