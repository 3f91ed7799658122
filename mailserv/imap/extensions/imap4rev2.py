"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: what changes after ``ENABLE IMAP4rev2``.

Everything RFC 9051 folds in from extensions is offered by those extensions' modules; the
differences a rev2 session sees are kept where each response is made, behind
:func:`mailserv.imap.session.is_rev2`:

- no ``* n RECENT`` (SELECT/EXAMINE, new mail) and no ``\\Recent`` in FETCH FLAGS
  (:mod:`mailserv.imap.view`, :mod:`mailserv.imap.commands.select`); STATUS and LIST's
  RETURN (STATUS) refuse RECENT (:func:`mailserv.imap.commands.mailboxes.status_items`);
  their DELETED item, the count of \\Deleted messages, is QUOTA's
  (:mod:`mailserv.imap.extensions.quota`, in every default server);
- SEARCH and UID SEARCH answer ``* ESEARCH (TAG "t") [UID] ALL set`` even without RETURN
  (:mod:`mailserv.imap.commands.messages`);
- SELECT/EXAMINE: no ``[UNSEEN n]``, a ``* LIST`` of the mailbox, and ``* OK [CLOSED]``
  when a mailbox was selected before;
- mailbox names as UTF-8 in every command and response
  (:func:`mailserv.imap.session.utf8_names`), taken in NFC: a name sent otherwise is
  answered with ``* LIST`` of the NFC name and ``("OLDNAME" (as sent))`` (CREATE, RENAME,
  DELETE, SELECT, EXAMINE: :func:`mailserv.imap.commands.mailboxes.tell_normalised`);
- 8-bit header values in ENVELOPE, BODY and BODYSTRUCTURE as UTF-8 quoted strings
  (:func:`mailserv.imap.fetch.utf8_strings`; 8-bit that is not UTF-8 read as windows-1252).

A session that never enables it is answered as RFC 3501 says.
"""

from __future__ import annotations

from mailserv.imap.registry import Capability, Extension
from mailserv.imap.session import IMAP4REV2

EXTENSION = Extension(
    "IMAP4rev2",
    capabilities=(Capability(b"IMAP4rev2"),),
    enable=frozenset({IMAP4REV2}),
    response_codes=frozenset({"CLOSED"}),
)
