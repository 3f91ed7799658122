"""NAMESPACE (RFC 2342): one personal namespace, no others."""

from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.syntax.tokens import Command


async def namespace(session: Session, command: Command) -> Reply:
    if command.args:
        raise Bad("NAMESPACE takes no arguments")
    session.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return Reply()


EXTENSION = Extension(
    "NAMESPACE",
    capabilities=(Capability(b"NAMESPACE"),),
    commands=(CommandSpec("NAMESPACE", namespace, AUTH),),
)
