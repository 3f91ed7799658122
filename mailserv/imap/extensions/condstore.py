"""CONDSTORE (RFC 7162 section 3.1): mod-sequences, conditional STORE, changes since.

Every backend keeps mod-sequences (``MessageMeta.modseq``, ``MailboxStatus.highestmodseq``,
``IMailbox.changes_since``, ``store(unchangedsince=...)``; the proxy counts its own when
its upstream has none), so CONDSTORE is offered with every backend and ``NOMODSEQ`` is
never sent.  This module declares the syntax: ENABLE CONDSTORE, SELECT/EXAMINE
(CONDSTORE), STATUS HIGHESTMODSEQ, FETCH MODSEQ and (CHANGEDSINCE n), STORE
(UNCHANGEDSINCE n), SEARCH MODSEQ ["/flags/..." priv|shared|all] n.  Each of those turns
CONDSTORE on for the session (a "CONDSTORE enabling command"); from then on the engine
(``SelectedView.shows_modseq``) adds HIGHESTMODSEQ to SELECT/EXAMINE, UID and MODSEQ to
every FETCH response about flags, ``[MODIFIED set]`` to a STORE some messages refused,
and ``(MODSEQ n)`` to a SEARCH that named MODSEQ.  A client that does none of this sees
exactly what an RFC 3501 client sees.
"""

from __future__ import annotations

from collections.abc import Callable

from mailserv.imap.arguments import astring, number64
from mailserv.imap.fetchatt import ExtensionItem, FetchAttribute, Renderer
from mailserv.imap.registry import (
    Capability,
    Extension,
    FetchModifier,
    FetchRequest,
    SearchCriterion,
    SelectParameter,
    StatusItem,
    StoreModifier,
)
from mailserv.imap.replies import Bad
from mailserv.imap.search.parse import KeyReader
from mailserv.imap.session import Session
from mailserv.imap.view import SelectedView, turn_on_modseq
from mailserv.interfaces import MessageMeta
from mailserv.search import ModSeqAtLeast, SearchKey
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Atom, String, Token

ENTRY_TYPES = frozenset({"priv", "shared", "all"})


def modseq_value(token: Token | None, what: str) -> int:
    """A mod-sequence argument (0 to 2**63 - 1); Bad names ``what`` when it is not one."""
    if not isinstance(token, Atom):
        raise Bad(f"{what} needs a mod-sequence number")
    try:
        return number64(token)
    except ParseError as exc:
        raise Bad(f"{what}: {exc.text}") from exc


# -- FETCH MODSEQ and (CHANGEDSINCE n) ---------------------------------------------------


def _parse_item(section: str | None, partial: tuple[int, int] | None) -> None:
    if section is not None or partial is not None:
        raise ParseError(None, "MODSEQ takes no section")


def _render_item(view: SelectedView, argument: object) -> Renderer:
    turn_on_modseq(view.session)
    return lambda meta, raw: b"MODSEQ (%d)" % meta.modseq


MODSEQ_ITEM = FetchAttribute("MODSEQ", _parse_item, _render_item, reads_info=False)


def _changed_since(value: Token | None) -> Callable[[MessageMeta], bool]:
    since = modseq_value(value, "CHANGEDSINCE")
    return lambda meta: meta.modseq > since


async def _with_modseq(request: FetchRequest, value: Token | None) -> None:
    """CHANGEDSINCE answers with the messages' MODSEQ (RFC 7162 3.1.4.1)."""
    turn_on_modseq(request.session)
    if not any(isinstance(i, ExtensionItem) and i.name == "MODSEQ" for i in request.items):
        request.items.append(ExtensionItem(MODSEQ_ITEM, None))


# -- STORE (UNCHANGEDSINCE n), SEARCH MODSEQ, SELECT (CONDSTORE), STATUS ------------------


def _unchanged_since(session: Session, value: Token | None) -> int:
    since = modseq_value(value, "UNCHANGEDSINCE")
    turn_on_modseq(session)
    return since


def _read_search_key(reader: KeyReader, name: str, depth: int) -> SearchKey:
    """``MODSEQ ["/flags/\\\\Seen" priv|shared|all] n``: modseq at least n."""
    text = "MODSEQ needs a mod-sequence number"
    token = reader.next_token(text)
    entry = entry_type = None
    if isinstance(token, String) or (isinstance(token, Atom) and not token.value.isdigit()):
        entry = astring(token).decode("utf-8", "replace")
        if not entry.lower().startswith("/flags/") or len(entry) == len("/flags/"):
            raise ParseError(None, f"Invalid MODSEQ entry name {entry[:40]!r}")
        kind = reader.next_token("MODSEQ entry needs a type (priv, shared or all)")
        entry_type = kind.value.lower() if isinstance(kind, Atom) else ""
        if entry_type not in ENTRY_TYPES:
            raise ParseError(None, "MODSEQ entry type must be priv, shared or all")
        token = reader.next_token(text)
    if not isinstance(token, Atom):
        raise ParseError(None, text)
    return ModSeqAtLeast(number64(token), entry, entry_type)


def _select_condstore(session: Session, value: Token | None) -> None:
    # Not turn_on_modseq: the HIGHESTMODSEQ told is the new mailbox's, by SELECT itself.
    session.enable(["CONDSTORE"])


EXTENSION = Extension(
    "CONDSTORE",
    capabilities=(Capability(b"CONDSTORE"),),
    enable=frozenset({"CONDSTORE"}),
    fetch_items=(MODSEQ_ITEM,),
    fetch_modifiers=(FetchModifier("CHANGEDSINCE", _changed_since, prepare=_with_modseq),),
    store_modifiers=(StoreModifier("UNCHANGEDSINCE", _unchanged_since),),
    search_keys=(SearchCriterion("MODSEQ", _read_search_key),),
    select_parameters=(SelectParameter("CONDSTORE", _select_condstore),),
    status_items=(
        StatusItem("HIGHESTMODSEQ", lambda counts: counts.highestmodseq, used=turn_on_modseq),
    ),
    response_codes=frozenset({"HIGHESTMODSEQ", "NOMODSEQ", "MODIFIED"}),
)
