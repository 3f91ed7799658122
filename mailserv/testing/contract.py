"""``BackendContract``: the contract of :mod:`mailserv.interfaces` as a pytest base class
(see :mod:`mailserv.testing`)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest
from twisted.cred.checkers import ICredentialsChecker
from zope.interface.verify import verifyObject

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
    SORT_KEYS,
    FlagChange,
    IAccount,
    IAclAccount,
    IBackend,
    IBackendFactory,
    IFirstUnseen,
    IFlagsMailbox,
    IMailbox,
    IMailboxIdAccount,
    IMailboxListener,
    IMultiAppendAccount,
    ISearchableMailbox,
    ISortKeysMailbox,
    MessageMeta,
    NewMessage,
    StoreMode,
)
from mailserv.message.info import MessageInfo
from mailserv.search import All, SearchProgram
from mailserv.testing.support import Recorder, message, resolve

SORT_SAMPLES = [
    b"Subject: Re: [list] Hello (fwd)\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b'From: "Zed Q" <Zed@Example.ORG>\r\nTo: group: a@b.c, d@e.f;\r\n'
    b"Cc: c@cc.example\r\nMessage-ID: <one@x.example>\r\n"
    b'References: <zero@x.example> <"q r"@x.example>\r\n\r\nBody\r\n',
    b"Subject: gone\r\nFrom: gone@example.org\r\n\r\nBody\r\n",
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: =?utf-8?q?J=C3=B6rg?= <j@x.example>\r\n"
    b"In-Reply-To: <one@x.example> <other@x.example>\r\n\r\nBody\r\n",
    b"Date: not a date\r\nTo: plain@example.org\r\nMessage-ID: <bad id>\r\n\r\nBody\r\n",
    b"Subject: Fwd: Fw: Hello\r\nDate: Tue, 1 Jan 2030 00:00:00 +1400\r\n\r\n"
    + b"x" * 3000
    + b"\r\n",
]
"""Messages whose SORT and THREAD keys differ in every way (one is expunged)."""

SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


class BackendContract:
    """Subclass it as ``Test...`` and set ``factory``; see the module's documentation."""

    factory: ClassVar[Any]
    """The ``IBackendFactory`` under test."""
    reactor: ClassVar[Any] = None
    """Given to ``build`` and turned by :meth:`resolve`; None: the global reactor."""

    def options(self, data_dir: Path) -> dict[str, str]:
        """The ``--backend-option`` values the backend needs in a fresh ``data_dir``."""
        return {}

    def resolve(self, value: Any) -> Any:
        return resolve(value, self._reactor())

    def _reactor(self) -> Any:
        if self.reactor is None:
            from twisted.internet import reactor

            return reactor
        return self.reactor

    # -- fixtures -----------------------------------------------------------------------

    @pytest.fixture
    def backend_options(self, tmp_path: Path) -> dict[str, str]:
        return self.options(tmp_path)

    @pytest.fixture
    def backend(self, backend_options: dict[str, str], tmp_path: Path) -> Iterator[Any]:
        built = self.factory.build(backend_options, str(tmp_path), self._reactor())
        self.resolve(built.start())
        yield built
        self.resolve(built.stop())

    @pytest.fixture
    def account(self, backend: Any) -> Any:
        return self.resolve(backend.account("alice"))

    @pytest.fixture
    def inbox(self, account: Any) -> Any:
        return self.resolve(account.open("INBOX"))

    @pytest.fixture
    def recorder(self, inbox: Any) -> Iterator[Recorder]:
        listener = Recorder()
        inbox.add_listener(listener)
        yield listener
        inbox.remove_listener(listener)

    # -- helpers ------------------------------------------------------------------------

    def append(
        self, mailbox: Any, n: int = 1, flags: frozenset[str] = frozenset(), **kw: Any
    ) -> int:
        when = kw.pop("internaldate", None)
        result = self.resolve(mailbox.append(message(n), flags, when, kw.pop("origin", None)))
        return int(result.uid)

    def names(self, account: Any) -> dict[str, frozenset[str]]:
        return {info.name: info.attributes for info in self.resolve(account.list_mailboxes())}

    def metas(self, mailbox: Any, uids: Any = None) -> list[MessageMeta]:
        wanted = self.resolve(mailbox.uids()) if uids is None else uids
        return list(self.resolve(mailbox.fetch(wanted)))

    def flags_of(self, mailbox: Any) -> dict[int, frozenset[str]]:
        return {m.uid: m.flags for m in self.metas(mailbox)}

    def status(self, mailbox: Any) -> Any:
        return self.resolve(mailbox.status())

    # -- plugin and object interfaces -------------------------------------------------------

    def test_factory_provides_the_plugin_interface(self) -> None:
        assert verifyObject(IBackendFactory, self.factory)
        assert self.factory.name and isinstance(self.factory.name, str)
        assert isinstance(self.factory.description, str)
        assert all(isinstance(help, str) for help in self.factory.options.values())

    def test_factory_names_an_unknown_option(
        self, backend_options: dict[str, str], tmp_path: Path
    ) -> None:
        options = {**backend_options, "no-such-option": "1"}
        with pytest.raises(BackendOptionError, match="no-such-option"):
            self.factory.build(options, str(tmp_path), self.reactor)

    def test_objects_provide_their_interfaces(self, backend: Any, account: Any, inbox: Any) -> None:
        assert verifyObject(IBackend, backend)
        assert verifyObject(IAccount, account)
        assert verifyObject(IMailbox, inbox)
        if ISearchableMailbox.providedBy(inbox):  # optional: checked only when declared
            assert verifyObject(ISearchableMailbox, inbox)
        if ISortKeysMailbox.providedBy(inbox):
            assert verifyObject(ISortKeysMailbox, inbox)
        if IFlagsMailbox.providedBy(inbox):
            assert verifyObject(IFlagsMailbox, inbox)
        if IFirstUnseen.providedBy(inbox):
            assert verifyObject(IFirstUnseen, inbox)
        assert verifyObject(IMailboxListener, Recorder())
        assert inbox.name == "INBOX"

    def test_io_methods_return_awaitables(self, backend: Any, account: Any, inbox: Any) -> None:
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
            inbox.expunge([], None),
            inbox.store([], StoreMode.ADD, SEEN, None),
        ]
        if ISearchableMailbox.providedBy(inbox):
            calls.append(inbox.search(SearchProgram(All()), []))
        if ISortKeysMailbox.providedBy(inbox):
            calls.append(inbox.sort_keys([], SORT_KEYS))
        if IFlagsMailbox.providedBy(inbox):
            calls.append(inbox.fetch_flags([]))
        if IFirstUnseen.providedBy(inbox):
            calls.append(inbox.first_unseen())
        for call in calls:
            assert inspect.isawaitable(call), call
            self.resolve(call)

    def test_store_mode_combines_flags(self) -> None:
        current, given = frozenset({"\\Seen", "$A"}), frozenset({"$A", "$B"})
        assert StoreMode.ADD.apply(current, given) == {"\\Seen", "$A", "$B"}
        assert StoreMode.REMOVE.apply(current, given) == {"\\Seen"}
        assert StoreMode.REPLACE.apply(current, given) == given

    def test_credentials_checker_is_none_or_a_checker(self, backend: Any) -> None:
        checker = backend.credentials_checker()
        assert checker is None or ICredentialsChecker.providedBy(checker)

    # -- accounts and the mailbox hierarchy --------------------------------------------------

    def test_new_account_has_an_inbox(self, account: Any) -> None:
        assert "\\Noselect" not in self.names(account)["INBOX"]
        assert self.status(self.resolve(account.open("INBOX"))).messages == 0

    def test_accounts_keep_state_and_are_separate(self, backend: Any) -> None:
        self.resolve(self.resolve(backend.account("bob")).create("Work"))
        assert "Work" in self.names(self.resolve(backend.account("bob")))
        assert "Work" not in self.names(self.resolve(backend.account("carol")))

    def test_create_makes_missing_parents(self, account: Any) -> None:
        self.resolve(account.create("a/b/c"))
        listed = self.names(account)
        assert {"a", "a/b", "a/b/c"} <= set(listed)
        assert not any("\\Noselect" in listed[n] for n in ("a", "a/b", "a/b/c"))
        for name in ("a", "a/b", "a/b/c"):
            assert self.resolve(account.open(name)).name == name

    def test_create_refuses_an_existing_name(self, account: Any) -> None:
        self.resolve(account.create("Work"))
        for name in ("Work", "INBOX"):
            with pytest.raises(MailboxExists):
                self.resolve(account.create(name))

    def test_create_ignores_a_trailing_delimiter(self, account: Any) -> None:
        self.resolve(account.create("Projects/"))
        assert "Projects" in self.names(account)

    @pytest.mark.parametrize("name", ["a//b", "/a", ""])
    def test_create_refuses_empty_levels(self, account: Any, name: str) -> None:
        with pytest.raises(InvalidMailboxName):
            self.resolve(account.create(name))

    def test_create_records_special_use(self, account: Any) -> None:
        self.resolve(account.create("Sent Items", "\\Sent"))
        assert "\\Sent" in self.names(account)["Sent Items"]

    def test_delete_removes_a_leaf(self, account: Any) -> None:
        self.resolve(account.create("Old"))
        self.resolve(account.delete("Old"))
        assert "Old" not in self.names(account)
        with pytest.raises(MailboxNotFound):
            self.resolve(account.open("Old"))

    def test_delete_refuses_inbox_and_unknown_names(self, account: Any) -> None:
        with pytest.raises(BackendError):
            self.resolve(account.delete("INBOX"))
        assert "INBOX" in self.names(account)
        with pytest.raises(MailboxNotFound):
            self.resolve(account.delete("Nowhere"))

    def test_delete_with_inferiors_leaves_noselect(self, account: Any) -> None:
        self.resolve(account.create("a/b"))
        self.append(self.resolve(account.open("a")))
        self.resolve(account.delete("a"))
        assert "\\Noselect" in self.names(account)["a"]
        assert "\\Noselect" not in self.names(account)["a/b"]
        with pytest.raises(MailboxNotSelectable):
            self.resolve(account.open("a"))
        with pytest.raises(MailboxHasChildren):
            self.resolve(account.delete("a"))
        self.resolve(account.delete("a/b"))
        self.resolve(account.delete("a"))
        assert not {"a", "a/b"} & set(self.names(account))

    def test_create_over_a_noselect_name_makes_it_a_fresh_mailbox(self, account: Any) -> None:
        self.resolve(account.create("a/b"))
        self.append(self.resolve(account.open("a")))
        self.resolve(account.delete("a"))
        self.resolve(account.create("a"))
        assert self.status(self.resolve(account.open("a"))).messages == 0

    def test_delete_then_create_changes_uidvalidity(self, account: Any) -> None:
        self.resolve(account.create("Box"))
        box = self.resolve(account.open("Box"))
        self.append(box)
        before = self.status(box).uidvalidity
        self.resolve(account.delete("Box"))
        self.resolve(account.create("Box"))
        after = self.status(self.resolve(account.open("Box")))
        assert after.uidvalidity != before
        assert after.messages == 0

    def test_mailboxid_survives_rename_and_is_new_after_delete(self, account: Any) -> None:
        """RFC 8474 MAILBOXID, from an account that provides ``IMailboxIdAccount``."""
        keeps_ids = IMailboxIdAccount.providedBy(account)
        if not keeps_ids:
            pytest.skip("this account keeps no MAILBOXIDs")
        self.resolve(account.create("Box/kid"))
        first = self.status(self.resolve(account.open("Box"))).mailboxid
        kid = self.status(self.resolve(account.open("Box/kid"))).mailboxid
        inbox = self.status(self.resolve(account.open("INBOX"))).mailboxid
        for value in (first, kid, inbox):
            assert isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,255}", value)
        assert len({first, kid, inbox}) == 3
        self.resolve(account.rename("Box", "Moved"))
        assert self.status(self.resolve(account.open("Moved"))).mailboxid == first
        assert self.status(self.resolve(account.open("Moved/kid"))).mailboxid == kid
        self.resolve(account.delete("Moved/kid"))
        self.resolve(account.create("Moved/kid"))
        assert self.status(self.resolve(account.open("Moved/kid"))).mailboxid not in (first, kid)

    def test_savedate_is_when_the_message_was_stored(self, account: Any, inbox: Any) -> None:
        """RFC 8514: the save date is the APPEND's (or COPY's) moment, not the internal
        date; a store that keeps none says None for every message."""
        old = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
        start = datetime.now(UTC).replace(microsecond=0)
        uid = self.append(inbox, 1, internaldate=old)
        self.resolve(account.create("Copies"))
        copies = self.resolve(account.open("Copies"))
        ((_, copy),) = self.resolve(inbox.copy([uid], "Copies", None)).pairs
        (original,) = self.metas(inbox, [uid])
        (copied,) = self.metas(copies, [copy])
        if original.savedate is None:
            assert copied.savedate is None
            return
        assert copied.savedate is not None
        assert original.internaldate == copied.internaldate == old
        assert start <= original.savedate <= copied.savedate <= datetime.now(UTC)

    def test_rename_moves_inferiors_and_messages(self, account: Any) -> None:
        self.resolve(account.create("a/b"))
        uid = self.append(self.resolve(account.open("a/b")), 7)
        self.resolve(account.rename("a", "z"))
        listed = self.names(account)
        assert {"z", "z/b"} <= set(listed)
        assert not {"a", "a/b"} & set(listed)
        assert self.resolve(self.resolve(account.open("z/b")).content(uid)) == message(7)

    def test_rename_creates_parents_of_the_target(self, account: Any) -> None:
        self.resolve(account.create("a"))
        self.resolve(account.rename("a", "p/q"))
        assert {"p", "p/q"} <= set(self.names(account))

    def test_rename_errors(self, account: Any) -> None:
        self.resolve(account.create("a"))
        self.resolve(account.create("b"))
        with pytest.raises(MailboxExists):
            self.resolve(account.rename("a", "b"))
        with pytest.raises(MailboxNotFound):
            self.resolve(account.rename("nothing", "c"))

    def test_rename_inbox_moves_its_messages(self, account: Any, inbox: Any) -> None:
        self.resolve(account.create("INBOX/kid"))
        self.append(inbox, 1, SEEN)
        self.append(inbox, 2)
        old_validity = self.status(inbox).uidvalidity
        self.resolve(account.rename("INBOX", "Old"))
        listed = self.names(account)
        assert {"INBOX", "INBOX/kid", "Old"} <= set(listed)
        assert self.status(self.resolve(account.open("INBOX"))).messages == 0
        old = self.resolve(account.open("Old"))
        assert self.status(old).uidvalidity != old_validity
        moved = self.metas(old)
        assert [m.flags for m in moved] == [SEEN, frozenset()]
        assert [self.resolve(old.content(m.uid)) for m in moved] == [message(1), message(2)]

    def test_subscriptions_are_a_set_of_any_names(self, account: Any) -> None:
        for name in ("INBOX", "Later", "Later"):
            self.resolve(account.subscribe(name))
        assert sorted(self.resolve(account.subscriptions())) == ["INBOX", "Later"]
        self.resolve(account.unsubscribe("Later"))
        self.resolve(account.unsubscribe("never-subscribed"))
        assert list(self.resolve(account.subscriptions())) == ["INBOX"]

    # -- messages -------------------------------------------------------------------------

    def test_append_assigns_ascending_uids(self, inbox: Any) -> None:
        validity = self.status(inbox).uidvalidity
        result = self.resolve(inbox.append(message(1), frozenset(), None, None))
        assert result.uidvalidity == validity
        uids = [result.uid] + [self.append(inbox, n) for n in (2, 3)]
        assert uids == sorted(uids) and len(set(uids)) == 3
        assert list(self.resolve(inbox.uids())) == uids
        assert self.status(inbox).uidnext > uids[-1]

    def test_append_many_stores_all_in_order(
        self, account: Any, inbox: Any, recorder: Recorder
    ) -> None:
        if not IMultiAppendAccount.providedBy(account):
            pytest.skip("the account does not provide IMultiAppendAccount (no MULTIAPPEND)")
        assert verifyObject(IMultiAppendAccount, account)
        when = datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)
        batch = [
            NewMessage(message(1), SEEN),
            NewMessage(message(2), frozenset(), when),
            NewMessage(message(3), frozenset({RECENT, "$x"})),
        ]
        uids = [r.uid for r in self.resolve(account.append_many("INBOX", batch, "me"))]
        assert uids == sorted(uids) and len(set(uids)) == 3
        assert list(self.resolve(inbox.uids())) == uids
        metas = self.metas(inbox)
        assert [m.flags for m in metas] == [SEEN, frozenset(), frozenset({"$x"})]
        assert metas[1].internaldate == when
        assert [self.resolve(inbox.content(uid)) for uid in uids] == [message(n) for n in (1, 2, 3)]
        added = [uid for kind, got, _ in recorder.events if kind == "added" for uid in got]
        assert added == uids
        with pytest.raises(MailboxNotFound):
            self.resolve(account.append_many("Nowhere", batch, None))
        assert list(self.resolve(inbox.uids())) == uids

    def test_uids_are_never_reused(self, inbox: Any) -> None:
        first = self.append(inbox, 1, DELETED)
        second = self.append(inbox, 2, DELETED)
        self.resolve(inbox.expunge(None, None))
        assert self.append(inbox, 3) > second > first

    def test_append_keeps_what_it_was_given(self, inbox: Any) -> None:
        when = datetime(2020, 5, 17, 10, 30, tzinfo=timezone(timedelta(hours=2)))
        uid = self.append(
            inbox, 1, frozenset({"\\Flagged", "\\Recent", "$Work"}), internaldate=when
        )
        (meta,) = self.metas(inbox, [uid])
        assert meta.uid == uid
        assert meta.flags == frozenset({"\\Flagged", "$Work"})
        assert meta.internaldate == when
        assert meta.size == len(message(1))
        assert isinstance(meta.info, MessageInfo)
        assert meta.info.subject == "Note 1"
        assert self.resolve(inbox.content(uid)) == message(1)

    def test_append_defaults_internaldate_to_now(self, inbox: Any) -> None:
        (meta,) = self.metas(inbox, [self.append(inbox)])
        assert meta.internaldate.tzinfo is not None
        assert abs(datetime.now(UTC) - meta.internaldate) < timedelta(minutes=1)

    def test_fetch_leaves_out_unknown_uids(self, inbox: Any) -> None:
        uids = [self.append(inbox, n) for n in (1, 2)]
        assert [m.uid for m in self.metas(inbox, [uids[0], 999, uids[1]])] == uids

    def test_uids_is_a_snapshot(self, inbox: Any) -> None:
        self.append(inbox, 1, DELETED)
        snapshot = self.resolve(inbox.uids())
        copy = list(snapshot)
        self.append(inbox, 2)
        self.resolve(inbox.expunge(None, None))
        assert list(snapshot) == copy

    def test_status_counts(self, inbox: Any) -> None:
        self.append(inbox, 1, SEEN)
        uid = self.append(inbox, 2)
        self.append(inbox, 3)
        now = self.status(inbox)
        assert (now.messages, now.unseen) == (3, 2)
        assert now.size == sum(len(message(n)) for n in (1, 2, 3))
        self.resolve(inbox.store([uid], StoreMode.ADD, SEEN | DELETED, None))
        assert self.status(inbox).unseen == 1
        self.resolve(inbox.expunge(None, None))
        after = self.status(inbox)
        assert (after.messages, after.unseen) == (2, 1)
        assert after.size == len(message(1)) + len(message(3))

    def test_content_of_an_expunged_message_is_a_key_error(self, inbox: Any) -> None:
        uid = self.append(inbox, 1, DELETED)
        self.resolve(inbox.expunge(None, None))
        with pytest.raises(KeyError):
            self.resolve(inbox.content(uid))

    def test_search_declines_or_answers_among_the_uids(self, inbox: Any) -> None:
        """Only for a mailbox declaring ``ISearchableMailbox``."""
        if not ISearchableMailbox.providedBy(inbox):
            pytest.skip("no search of its own: the engine evaluates every query")
        uids = [self.append(inbox, n) for n in (1, 2)]
        answer = self.resolve(inbox.search(SearchProgram(All()), uids[:1]))
        assert answer is None or set(answer) <= {uids[0]}

    def test_sort_keys_are_the_keys_of_fetch(self, inbox: Any) -> None:
        """Only for a mailbox declaring ``ISortKeysMailbox``: its columns hold what the
        engine reads from ``fetch()`` results, for the messages that still exist."""
        if not ISortKeysMailbox.providedBy(inbox):
            pytest.skip("no sort keys of its own: the engine reads them from fetch()")
        from mailserv.imap.sorting import keys_of

        uids = []
        for n, raw in enumerate(SORT_SAMPLES):
            when = datetime(2024, 3, 1, 12, 0, n, tzinfo=timezone(timedelta(hours=n - 2)))
            uids.append(int(self.resolve(inbox.append(raw, frozenset(), when, None)).uid))
        self.resolve(inbox.store(uids[1:2], StoreMode.ADD, DELETED, None))
        self.resolve(inbox.expunge(None, None))
        asked = [uids[0], *uids[2:], uids[-1] + 10]
        for names in (SORT_KEYS, ("SUBJECT",), ("DATE", "REFERENCES", "SIZE")):
            got = self.resolve(inbox.sort_keys(asked, names))
            work = keys_of(self.resolve(inbox.fetch(asked)), names)
            try:
                while True:
                    next(work)
            except StopIteration as done:
                expected = done.value
            assert list(got.uids) == list(expected.uids) == asked[:-1]
            for name in names:
                assert list(got.columns[name]) == list(expected.columns[name]), name

    def test_fetch_flags_is_fetch_but_info(self, inbox: Any) -> None:
        """Only for a mailbox declaring ``IFlagsMailbox``: ``fetch_flags`` gives what
        ``fetch`` gives for the messages that still exist, ``info`` aside."""
        if not IFlagsMailbox.providedBy(inbox):
            pytest.skip("no fetch_flags: the engine reads flags with fetch()")
        uids = []
        for n, raw in enumerate(SORT_SAMPLES):
            when = datetime(2024, 3, 1, 12, 0, n, tzinfo=timezone(timedelta(hours=n - 2)))
            flags = frozenset({"\\Flagged", f"$K{n}"}) if n % 2 else frozenset()
            uids.append(int(self.resolve(inbox.append(raw, flags, when, None)).uid))
        self.resolve(inbox.store(uids[1:2], StoreMode.ADD, DELETED, None))
        self.resolve(inbox.expunge(None, None))
        self.resolve(inbox.store(uids[2:4], StoreMode.ADD, SEEN, None))
        asked = [uids[0], *uids[2:], uids[-1] + 10]

        def fields(meta: MessageMeta) -> tuple[object, ...]:
            return (meta.uid, meta.flags, meta.internaldate, meta.size, meta.modseq, meta.savedate)

        light = self.resolve(inbox.fetch_flags(asked))
        full = self.resolve(inbox.fetch(asked))
        assert [fields(m) for m in light] == [fields(m) for m in full]
        assert [m.uid for m in light] == asked[:-1]

    def test_first_unseen_follows_seen_and_expunge(self, inbox: Any) -> None:
        """Only for a mailbox declaring ``IFirstUnseen``: the lowest UID without \\Seen, as
        flags change and messages go; None when every message has it."""
        keeper = IFirstUnseen(inbox, None)
        if keeper is None:
            pytest.skip("no first_unseen: the engine searches for UNSEEN")
        assert self.resolve(keeper.first_unseen()) is None
        uids = [int(self.resolve(inbox.append(message(n), SEEN, None, None)).uid) for n in range(4)]
        assert self.resolve(keeper.first_unseen()) is None
        self.resolve(inbox.store(uids[1:3], StoreMode.REMOVE, SEEN, None))
        assert self.resolve(keeper.first_unseen()) == uids[1]
        self.resolve(inbox.store(uids[1:2], StoreMode.ADD, SEEN | DELETED, None))
        assert self.resolve(keeper.first_unseen()) == uids[2]
        self.resolve(inbox.store(uids[2:3], StoreMode.ADD, DELETED, None))
        self.resolve(inbox.expunge(None, None))
        assert self.resolve(keeper.first_unseen()) is None

    # -- modseq and flags ---------------------------------------------------------------------

    def test_every_change_raises_highestmodseq(self, inbox: Any) -> None:
        seen = [self.status(inbox).highestmodseq]
        assert seen[0] > 0
        uid = self.append(inbox)
        seen.append(self.status(inbox).highestmodseq)
        self.resolve(inbox.store([uid], StoreMode.ADD, DELETED, None))
        seen.append(self.status(inbox).highestmodseq)
        self.resolve(inbox.expunge(None, None))
        seen.append(self.status(inbox).highestmodseq)
        assert seen == sorted(set(seen))

    def test_store_without_change_keeps_modseq(self, inbox: Any, recorder: Recorder) -> None:
        uid = self.append(inbox, 1, SEEN)
        before = self.status(inbox).highestmodseq
        result = self.resolve(inbox.store([uid], StoreMode.ADD, SEEN, None))
        assert list(result.changed) == [] and list(result.failed) == []
        assert self.status(inbox).highestmodseq == before
        assert [kind for kind, _, _ in recorder.events] == ["added"]

    def test_store_modes(self, inbox: Any) -> None:
        uid = self.append(inbox, 1, frozenset({"\\Seen", "$A"}))
        for mode, flags, expected in [
            (StoreMode.ADD, {"\\Flagged"}, {"\\Seen", "$A", "\\Flagged"}),
            (StoreMode.REMOVE, {"$A", "$Absent"}, {"\\Seen", "\\Flagged"}),
            (StoreMode.REPLACE, {"$B", RECENT}, {"$B"}),
        ]:
            result = self.resolve(inbox.store([uid], mode, frozenset(flags), None))
            (change,) = result.changed
            assert change == FlagChange(uid, frozenset(expected), self.status(inbox).highestmodseq)
            (meta,) = self.metas(inbox, [uid])
            assert (meta.flags, meta.modseq) == (change.flags, change.modseq)

    def test_store_reports_only_real_changes(self, inbox: Any) -> None:
        plain, seen = self.append(inbox, 1), self.append(inbox, 2, SEEN)
        result = self.resolve(inbox.store([plain, seen, 999], StoreMode.ADD, SEEN, None))
        assert [c.uid for c in result.changed] == [plain]

    def test_store_unchangedsince(self, inbox: Any) -> None:
        old, touched = self.append(inbox, 1), self.append(inbox, 2)
        mark = self.status(inbox).highestmodseq
        self.resolve(inbox.store([touched], StoreMode.ADD, SEEN, None))
        result = self.resolve(
            inbox.store([old, touched], StoreMode.ADD, DELETED, None, unchangedsince=mark)
        )
        assert [c.uid for c in result.changed] == [old]
        assert list(result.failed) == [touched]
        assert self.flags_of(inbox)[touched] == SEEN

    def test_changes_since(self, inbox: Any) -> None:
        kept, flagged, gone = (self.append(inbox, n) for n in (1, 2, 3))
        mark = self.status(inbox).highestmodseq
        self.resolve(inbox.store([flagged, gone], StoreMode.ADD, DELETED, None))
        self.resolve(inbox.expunge([gone], None))
        new = self.append(inbox, 4)
        changes = self.resolve(inbox.changes_since(mark))
        assert [m.uid for m in changes.changed] == [flagged, new]
        assert list(changes.vanished) == [gone]
        assert changes.highestmodseq == self.status(inbox).highestmodseq
        assert kept not in [m.uid for m in changes.changed]
        latest = self.resolve(inbox.changes_since(changes.highestmodseq))
        assert (list(latest.changed), list(latest.vanished)) == ([], [])

    # -- expunge, copy, move ------------------------------------------------------------------

    def test_expunge_removes_deleted_messages(self, inbox: Any, recorder: Recorder) -> None:
        origin = object()
        a, b, c, d = (
            self.append(inbox, n, DELETED if n != 2 else frozenset()) for n in (1, 2, 3, 4)
        )
        assert list(self.resolve(inbox.expunge([d, a, b], origin))) == [a, d]
        assert list(self.resolve(inbox.uids())) == [b, c]
        assert recorder.events[-1] == ("expunged", [a, d], origin)
        assert list(self.resolve(inbox.expunge(None, origin))) == [c]
        assert list(self.resolve(inbox.expunge(None, origin))) == []
        assert [kind for kind, _, _ in recorder.events].count("expunged") == 2

    def test_copy_keeps_flags_and_dates(self, account: Any, inbox: Any) -> None:
        self.resolve(account.create("Archive"))
        archive = self.resolve(account.open("Archive"))
        listener = Recorder()
        archive.add_listener(listener)
        when = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
        uids = [self.append(inbox, n, SEEN, internaldate=when) for n in (1, 2)]
        origin = object()
        result = self.resolve(inbox.copy([*uids, 999], "Archive", origin))
        assert result.uidvalidity == self.status(archive).uidvalidity
        assert [src for src, _ in result.pairs] == uids
        copies = [dst for _, dst in result.pairs]
        assert listener.events == [("added", copies, origin)]
        for meta in self.metas(archive, copies):
            assert (meta.flags, meta.internaldate) == (SEEN, when)
        assert [self.resolve(archive.content(u)) for u in copies] == [message(1), message(2)]
        assert list(self.resolve(inbox.uids())) == uids
        assert list(self.resolve(archive.claim_recent())) == copies

    def test_copy_to_a_missing_or_noselect_mailbox(self, account: Any, inbox: Any) -> None:
        uid = self.append(inbox)
        with pytest.raises(MailboxNotFound):
            self.resolve(inbox.copy([uid], "Nowhere", None))
        self.resolve(account.create("p/q"))
        self.resolve(account.delete("p"))
        with pytest.raises(MailboxNotSelectable):
            self.resolve(inbox.move([uid], "p", None))
        assert list(self.resolve(inbox.uids())) == [uid]

    def test_move_expunges_the_source(self, account: Any, inbox: Any, recorder: Recorder) -> None:
        self.resolve(account.create("Done"))
        done = self.resolve(account.open("Done"))
        listener = Recorder()
        done.add_listener(listener)
        keep, a, b = (self.append(inbox, n) for n in (1, 2, 3))
        origin = object()
        result = self.resolve(inbox.move([a, b], "Done", origin))
        assert [src for src, _ in result.pairs] == [a, b]
        assert list(self.resolve(inbox.uids())) == [keep]
        assert recorder.events[-1] == ("expunged", [a, b], origin)
        assert listener.events == [("added", [dst for _, dst in result.pairs], origin)]
        assert self.status(done).messages == 2

    # -- recent and listeners -----------------------------------------------------------------

    def test_acl_kept_with_the_mailbox(self, backend: Any, account: Any) -> None:
        acls = account  # the name narrowed to IAclAccount (account keeps IAccount's calls)
        if not IAclAccount.providedBy(acls):
            pytest.skip("the account does not provide IAclAccount (no ACL, no shared mailboxes)")
        assert verifyObject(IAclAccount, acls)
        bob = self.resolve(backend.account("bob"))
        self.resolve(account.create("Team"))
        assert dict(self.resolve(acls.get_acl("Team"))) == {}
        self.resolve(acls.set_acl("Team", "bob", "lr"))
        self.resolve(acls.set_acl("Team", "anyone", "l"))
        self.resolve(acls.set_acl("Team", "-carol", "r"))
        self.resolve(acls.set_acl("Team", "bob", "lrs"))
        wanted = {"bob": "lrs", "anyone": "l", "-carol": "r"}
        assert dict(self.resolve(acls.get_acl("Team"))) == wanted
        self.resolve(acls.set_acl("Team", "-carol", ""))
        del wanted["-carol"]
        # what another account of the store sees of it
        (entry,) = self.resolve(bob.shared_mailboxes("bob"))
        assert (entry.owner, entry.name, dict(entry.acl)) == ("alice", "Team", wanted)
        assert [e.name for e in self.resolve(bob.shared_mailboxes("dave"))] == ["Team"]  # anyone
        assert self.resolve(acls.shared_mailboxes("alice")) == []  # not its own
        other = self.resolve(bob.other_account("alice"))
        assert other is not None and "Team" in self.names(other)
        self.resolve(other.close())
        assert self.resolve(bob.other_account("nobody-here")) is None
        # RENAME takes the list along, DELETE takes it away
        self.resolve(account.rename("Team", "Crew"))
        assert dict(self.resolve(acls.get_acl("Crew"))) == wanted
        self.resolve(account.delete("Crew"))
        self.resolve(account.create("Crew"))
        assert dict(self.resolve(acls.get_acl("Crew"))) == {}
        with pytest.raises(MailboxNotFound):
            self.resolve(acls.get_acl("Nowhere"))
        with pytest.raises(MailboxNotFound):
            self.resolve(acls.set_acl("Nowhere", "bob", "l"))

    def test_recent_is_claimed_once(self, inbox: Any) -> None:
        first = [self.append(inbox, n) for n in (1, 2)]
        assert self.status(inbox).recent == 2
        assert list(self.resolve(inbox.claim_recent())) == first
        assert list(self.resolve(inbox.claim_recent())) == []
        assert self.status(inbox).recent == 0
        later = self.append(inbox, 3)
        assert list(self.resolve(inbox.claim_recent())) == [later]
        assert all("\\Recent" not in m.flags for m in self.metas(inbox))

    def test_listeners_hear_other_sessions_with_their_origin(self, backend: Any) -> None:
        mine = self.resolve(self.resolve(backend.account("alice")).open("INBOX"))
        theirs = self.resolve(self.resolve(backend.account("alice")).open("INBOX"))
        listener = Recorder()
        mine.add_listener(listener)
        origin = object()
        uid = self.append(theirs, 1, origin=origin)
        self.resolve(theirs.store([uid], StoreMode.ADD, DELETED, origin))
        self.resolve(theirs.expunge(None, origin))
        assert [(kind, origin_) for kind, _, origin_ in listener.events] == [
            ("added", origin),
            ("flags", origin),
            ("expunged", origin),
        ]
        assert listener.events[0][1] == [uid]
        assert listener.events[1][1] == [FlagChange(uid, DELETED, listener.events[1][1][0].modseq)]
        mine.remove_listener(listener)
        self.append(theirs, 2)
        assert len(listener.events) == 3
