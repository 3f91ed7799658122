"""The backend contract of ``mailserv.interfaces``, checked against every backend.

To run the suite against another backend, add an entry to ``BACKENDS``.  Every call goes
through ``resolve()`` so that Deferred- and coroutine-returning backends fit, as long as
their results are ready without a running reactor; a backend that really waits on I/O
will need a reactor-driven ``resolve`` (e.g. a pytest-twisted variant) later.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pgcluster
import pytest
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailserv.backends import maildir, memory, sql
from mailserv.errors import (
    BackendError,
    BackendOptionError,
    InvalidMailboxName,
    MailboxExists,
    MailboxHasChildren,
    MailboxNotFound,
    MailboxNotSelectable,
)
from mailserv.interfaces import (
    RECENT,
    FlagChange,
    IAccount,
    IBackend,
    IBackendFactory,
    IMailbox,
    IMailboxListener,
    MessageMeta,
    StoreMode,
)
from mailserv.message.info import MessageInfo
from mailserv.search import All, SearchProgram

# -- the extension point ------------------------------------------------------------------


@dataclass(frozen=True)
class BackendCase:
    """A factory and the options it needs in a fresh ``data_dir`` (may ``pytest.skip``)."""

    factory: Any
    options: Callable[[Path], dict[str, str]] = field(default=lambda data_dir: {})


BACKENDS: Mapping[str, BackendCase] = {
    "memory": BackendCase(memory.factory),
    # File work inline (io-threads=0): the calls complete without a running reactor.  No
    # special-use folders made at first login: the suite creates "Archive" itself.
    "maildir": BackendCase(
        maildir.factory, lambda data_dir: {"io-threads": "0", "autocreate": "false"}
    ),
    # The SQL store runs its transactions inline here, so results are ready without a reactor.
    "sql-sqlite": BackendCase(
        sql.SqlBackendFactory(database=sql.inline_database),
        lambda data_dir: {"sqlite-sync": "normal"},  # no fsync per commit: a faster suite
    ),
    "sql-postgresql": BackendCase(
        sql.SqlBackendFactory(database=sql.inline_database),
        lambda data_dir: {"url": pgcluster.database_url()},
    ),
}


# -- helpers ------------------------------------------------------------------------------


def resolve(value: Any) -> Any:
    """The result of a backend call that may be a plain value, Deferred or coroutine."""
    if inspect.iscoroutine(value):
        value = Deferred.fromCoroutine(value)
    if not isinstance(value, Deferred):
        return value
    outcome: list[Any] = []
    value.addBoth(outcome.append)
    assert outcome, "the call did not complete without a reactor; resolve() needs one"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


@implementer(IMailboxListener)
class Recorder:
    """Keeps every event as (kind, payload, origin)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[Any], object]] = []

    def messages_added(self, mailbox: IMailbox, uids: Any, origin: object) -> None:
        self.events.append(("added", list(uids), origin))

    def messages_expunged(self, mailbox: IMailbox, uids: Any, origin: object) -> None:
        self.events.append(("expunged", list(uids), origin))

    def flags_changed(self, mailbox: IMailbox, changes: Any, origin: object) -> None:
        self.events.append(("flags", list(changes), origin))

    def mailbox_lost(self, mailbox: IMailbox, reason: str) -> None:
        self.events.append(("lost", [], reason))


def message(n: int = 1) -> bytes:
    return (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Note {n}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{n}@example.org>\r\n"
        f"\r\nBody of note {n}.\r\n"
    ).encode()


def append(mailbox: Any, n: int = 1, flags: frozenset[str] = frozenset(), **kw: Any) -> int:
    when = kw.pop("internaldate", None)
    return int(resolve(mailbox.append(message(n), flags, when, kw.pop("origin", None))).uid)


def names(account: Any) -> dict[str, frozenset[str]]:
    return {info.name: info.attributes for info in resolve(account.list_mailboxes())}


def metas(mailbox: Any, uids: Any = None) -> list[MessageMeta]:
    return list(resolve(mailbox.fetch(resolve(mailbox.uids()) if uids is None else uids)))


