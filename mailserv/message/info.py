"""The parsed form of a message that backends store beside its bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity, located by byte offsets in the raw message.

    ``header_start``..``body_start`` is the entity's header block (including the blank line
    that ends it), ``body_start``..``end`` its body.  ``parts`` holds the children of a
    multipart; ``message`` the encapsulated message of a message/rfc822 part.
    """

    header_start: int
    body_start: int
    end: int
    content_type: str  # lower case "type/subtype"
    encoding: str  # lower case Content-Transfer-Encoding, "7bit" when absent
    charset: str | None
    parts: tuple[Part, ...] = ()
    message: Part | None = None


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """Everything FETCH and SEARCH need without reading the message again.

    ``envelope``, ``body`` and ``bodystructure`` are ready-to-send IMAP bytes (the
    parenthesised values of the ENVELOPE, BODY and BODYSTRUCTURE fetch items).  The search
    fields hold unfolded, RFC 2047-decoded header text ('' when the header is absent);
    ``from_``, ``to``, ``cc`` and ``bcc`` add, one per line after it, each address in
    normalised forms (see :func:`mailserv.message.addresses.search_field`).  ``sent`` is
    the parsed Date: header (None when missing or unparsable).

    The rest is what SORT (RFC 5256, RFC 5957) and THREAD compare, computed here once:
    ``message_id`` the normalised Message-ID ('' when missing or invalid), ``references``
    the message's references as THREAD=REFERENCES defines them (the References ids, else the
    first In-Reply-To id), ``base_subject`` the RFC 5256 base subject and ``reply`` whether
    the subject marks a reply or forward; ``sort_from``/``sort_to``/``sort_cc`` the
    addr-mailbox of the first address and ``display_from``/``display_to`` its display name
    (or address when it has none).  Strings are kept in the form SORT compares
    (:func:`mailserv.message.subject.sort_key`).  ``preview`` is the RFC 8970 preview
    text (:mod:`mailserv.message.preview`), ``emailid`` the RFC 8474 EMAILID
    (:func:`mailserv.message.ids.email_id`, a hash of the message's bytes).  Records written
    before these fields existed leave them at their defaults where they could not be derived
    (``preview``, ``emailid`` None: not computed).  ``threadid`` is a THREADID the store was
    given rather than computed (the proxy's, from an upstream with OBJECTID; '' for its
    NIL); None: :func:`mailserv.message.ids.thread_id` derives it from ``references``.  The
    proxy puts such an upstream's EMAILID in ``emailid`` the same way.
    """

    envelope: bytes
    body: bytes
    bodystructure: bytes
    root: Part
    subject: str
    from_: str
    to: str
    cc: str
    bcc: str
    sent: datetime | None
    message_id: str = ""
    references: tuple[str, ...] = ()
    base_subject: str = ""
    reply: bool = False
    sort_from: str = ""
    sort_to: str = ""
    sort_cc: str = ""
    display_from: str = ""
    display_to: str = ""
    preview: str | None = None
    emailid: str | None = None
    threadid: str | None = None

    def top(self) -> tuple[int, int, int]:
        """The whole message's header start, body start and end (``root``'s offsets): all
        that whole-message sections (``BODY[]``, ``[HEADER]``, ``[TEXT]``, ``[HEADER.FIELDS]``)
        need; a record kept as read gives them without its part tree."""
        return self.root.header_start, self.root.body_start, self.root.end


NO_INFO = MessageInfo(
    b"", b"", b"", Part(0, 0, 0, "text/plain", "7bit", None), "", "", "", "", "", None
)
"""The ``info`` of the metadata ``IFlagsMailbox.fetch_flags`` hands out: the engine asked
for none, and reads none of it."""
