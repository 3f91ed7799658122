"""Commands valid in any state: CAPABILITY, NOOP, LOGOUT, ID; and NAMESPACE, ENABLE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv import __version__
from mailserv.imap import capabilities, encode
from mailserv.imap.commands import ANY, AUTH, CommandSpec
from mailserv.imap.parser import ParseError, nstring, text_atom
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.tokens import Atom, Command, ParenList

if TYPE_CHECKING:
    from mailserv.imap.session import Session

_ID_MAX_PAIRS = 30
_ID_MAX_VALUE = 1024


def _no_args(command: Command) -> None:
    if command.args:
        raise Bad(f"{command.name} takes no arguments")


async def capability(session: Session, command: Command) -> Reply:
    _no_args(command)
    session.write(b"* CAPABILITY " + b" ".join(capabilities.for_session(session)) + b"\r\n")
    return Reply()


async def noop(session: Session, command: Command) -> Reply:
    _no_args(command)
    return Reply()


async def logout(session: Session, command: Command) -> Reply:
    """``* BYE`` and the tagged OK, nothing else: once the session is logging out, pending updates
    of the selected mailbox are not flushed (their sequence numbers would be news to a
    client that is leaving).  The server then closes without waiting for the client."""
    _no_args(command)
    session.disconnect("mailserv logging out")
    return Reply()


async def id_(session: Session, command: Command) -> Reply:
    """RFC 2971: read (and bound) the client's fields, name ourselves."""
    if len(command.args) != 1:
        raise Bad("ID takes one argument: a list or NIL")
    arg = command.args[0]
    if isinstance(arg, ParenList):
        items = arg.items
        if len(items) % 2 or len(items) > 2 * _ID_MAX_PAIRS:
            raise Bad("ID list must hold at most 30 field/value pairs")
        for item in items:
            value = nstring(item)
            if value is not None and len(value) > _ID_MAX_VALUE:
                raise Bad("ID field too long")
    elif not (isinstance(arg, Atom) and arg.value.upper() == "NIL"):
        raise Bad("ID takes a list or NIL")
    fields = (b"name", b"mailserv", b"version", __version__.encode())
    session.write(b"* ID (" + b" ".join(encode.string(f) for f in fields) + b")\r\n")
    return Reply()


async def namespace(session: Session, command: Command) -> Reply:
    _no_args(command)
    session.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return Reply()


_ENABLEABLE: frozenset[str] = frozenset()


async def enable(session: Session, command: Command) -> Reply:
    """RFC 5161; no extension of ours needs enabling yet, so ENABLED lists none."""
    if not command.args:
        raise Bad("ENABLE needs at least one capability")
    if len(command.args) > 100:
        raise Bad("Too many capabilities")
    try:
        wanted = [text_atom(arg).upper() for arg in command.args]
    except ParseError as exc:
        raise Bad(exc.text) from exc
    newly = session.enable(name for name in wanted if name in _ENABLEABLE)
    session.write(("* ENABLED" + "".join(" " + n for n in newly) + "\r\n").encode())
    return Reply()


SPECS = (
    CommandSpec("CAPABILITY", capability, ANY),
    CommandSpec("NOOP", noop, ANY),
    CommandSpec("LOGOUT", logout, ANY, exclusive=True),
    CommandSpec("ID", id_, ANY),
    CommandSpec("NAMESPACE", namespace, AUTH),
    CommandSpec("ENABLE", enable, AUTH),
)
