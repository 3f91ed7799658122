"""IDLE (RFC 2177): updates go out as they happen until the client sends DONE."""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall

from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.syntax.tokens import Command


async def idle(session: Session, command: Command) -> Reply:
    if command.args:
        raise Bad("IDLE takes no arguments")
    if session.selected is not None:
        await session.selected.flush(expunges=True)
    session.write(b"+ idling\r\n")
    session.set_idling(True)
    keepalive = _schedule_keepalive(session)
    try:
        while True:
            line = (await session.read_line()).strip()
            if line.upper() == b"DONE":
                break
            session.write(b"* BAD Expected DONE to end IDLE\r\n")
    finally:
        session.set_idling(False)
        if keepalive[0].active():
            keepalive[0].cancel()
    return Reply("IDLE terminated")


def _schedule_keepalive(session: Session) -> list[IDelayedCall]:
    """A ``* OK Still here`` now and then, so NAT boxes keep the idle flow open."""
    clock = session.services.clock
    interval = session.settings.idle_keepalive
    holder: list[IDelayedCall] = []

    def ping() -> None:
        session.write(b"* OK Still here\r\n")
        holder[0] = clock.callLater(interval, ping)

    holder.append(clock.callLater(interval, ping))
    return holder


EXTENSION = Extension(
    "IDLE",
    capabilities=(Capability(b"IDLE"),),
    commands=(CommandSpec("IDLE", idle, AUTH, exclusive=True),),
)
