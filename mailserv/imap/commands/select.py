"""Entering and leaving the selected state: SELECT EXAMINE CLOSE CHECK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv.events import report
from mailserv.imap import shared
from mailserv.imap.arguments import denormalized, mailbox
from mailserv.imap.commands import AUTH, SELECTED, CommandSpec
from mailserv.imap.commands.mailboxes import account_of, list_entry
from mailserv.imap.registry import parameters
from mailserv.imap.replies import Bad, Reply
from mailserv.imap.session import is_rev2, utf8_names
from mailserv.imap.view import VANISHED_NAME, SelectedView, flags_responses
from mailserv.interfaces import SEEN, IFirstUnseen, MailboxStatus
from mailserv.search import UNSEEN, backend_search
from mailserv.syntax.tokens import Command

if TYPE_CHECKING:
    from mailserv.imap.session import Session


async def select(session: Session, command: Command) -> Reply:
    return await _open(session, command, readonly=False)


async def examine(session: Session, command: Command) -> Reply:
    return await _open(session, command, readonly=True)


async def _open(session: Session, command: Command, readonly: bool) -> Reply:
    if len(command.args) not in (1, 2):
        raise Bad(f"{command.name} takes a mailbox name and optional parameters")
    name = mailbox(command.args[0], utf8=utf8_names(session))
    rev2 = is_rev2(session)
    chosen = []
    if len(command.args) == 2:
        known = session.services.registry.select_parameters
        chosen = parameters(command.args[1], known, f"{command.name} parameter")
        for parameter, value in chosen:
            parameter.apply(session, value)
    if session.selected is not None and (rev2 or VANISHED_NAME in session.enabled):
        # RFC 7162 3.2.11, RFC 9051 7.1: what follows is about the new mailbox (or none)
        session.write(b"* OK [CLOSED] Previous mailbox closed\r\n")
    session.deselect()  # RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected
    rights = await shared.require_rights(session, name, "r", command.name)
    # RFC 4314 5.2: a user who may change nothing in it has it read-only, as with EXAMINE
    readonly = readonly or not rights & shared.WRITE_RIGHTS
    box = await account_of(session).open(name)
    # Listening before the mailbox is read: a change made meanwhile is an event the view
    # holds (and reconciles with what it read), not a change nobody reports.
    view = SelectedView(session, box, readonly)
    view.rights = rights
    try:
        # The status first: every message below its UIDNEXT that still exists is in the
        # snapshot read after it, so the UIDNEXT sent (raised above the snapshot's last UID)
        # promises nothing the view does not hold.  Its HIGHESTMODSEQ is old enough too.
        counts: MailboxStatus = await box.status()
        uids = await box.uids()
        recent = [] if readonly else await box.claim_recent()
        uidnext = max(counts.uidnext, uids[-1] + 1 if uids else 1)
        view.load(uids, recent, counts.highestmodseq, uidnext)
        first_unseen = None if rev2 else await _first_unseen(view, counts)
        # RFC 9051 6.3.2: the LIST of the mailbox, with OLDNAME when the name sent was not NFC
        listed = (
            await list_entry(session, name, denormalized(command.args[0], rev2)) if rev2 else b""
        )
    except BaseException:
        view.close()
        raise
    if session.ended:
        view.close()  # the client left meanwhile: nothing would ever close it
        return Reply()
    out = [
        # keywords are announced when a FETCH first shows them
        flags_responses((), readonly, rights),
        b"* %d EXISTS\r\n" % view.exists,
    ]
    if not rev2:
        # EXAMINE claims nothing: it shows how many are recent for nobody yet.
        out.append(b"* %d RECENT\r\n" % (counts.recent if readonly else len(view.recent)))
    out.append(listed)
    if first_unseen:
        out.append(b"* OK [UNSEEN %d] First unseen message\r\n" % first_unseen)
    out += [
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % counts.uidvalidity,
        b"* OK [UIDNEXT %d] Predicted next UID\r\n" % uidnext,
    ]
    if view.shows_modseq:
        out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % counts.highestmodseq)
    if counts.mailboxid is not None and "MAILBOXID" in session.services.registry.status_items:
        out.append(b"* OK [MAILBOXID (%s)] Ok\r\n" % counts.mailboxid.encode())  # RFC 8474
    session.write(b"".join(out))
    session.select(view)
    for parameter, value in chosen:
        if parameter.opened is not None:
            await parameter.opened(session, view, counts, value)
    code = b"READ-ONLY" if readonly else b"READ-WRITE"
    return Reply(f"{command.name} completed", code)


FIRST_LOOK = 2000
"""Messages the first look for the first unseen one covers."""


async def _first_unseen(view: SelectedView, counts: MailboxStatus) -> int | None:
    """Sequence number of the first message without \\Seen (only looked for when any)."""
    if counts.unseen == 0 or not view.uids:
        return None
    keeper = IFirstUnseen(view.mailbox, None)
    if keeper is not None:
        # From what the mailbox keeps: no search over the view.  A message expunged or
        # added since the snapshot is not in the view: the search below answers then.
        uid = await keeper.first_unseen()
        if uid is None:
            return None
        seq = view.seq_of(uid)
        if seq is not None:
            return seq
    # The backend's own search reads flags alone; fetching every message would load them all.
    # The first few thousand first: when most are unseen, the answer is there, and the full
    # search (every unseen UID of a big mailbox) is not needed.
    for scope in (view.uids[:FIRST_LOOK], view.uids):
        unseen = await backend_search(view.mailbox, UNSEEN, scope)
        if unseen is None:
            break
        if unseen:
            return view.seq_of(min(unseen))
        if len(scope) == len(view.uids):
            return None
    metas = await view.mailbox.fetch(view.uids)
    for meta in metas:
        if SEEN not in meta.flags:
            return view.seq_of(meta.uid)
    return None


async def close(session: Session, command: Command) -> Reply:
    """Expunge silently (unless read-only), then leave the selected state."""
    if command.args:
        raise Bad("CLOSE takes no arguments")
    view = session.selected
    assert view is not None
    if not view.readonly and await shared.allowed_selected(session, "e"):
        report.expunged(session, view.mailbox, await view.mailbox.expunge(None, session))
    session.deselect()
    return Reply()


async def check(session: Session, command: Command) -> Reply:
    if command.args:
        raise Bad("CHECK takes no arguments")
    if session.selected is not None:
        await session.selected.refresh()
    return Reply()


SPECS = (
    CommandSpec("SELECT", select, AUTH),
    CommandSpec("EXAMINE", examine, AUTH),
    CommandSpec("CLOSE", close, SELECTED),
    CommandSpec("CHECK", check, SELECTED),
)