def flags_of(mailbox: Any) -> dict[int, frozenset[str]]:
    return {m.uid: m.flags for m in metas(mailbox)}


def status(mailbox: Any) -> Any:
    return resolve(mailbox.status())


SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=sorted(BACKENDS), ids=str)
def case(request: pytest.FixtureRequest) -> BackendCase:
    return BACKENDS[request.param]


@pytest.fixture
def backend(case: BackendCase, tmp_path: Path) -> Iterator[Any]:
    built = case.factory.build(case.options(tmp_path), str(tmp_path), reactor)
    resolve(built.start())
    yield built
    resolve(built.stop())


@pytest.fixture
def account(backend: Any) -> Any:
    return resolve(backend.account("alice"))


@pytest.fixture
def inbox(account: Any) -> Any:
    return resolve(account.open("INBOX"))


@pytest.fixture
def recorder(inbox: Any) -> Iterator[Recorder]:
    listener = Recorder()
    inbox.add_listener(listener)
    yield listener
    inbox.remove_listener(listener)


# -- plugin and object interfaces -------------------------------------------------------


def test_factory_provides_the_plugin_interface(case: BackendCase) -> None:
    assert verifyObject(IBackendFactory, case.factory)
    assert case.factory.name and isinstance(case.factory.name, str)
    assert isinstance(case.factory.description, str)
    assert all(isinstance(help, str) for help in case.factory.options.values())


def test_factory_names_an_unknown_option(case: BackendCase, tmp_path: Path) -> None:
    options = {**case.options(tmp_path), "no-such-option": "1"}
    with pytest.raises(BackendOptionError, match="no-such-option"):
        case.factory.build(options, str(tmp_path), reactor)


def test_objects_provide_their_interfaces(backend: Any, account: Any, inbox: Any) -> None:
    assert verifyObject(IBackend, backend)
    assert verifyObject(IAccount, account)
    assert verifyObject(IMailbox, inbox)
    assert verifyObject(IMailboxListener, Recorder())
    assert inbox.name == "INBOX"


def test_io_methods_return_awaitables(backend: Any, account: Any, inbox: Any) -> None:
    """The contract declares them ``Awaitable``: a coroutine or a Deferred, never a value."""
    calls = [
        backend.account("alice"),
        account.list_mailboxes(),
        account.subscriptions(),
        account.subscribe("Later"),
        account.open("INBOX"),
        inbox.status(),
        inbox.uids(),
        inbox.fetch([]),
        inbox.claim_recent(),
        inbox.changes_since(0),
        inbox.search(SearchProgram(All()), []),
        inbox.expunge([], None),
        inbox.store([], StoreMode.ADD, SEEN, None),
    ]
    for call in calls:
        assert inspect.isawaitable(call), call
        resolve(call)


def test_store_mode_combines_flags() -> None:
    current, given = frozenset({"\\Seen", "$A"}), frozenset({"$A", "$B"})
    assert StoreMode.ADD.apply(current, given) == {"\\Seen", "$A", "$B"}
    assert StoreMode.REMOVE.apply(current, given) == {"\\Seen"}
    assert StoreMode.REPLACE.apply(current, given) == given


def test_credentials_checker_is_none_or_a_checker(backend: Any) -> None:
    checker = backend.credentials_checker()
    assert checker is None or ICredentialsChecker.providedBy(checker)


# -- accounts and the mailbox hierarchy --------------------------------------------------


def test_new_account_has_an_inbox(account: Any) -> None:
    assert "\\Noselect" not in names(account)["INBOX"]
    assert status(resolve(account.open("INBOX"))).messages == 0


def test_accounts_keep_state_and_are_separate(backend: Any) -> None:
    resolve(resolve(backend.account("bob")).create("Work"))
    assert "Work" in names(resolve(backend.account("bob")))
    assert "Work" not in names(resolve(backend.account("carol")))


