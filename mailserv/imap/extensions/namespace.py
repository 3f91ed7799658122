"""NAMESPACE (RFC 2342): one personal namespace; other users' mailboxes under
``Other Users/`` when the store keeps ACLs (:mod:`mailserv.imap.shared`)."""

from mailserv.imap import shared
from mailserv.imap.commands import AUTH, CommandSpec
from mailserv.imap.registry import Capability, Extension
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import Session
from mailserv.syntax.tokens import Command


async def namespace(session: Session, command: Command) -> Reply:
    if command.args:
        raise Bad("NAMESPACE takes no arguments")
    if shared.acl_account(session) is None:
        session.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    else:
        others = (shared.OTHER_USERS + "/").encode()
        session.write(b'* NAMESPACE (("" "/")) (("%s" "/")) NIL\r\n' % others)
    return Reply()


EXTENSION = Extension(
    "NAMESPACE",
    capabilities=(Capability(b"NAMESPACE"),),
    commands=(CommandSpec("NAMESPACE", namespace, AUTH),),
)
