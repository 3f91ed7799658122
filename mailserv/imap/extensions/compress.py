"""COMPRESS=DEFLATE (RFC 4978): the rest of the connection deflated both ways.

The tagged OK goes out uncompressed; the server's next octet and the client's octet after
the command's line are DEFLATE (:mod:`mailserv.imap.compression` does the wire).
"""

from __future__ import annotations

from mailserv.imap.arguments import text_atom
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, No, Reply
from mailserv.imap.session import Session
from mailserv.syntax.tokens import Command


async def compress(session: Session, command: Command) -> Reply:
    if len(command.args) != 1:
        raise Bad("COMPRESS takes one argument: the algorithm")
    algorithm = text_atom(command.args[0]).upper()
    if algorithm != "DEFLATE":
        raise Bad(f"Unknown compression algorithm {algorithm[:40]}")
    if session.compressed:
        raise No("Compression is already on", "COMPRESSIONACTIVE")
    session.write(b"%s OK DEFLATE active\r\n" % command.tag.encode())
    session.start_compression()
    return Reply(sent=True)


def _after_login(session: Session) -> bool:
    return session.state in AUTH


EXTENSION = Extension(
    "COMPRESS",
    capabilities=(Capability(b"COMPRESS=DEFLATE", _after_login),),
    commands=(CommandSpec("COMPRESS", compress, AUTH, exclusive=True),),
    response_codes=frozenset({"COMPRESSIONACTIVE"}),
)
