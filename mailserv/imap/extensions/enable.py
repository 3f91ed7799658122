"""ENABLE (RFC 5161): the client turns on what an extension registered as enableable."""

from mailserv.imap.arguments import text_atom
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.imap.view import MODSEQ_NAMES, tell_highestmodseq
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Command

MAX_NAMES = 100


async def enable(session: Session, command: Command) -> Reply:
    if not command.args:
        raise Bad("ENABLE needs at least one capability")
    if len(command.args) > MAX_NAMES:
        raise Bad("Too many capabilities")
    try:
        wanted = [text_atom(arg).upper() for arg in command.args]
    except ParseError as exc:
        raise Bad(exc.text) from exc
    known = session.services.registry.enableable
    modseq_off = session.enabled.isdisjoint(MODSEQ_NAMES)
    newly = session.enable(name for name in wanted if name in known)
    session.write(("* ENABLED" + "".join(" " + n for n in newly) + "\r\n").encode())
    if modseq_off and not session.enabled.isdisjoint(MODSEQ_NAMES):
        tell_highestmodseq(session)  # RFC 7162 3.1: a CONDSTORE enabling command
    return Reply()


EXTENSION = Extension(
    "ENABLE",
    capabilities=(Capability(b"ENABLE"),),
    commands=(CommandSpec("ENABLE", enable, AUTH),),
)