def test_create_makes_missing_parents(account: Any) -> None:
    resolve(account.create("a/b/c"))
    listed = names(account)
    assert {"a", "a/b", "a/b/c"} <= set(listed)
    assert not any("\\Noselect" in listed[n] for n in ("a", "a/b", "a/b/c"))
    for name in ("a", "a/b", "a/b/c"):
        assert resolve(account.open(name)).name == name


def test_create_refuses_an_existing_name(account: Any) -> None:
    resolve(account.create("Work"))
    for name in ("Work", "INBOX"):
        with pytest.raises(MailboxExists):
            resolve(account.create(name))


def test_create_ignores_a_trailing_delimiter(account: Any) -> None:
    resolve(account.create("Projects/"))
    assert "Projects" in names(account)


@pytest.mark.parametrize("name", ["a//b", "/a", ""])
def test_create_refuses_empty_levels(account: Any, name: str) -> None:
    with pytest.raises(InvalidMailboxName):
        resolve(account.create(name))


def test_create_records_special_use(account: Any) -> None:
    resolve(account.create("Sent Items", "\\Sent"))
    assert "\\Sent" in names(account)["Sent Items"]


def test_delete_removes_a_leaf(account: Any) -> None:
    resolve(account.create("Old"))
    resolve(account.delete("Old"))
    assert "Old" not in names(account)
    with pytest.raises(MailboxNotFound):
        resolve(account.open("Old"))


def test_delete_refuses_inbox_and_unknown_names(account: Any) -> None:
    with pytest.raises(BackendError):
        resolve(account.delete("INBOX"))
    assert "INBOX" in names(account)
    with pytest.raises(MailboxNotFound):
        resolve(account.delete("Nowhere"))


def test_delete_with_inferiors_leaves_noselect(account: Any) -> None:
    resolve(account.create("a/b"))
    append(resolve(account.open("a")))
    resolve(account.delete("a"))
    assert "\\Noselect" in names(account)["a"]
    assert "\\Noselect" not in names(account)["a/b"]
    with pytest.raises(MailboxNotSelectable):
        resolve(account.open("a"))
    with pytest.raises(MailboxHasChildren):
        resolve(account.delete("a"))
    resolve(account.delete("a/b"))
    resolve(account.delete("a"))
    assert not {"a", "a/b"} & set(names(account))


def test_create_over_a_noselect_name_makes_it_a_fresh_mailbox(account: Any) -> None:
    resolve(account.create("a/b"))
    append(resolve(account.open("a")))
    resolve(account.delete("a"))
    resolve(account.create("a"))
    assert status(resolve(account.open("a"))).messages == 0


def test_delete_then_create_changes_uidvalidity(account: Any) -> None:
    resolve(account.create("Box"))
    box = resolve(account.open("Box"))
    append(box)
    before = status(box).uidvalidity
    resolve(account.delete("Box"))
    resolve(account.create("Box"))
    after = status(resolve(account.open("Box")))
    assert after.uidvalidity != before
    assert after.messages == 0


def test_rename_moves_inferiors_and_messages(account: Any) -> None:
    resolve(account.create("a/b"))
    uid = append(resolve(account.open("a/b")), 7)
    resolve(account.rename("a", "z"))
    listed = names(account)
    assert {"z", "z/b"} <= set(listed)
    assert not {"a", "a/b"} & set(listed)
    assert resolve(resolve(account.open("z/b")).content(uid)) == message(7)


def test_rename_creates_parents_of_the_target(account: Any) -> None:
    resolve(account.create("a"))
    resolve(account.rename("a", "p/q"))
    assert {"p", "p/q"} <= set(names(account))


def test_rename_errors(account: Any) -> None:
    resolve(account.create("a"))
    resolve(account.create("b"))
    with pytest.raises(MailboxExists):
        resolve(account.rename("a", "b"))
    with pytest.raises(MailboxNotFound):
        resolve(account.rename("nothing", "c"))


