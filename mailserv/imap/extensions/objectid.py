"""OBJECTID (RFC 8474): MAILBOXID, EMAILID and THREADID.

MAILBOXID comes from the store (``MailboxStatus.mailboxid``): in CREATE's OK
(:func:`mailserv.imap.commands.mailboxes.create`), SELECT/EXAMINE's untagged OK
(:mod:`mailserv.imap.commands.select`) and the STATUS item declared here, which LIST-STATUS
carries too.  OBJECTID is offered when the account provides ``IMailboxIdAccount`` (and
before login): the proxy, when its upstream lacks it, leaves it out.  EMAILID and THREADID
are computed from the message (:mod:`mailserv.message.ids`): EMAILID is kept in its
MessageInfo since it entered the store (a record older than that gets it from the message's
bytes when asked), THREADID comes from the references kept there.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from mailserv.imap.fetchatt import FetchAttribute, Renderer
from mailserv.imap.registry import Capability, Extension, SearchCriterion, StatusItem
from mailserv.imap.search.parse import KeyReader
from mailserv.interfaces import IMailboxIdAccount, MailboxStatus, MessageMeta
from mailserv.message.ids import OBJECT_ID, email_id, thread_id
from mailserv.search import ObjectIdIs, SearchKey
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Atom

if TYPE_CHECKING:
    from mailserv.imap.session import Session
    from mailserv.imap.view import SelectedView


def offered(session: Session) -> bool:
    return session.account is None or IMailboxIdAccount.providedBy(session.account)


def _mailboxid(counts: MailboxStatus) -> bytes | None:
    return None if counts.mailboxid is None else b"(%s)" % counts.mailboxid.encode()


def _read_key(reader: KeyReader, name: str, depth: int) -> SearchKey:
    text = f"{name} needs an object id (1-255 letters, digits, _ or -)"
    token = reader.next_token(text)
    if not isinstance(token, Atom) or not OBJECT_ID.fullmatch(token.value):
        raise ParseError(None, text)
    return ObjectIdIs(name == "THREADID", token.value)


def _no_section(section: str | None, partial: tuple[int, int] | None) -> Hashable:
    if section is not None or partial is not None:
        raise ParseError(None, "EMAILID and THREADID take no section")
    return None


def _email_missing(argument: Hashable, meta: MessageMeta) -> bool:
    return meta.info.emailid is None


def _render_email(view: SelectedView, argument: Hashable) -> Renderer:
    def render(meta: MessageMeta, raw: bytes) -> bytes:
        found = meta.info.emailid
        return b"EMAILID (%s)" % (found if found is not None else email_id(raw)).encode()

    return render


def _render_thread(view: SelectedView, argument: Hashable) -> Renderer:
    def render(meta: MessageMeta, raw: bytes) -> bytes:
        found = thread_id(meta.info)
        return b"THREADID NIL" if found is None else b"THREADID (%s)" % found.encode()

    return render


EXTENSION = Extension(
    "OBJECTID",
    capabilities=(Capability(b"OBJECTID", when=offered),),
    fetch_items=(
        FetchAttribute("EMAILID", _no_section, _render_email, content_for=_email_missing),
        FetchAttribute("THREADID", _no_section, _render_thread),
    ),
    search_keys=(SearchCriterion("EMAILID", _read_key), SearchCriterion("THREADID", _read_key)),
    status_items=(StatusItem("MAILBOXID", _mailboxid),),
    response_codes=frozenset({"MAILBOXID"}),
)
