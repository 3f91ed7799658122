"""ID (RFC 2971): read (and bound) the client's fields, name ourselves."""

from mailserv import __version__
from mailserv.imap.arguments import nstring
from mailserv.imap.commands import ANY, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.syntax import encode
from mailserv.syntax.tokens import Atom, Command, ParenList

MAX_PAIRS = 30
MAX_VALUE = 1024


async def id_(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("ID takes one argument: a list or NIL")
    arg = command.args[0]
    if isinstance(arg, ParenList):
        items = arg.items
        if len(items) % 2 or len(items) > 2 * MAX_PAIRS:
            raise Bad(f"ID list must hold at most {MAX_PAIRS} field/value pairs")
        for item in items:
            value = nstring(item)
            if value is not None and len(value) > MAX_VALUE:
                raise Bad("ID field too long")
    elif not (isinstance(arg, Atom) and arg.value.upper() == "NIL"):
        raise Bad("ID takes a list or NIL")
    fields = (b"name", b"mailserv", b"version", __version__.encode())
    session.write(b"* ID (" + b" ".join(encode.string(f) for f in fields) + b")\r\n")
    return Reply()


EXTENSION = Extension(
    "ID",
    capabilities=(Capability(b"ID"),),
    commands=(CommandSpec("ID", id_, ANY),),
)