def test_rename_inbox_moves_its_messages(account: Any, inbox: Any) -> None:
    resolve(account.create("INBOX/kid"))
    append(inbox, 1, SEEN)
    append(inbox, 2)
    old_validity = status(inbox).uidvalidity
    resolve(account.rename("INBOX", "Old"))
    listed = names(account)
    assert {"INBOX", "INBOX/kid", "Old"} <= set(listed)
    assert status(resolve(account.open("INBOX"))).messages == 0
    old = resolve(account.open("Old"))
    assert status(old).uidvalidity != old_validity
    moved = metas(old)
    assert [m.flags for m in moved] == [SEEN, frozenset()]
    assert [resolve(old.content(m.uid)) for m in moved] == [message(1), message(2)]


def test_subscriptions_are_a_set_of_any_names(account: Any) -> None:
    for name in ("INBOX", "Later", "Later"):
        resolve(account.subscribe(name))
    assert sorted(resolve(account.subscriptions())) == ["INBOX", "Later"]
    resolve(account.unsubscribe("Later"))
    resolve(account.unsubscribe("never-subscribed"))
    assert list(resolve(account.subscriptions())) == ["INBOX"]


# -- messages -------------------------------------------------------------------------


def test_append_assigns_ascending_uids(inbox: Any) -> None:
    validity = status(inbox).uidvalidity
    result = resolve(inbox.append(message(1), frozenset(), None, None))
    assert result.uidvalidity == validity
    uids = [result.uid] + [append(inbox, n) for n in (2, 3)]
    assert uids == sorted(uids) and len(set(uids)) == 3
    assert list(resolve(inbox.uids())) == uids
    assert status(inbox).uidnext > uids[-1]


def test_uids_are_never_reused(inbox: Any) -> None:
    first = append(inbox, 1, DELETED)
    second = append(inbox, 2, DELETED)
    resolve(inbox.expunge(None, None))
    assert append(inbox, 3) > second > first


