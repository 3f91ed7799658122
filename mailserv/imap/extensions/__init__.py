"""The extensions the server is built with: one module each, registered in ``BUILT_IN``.

An extension module declares an ``EXTENSION`` (:class:`mailserv.imap.registry.Extension`):
its commands, STATUS items, ENABLE names, response codes and capabilities with the
condition each is offered under.  Adding one is writing its module and naming it below;
CAPABILITY lists the words in this order.  RFC 3501 itself is declared the same way
(``IMAP4REV1`` first, the sign-in commands and capabilities last).
"""

from __future__ import annotations

from mailserv.imap.commands import append, lists, login, mailboxes, messages, select, session
from mailserv.imap.extensions import (
    acl,
    appendlimit,
    binary,
    catenate,
    children,
    compress,
    condstore,
    contextsearch,
    enable,
    esearch,
    esort,
    id,
    idle,
    imap4rev2,
    list_extended,
    literal_plus,
    move,
    multiappend,
    namespace,
    notify,
    objectid,
    partial,
    preview,
    qresync,
    quota,
    sasl_ir,
    savedate,
    searchres,
    sort,
    special_use,
    status_size,
    thread,
    uidplus,
    unselect,
    utf8_accept,
    within,
)
from mailserv.imap.registry import Capability, Extension

IMAP4REV1 = Extension(
    "IMAP4rev1",
    capabilities=(Capability(b"IMAP4rev1"),),
    commands=session.SPECS
    + mailboxes.SPECS
    + lists.SPECS
    + select.SPECS
    + append.SPECS
    + messages.SPECS,
    status_items=mailboxes.STATUS_ITEMS,
    response_codes=frozenset(
        {"ALERT", "PARSE", "PERMANENTFLAGS", "READ-ONLY", "READ-WRITE", "TRYCREATE"}
        | {"UIDNEXT", "UIDVALIDITY", "UNSEEN"}
    ),
)

BUILT_IN: tuple[Extension, ...] = (
    IMAP4REV1,
    imap4rev2.EXTENSION,
    literal_plus.EXTENSION,
    sasl_ir.EXTENSION,
    id.EXTENSION,
    enable.EXTENSION,
    idle.EXTENSION,
    namespace.EXTENSION,
    unselect.EXTENSION,
    uidplus.EXTENSION,
    move.EXTENSION,
    children.EXTENSION,
    special_use.EXTENSION,
    list_extended.EXTENSION,
    status_size.EXTENSION,
    appendlimit.EXTENSION,
    condstore.EXTENSION,
    qresync.EXTENSION,
    esearch.EXTENSION,
    sort.EXTENSION,
    esort.EXTENSION,
    thread.EXTENSION,
    binary.EXTENSION,
    multiappend.EXTENSION,
    catenate.EXTENSION,
    preview.EXTENSION,
    partial.EXTENSION,
    contextsearch.EXTENSION,
    searchres.EXTENSION,
    within.EXTENSION,
    quota.EXTENSION,
    acl.EXTENSION,
    utf8_accept.EXTENSION,
    objectid.EXTENSION,
    savedate.EXTENSION,
    notify.EXTENSION,
    compress.EXTENSION,
    login.SIGN_IN,
)
"""Every extension a default server offers, in CAPABILITY order."""