def test_append_keeps_what_it_was_given(inbox: Any) -> None:
    when = datetime(2020, 5, 17, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    uid = append(inbox, 1, frozenset({"\\Flagged", "\\Recent", "$Work"}), internaldate=when)
    (meta,) = metas(inbox, [uid])
    assert meta.uid == uid
    assert meta.flags == frozenset({"\\Flagged", "$Work"})
    assert meta.internaldate == when
    assert meta.size == len(message(1))
    assert isinstance(meta.info, MessageInfo)
    assert meta.info.subject == "Note 1"
    assert resolve(inbox.content(uid)) == message(1)


def test_append_defaults_internaldate_to_now(inbox: Any) -> None:
    (meta,) = metas(inbox, [append(inbox)])
    assert meta.internaldate.tzinfo is not None
    assert abs(datetime.now(UTC) - meta.internaldate) < timedelta(minutes=1)


def test_fetch_leaves_out_unknown_uids(inbox: Any) -> None:
    uids = [append(inbox, n) for n in (1, 2)]
    assert [m.uid for m in metas(inbox, [uids[0], 999, uids[1]])] == uids


def test_uids_is_a_snapshot(inbox: Any) -> None:
    append(inbox, 1, DELETED)
    snapshot = resolve(inbox.uids())
    copy = list(snapshot)
    append(inbox, 2)
    resolve(inbox.expunge(None, None))
    assert list(snapshot) == copy


def test_status_counts(inbox: Any) -> None:
    append(inbox, 1, SEEN)
    uid = append(inbox, 2)
    append(inbox, 3)
    now = status(inbox)
    assert (now.messages, now.unseen) == (3, 2)
    assert now.size == sum(len(message(n)) for n in (1, 2, 3))
    resolve(inbox.store([uid], StoreMode.ADD, SEEN | DELETED, None))
    assert status(inbox).unseen == 1
    resolve(inbox.expunge(None, None))
    after = status(inbox)
    assert (after.messages, after.unseen) == (2, 1)
    assert after.size == len(message(1)) + len(message(3))


def test_content_of_an_expunged_message_is_a_key_error(inbox: Any) -> None:
    uid = append(inbox, 1, DELETED)
    resolve(inbox.expunge(None, None))
    with pytest.raises(KeyError):
        resolve(inbox.content(uid))


def test_search_declines_or_answers_among_the_uids(inbox: Any) -> None:
    uids = [append(inbox, n) for n in (1, 2)]
    answer = resolve(inbox.search(SearchProgram(All()), uids[:1]))
    assert answer is None or set(answer) <= {uids[0]}


# -- modseq and flags ---------------------------------------------------------------------


def test_every_change_raises_highestmodseq(inbox: Any) -> None:
    seen = [status(inbox).highestmodseq]
    assert seen[0] > 0
    uid = append(inbox)
    seen.append(status(inbox).highestmodseq)
    resolve(inbox.store([uid], StoreMode.ADD, DELETED, None))
    seen.append(status(inbox).highestmodseq)
    resolve(inbox.expunge(None, None))
    seen.append(status(inbox).highestmodseq)
    assert seen == sorted(set(seen))


def test_store_without_change_keeps_modseq(inbox: Any, recorder: Recorder) -> None:
    uid = append(inbox, 1, SEEN)
    before = status(inbox).highestmodseq
    result = resolve(inbox.store([uid], StoreMode.ADD, SEEN, None))
    assert list(result.changed) == [] and list(result.failed) == []
    assert status(inbox).highestmodseq == before
    assert [kind for kind, _, _ in recorder.events] == ["added"]


def test_store_modes(inbox: Any) -> None:
    uid = append(inbox, 1, frozenset({"\\Seen", "$A"}))
    for mode, flags, expected in [
        (StoreMode.ADD, {"\\Flagged"}, {"\\Seen", "$A", "\\Flagged"}),
        (StoreMode.REMOVE, {"$A", "$Absent"}, {"\\Seen", "\\Flagged"}),
        (StoreMode.REPLACE, {"$B", RECENT}, {"$B"}),
    ]:
        result = resolve(inbox.store([uid], mode, frozenset(flags), None))
        (change,) = result.changed
        assert change == FlagChange(uid, frozenset(expected), status(inbox).highestmodseq)
        (meta,) = metas(inbox, [uid])
        assert (meta.flags, meta.modseq) == (change.flags, change.modseq)


def test_store_reports_only_real_changes(inbox: Any) -> None:
    plain, seen = append(inbox, 1), append(inbox, 2, SEEN)
    result = resolve(inbox.store([plain, seen, 999], StoreMode.ADD, SEEN, None))
    assert [c.uid for c in result.changed] == [plain]


def test_store_unchangedsince(inbox: Any) -> None:
    old, touched = append(inbox, 1), append(inbox, 2)
    mark = status(inbox).highestmodseq
    resolve(inbox.store([touched], StoreMode.ADD, SEEN, None))
    result = resolve(inbox.store([old, touched], StoreMode.ADD, DELETED, None, unchangedsince=mark))
    assert [c.uid for c in result.changed] == [old]
    assert list(result.failed) == [touched]
    assert flags_of(inbox)[touched] == SEEN


def test_changes_since(inbox: Any) -> None:
    kept, flagged, gone = (append(inbox, n) for n in (1, 2, 3))
    mark = status(inbox).highestmodseq
    resolve(inbox.store([flagged, gone], StoreMode.ADD, DELETED, None))
    resolve(inbox.expunge([gone], None))
    new = append(inbox, 4)
    changes = resolve(inbox.changes_since(mark))
    assert [m.uid for m in changes.changed] == [flagged, new]
    assert list(changes.vanished) == [gone]
    assert changes.highestmodseq == status(inbox).highestmodseq
    assert kept not in [m.uid for m in changes.changed]
    latest = resolve(inbox.changes_since(changes.highestmodseq))
    assert (list(latest.changed), list(latest.vanished)) == ([], [])


# -- expunge, copy, move ------------------------------------------------------------------


def test_expunge_removes_deleted_messages(inbox: Any, recorder: Recorder) -> None:
    origin = object()
    a, b, c, d = (append(inbox, n, DELETED if n != 2 else frozenset()) for n in (1, 2, 3, 4))
    assert list(resolve(inbox.expunge([d, a, b], origin))) == [a, d]
    assert list(resolve(inbox.uids())) == [b, c]
    assert recorder.events[-1] == ("expunged", [a, d], origin)
    assert list(resolve(inbox.expunge(None, origin))) == [c]
    assert list(resolve(inbox.expunge(None, origin))) == []
    assert [kind for kind, _, _ in recorder.events].count("expunged") == 2


def test_copy_keeps_flags_and_dates(account: Any, inbox: Any) -> None:
    resolve(account.create("Archive"))
    archive = resolve(account.open("Archive"))
    listener = Recorder()
    archive.add_listener(listener)
    when = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    uids = [append(inbox, n, SEEN, internaldate=when) for n in (1, 2)]
    origin = object()
    result = resolve(inbox.copy([*uids, 999], "Archive", origin))
    assert result.uidvalidity == status(archive).uidvalidity
    assert [src for src, _ in result.pairs] == uids
    copies = [dst for _, dst in result.pairs]
    assert listener.events == [("added", copies, origin)]
    for meta in metas(archive, copies):
        assert (meta.flags, meta.internaldate) == (SEEN, when)
    assert [resolve(archive.content(u)) for u in copies] == [message(1), message(2)]
    assert list(resolve(inbox.uids())) == uids
    assert list(resolve(archive.claim_recent())) == copies


def test_copy_to_a_missing_or_noselect_mailbox(account: Any, inbox: Any) -> None:
    uid = append(inbox)
    with pytest.raises(MailboxNotFound):
        resolve(inbox.copy([uid], "Nowhere", None))
    resolve(account.create("p/q"))
    resolve(account.delete("p"))
    with pytest.raises(MailboxNotSelectable):
        resolve(inbox.move([uid], "p", None))
    assert list(resolve(inbox.uids())) == [uid]


def test_move_expunges_the_source(account: Any, inbox: Any, recorder: Recorder) -> None:
    resolve(account.create("Done"))
    done = resolve(account.open("Done"))
    listener = Recorder()
    done.add_listener(listener)
    keep, a, b = (append(inbox, n) for n in (1, 2, 3))
    origin = object()
    result = resolve(inbox.move([a, b], "Done", origin))
    assert [src for src, _ in result.pairs] == [a, b]
    assert list(resolve(inbox.uids())) == [keep]
    assert recorder.events[-1] == ("expunged", [a, b], origin)
    assert listener.events == [("added", [dst for _, dst in result.pairs], origin)]
    assert status(done).messages == 2


# -- recent and listeners -----------------------------------------------------------------


def test_recent_is_claimed_once(inbox: Any) -> None:
    first = [append(inbox, n) for n in (1, 2)]
    assert status(inbox).recent == 2
    assert list(resolve(inbox.claim_recent())) == first
    assert list(resolve(inbox.claim_recent())) == []
    assert status(inbox).recent == 0
    later = append(inbox, 3)
    assert list(resolve(inbox.claim_recent())) == [later]
    assert all("\\Recent" not in m.flags for m in metas(inbox))


def test_listeners_hear_other_sessions_with_their_origin(backend: Any) -> None:
    mine = resolve(resolve(backend.account("alice")).open("INBOX"))
    theirs = resolve(resolve(backend.account("alice")).open("INBOX"))
    listener = Recorder()
    mine.add_listener(listener)
    origin = object()
    uid = append(theirs, 1, origin=origin)
    resolve(theirs.store([uid], StoreMode.ADD, DELETED, origin))
    resolve(theirs.expunge(None, origin))
    assert [(kind, origin_) for kind, _, origin_ in listener.events] == [
        ("added", origin),
        ("flags", origin),
        ("expunged", origin),
    ]
    assert listener.events[0][1] == [uid]
    assert listener.events[1][1] == [FlagChange(uid, DELETED, listener.events[1][1][0].modseq)]
    mine.remove_listener(listener)
    append(theirs, 2)
    assert len(listener.events) == 3
