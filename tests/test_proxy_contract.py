"""The public backend contract suite (``mailserv.testing``) against the proxy backend.

The proxy really waits on an upstream: the suite's ``resolve`` turns the global reactor
until each result is there.  The backend works in master-user mode (the contract addresses
accounts by name, without passwords) against a private Dovecot whose users' mail is wiped
before each test, once with ``/`` and once with ``.`` as the upstream's hierarchy delimiter.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dovecot import Dovecot, available
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from mailserv.backends import proxy
from mailserv.testing import BackendContract

pytestmark = pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed")

USERS = ("alice", "bob", "carol")


def settle(seconds: float = 0.05) -> None:
    """Let background work (IDLE, releases) run for a moment."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reactor.iterate(0.002)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def _threads() -> Iterator[None]:
    pool = reactor.getThreadPool()  # type: ignore[attr-defined]
    started = not pool.started
    if started:
        pool.start()  # name resolution runs there; nobody runs the reactor here
    yield
    if started:
        pool.stop()  # its threads would keep the interpreter from exiting


@pytest.fixture(scope="module", params=["fs", ""], ids=["slash", "dot"])
def upstream(request: pytest.FixtureRequest, _threads: None) -> Iterator[Dovecot]:
    """Dovecot with ``/`` (LAYOUT=fs) and with ``.`` (Maildir++) as hierarchy delimiter:
    the contract's ``/`` names are translated either way."""
    server = Dovecot(layout=request.param)
    for name in USERS:
        server.add_user(name, "secret")
    server.add_master_user("gateway", "master-secret")
    server.start()
    yield server
    server.stop()


def options(server: Dovecot) -> dict[str, str]:
    return {
        "upstream": f"tls:127.0.0.1:{server.imaps_port}",
        "ca": str(server.ca.ca_cert),
        "master_user": "gateway",
        "master_password": "master-secret",
        "linger": "0",
        "timeout": "10",
    }


class TestProxy(BackendContract):
    factory = proxy.factory

    @pytest.fixture
    def backend_options(self, upstream: Dovecot) -> dict[str, str]:
        for name in USERS:
            shutil.rmtree(upstream.home(name), ignore_errors=True)
        return options(upstream)

    @pytest.fixture
    def backend(self, backend_options: dict[str, str], tmp_path: Path) -> Iterator[Any]:
        built = self.factory.build(backend_options, str(tmp_path), reactor)
        self.resolve(built.start())
        yield built
        self.resolve(built.stop())
        settle()


def test_usage_in_one_list_status(upstream: Dovecot, tmp_path: Path) -> None:
    """Dovecot has LIST-STATUS and STATUS=SIZE: the account adds up its usage for our
    quotas in one LIST upstream, and it equals the sum of each mailbox's STATUS, a
    mailbox selected (its counts from the mirror) and a hollow parent among them."""
    from zope.interface.verify import verifyObject

    from mailserv.interfaces import IAccountUsage, IFirstUnseen, IRefreshMailbox
    from mailserv.testing import Recorder, message, resolve

    shutil.rmtree(upstream.home("alice"), ignore_errors=True)
    backend = proxy.factory.build(options(upstream), str(tmp_path), reactor)
    resolve(backend.start())
    try:
        account = resolve(backend.account("alice"))
        assert verifyObject(IAccountUsage, account)
        for name in ("Work", "Work/Old", "Deep/Down"):
            resolve(account.create(name))
        selected = resolve(account.open("Work"))
        assert verifyObject(IRefreshMailbox, selected)  # NOOP and CHECK ask upstream
        assert verifyObject(IFirstUnseen, selected)  # SELECT's [UNSEEN n] from the mirror
        listener = Recorder()
        selected.add_listener(listener)
        for n, name in enumerate(["INBOX", "Work", "Work", "Work/Old", "Deep/Down"]):
            box = resolve(account.open(name))
            resolve(box.append(message(n) + b"x" * (100 * n), frozenset(), None, None))
        expected = [0, 0]
        for info in resolve(account.list_mailboxes()):
            if "\\Noselect" in info.attributes:
                continue
            status = resolve(resolve(account.open(info.name)).status())
            expected[0] += status.size
            expected[1] += status.messages
        assert expected[1] == 5
        assert resolve(account.usage()) == (expected[0], expected[1])
        selected.remove_listener(listener)
        resolve(account.close())
    finally:
        resolve(backend.stop())
        settle()


@contextmanager
def selected_inbox(upstream: Dovecot, tmp_path: Path, messages: int, **extra: str) -> Iterator[Any]:
    """alice's INBOX with ``messages`` appended, on a started proxy backend (in master-user
    mode, ``extra`` options), a listener keeping it selected upstream, and its account;
    all closed after."""
    from mailserv.testing import Recorder, message, resolve

    shutil.rmtree(upstream.home("alice"), ignore_errors=True)
    backend = proxy.factory.build({**options(upstream), **extra}, str(tmp_path), reactor)
    resolve(backend.start())
    try:
        account = resolve(backend.account("alice"))
        box = resolve(account.open("INBOX"))
        listener = Recorder()
        box.add_listener(listener)  # selected upstream: the mirror follows it
        for n in range(messages):
            resolve(box.append(message(n), frozenset(), None, None))
        yield account, box
        box.remove_listener(listener)
        resolve(account.close())
    finally:
        resolve(backend.stop())


SEARCH_FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "$Work"]
SEARCH_NAMES = ["Ana Straße", "BOB <bob@Example.org>", "=?utf-8?q?Zo=C3=AB?= <zoe@x.test>"]
SEARCH_SUBJECTS = ["Budget MEETING", "re: budget", "=?utf-8?b?w4ljbGFpcg==?=", "plan", ""]
SEARCH_NEEDLES = ["budget", "STRASSE", "straße", "bob@example", "zoë", "ÉCLAIR", "x.test", ""]


def _search_key(rng: Any, depth: int = 0) -> Any:
    """A random program of flags, internal dates and FROM/TO/SUBJECT keys."""
    from mailserv.search import (
        And,
        Contains,
        DateCompare,
        DateField,
        DateOp,
        HasFlag,
        Not,
        Or,
        StringField,
    )

    kind = rng.randrange(7 if depth < 3 else 3)
    if kind == 0:
        return HasFlag(rng.choice(SEARCH_FLAGS + ["\\seen", "$work"]), rng.random() < 0.5)
    if kind == 1:
        day = date(2024, 3, rng.choice((9, 10, 11, 12)))
        return DateCompare(DateField.INTERNAL, rng.choice(list(DateOp)), day)
    if kind == 2:
        field = rng.choice([StringField.FROM, StringField.TO, StringField.SUBJECT])
        return Contains(field, rng.choice(SEARCH_NEEDLES))
    if kind == 3:
        return Not(_search_key(rng, depth + 1))
    if kind == 4:
        return Or(_search_key(rng, depth + 1), _search_key(rng, depth + 1))
    return And(tuple(_search_key(rng, depth + 1) for _ in range(rng.randrange(1, 4))))


def test_searches_from_the_mirror_answer_as_the_scan_does(
    upstream: Dovecot, tmp_path: Path
) -> None:
    """The mirror keeps UIDs by flag and by day and the folded address and subject texts
    (kit.flagsets, kit.fieldtexts): SEARCH of those answers from them exactly as the
    engine's scan of the same messages, after STOREs and an expunge made here and flag
    changes and an expunge made by another client of the upstream."""
    import imaplib
    import random

    from mailserv.interfaces import StoreMode
    from mailserv.search import SearchProgram
    from mailserv.search.evaluate import SearchContext, evaluate
    from mailserv.testing import resolve

    rng = random.Random(7)
    with selected_inbox(upstream, tmp_path, 0) as (_, box):
        for n in range(40):
            head = b"".join(
                b"%s: %s\r\n" % (name, rng.choice(SEARCH_NAMES).encode())
                for name in (b"From", b"To")
                if rng.random() < 0.8
            )
            subject = rng.choice(SEARCH_SUBJECTS).encode()
            offset = timezone(timedelta(hours=rng.choice((-5, 0, 9))))
            when = datetime(2024, 3, rng.choice((10, 11)), rng.choice((0, 12, 23)), tzinfo=offset)
            flags = frozenset(rng.sample(SEARCH_FLAGS, rng.randrange(3)))
            body = b"Subject: " + subject + b"\r\n\r\nbody %d\r\n" % n
            resolve(box.append(head + body, flags, when, None))
        uids = list(resolve(box.uids()))
        resolve(box.store(uids[::5], StoreMode.REPLACE, frozenset({"\\Deleted"}), None))
        resolve(box.expunge(None, None))
        resolve(box.store(uids[1::3], StoreMode.ADD, frozenset({"$Work", "\\Seen"}), None))
        other = imaplib.IMAP4(upstream.host, upstream.imap_port)
        other.login("alice*gateway", "master-secret")
        other.select("INBOX")
        other.uid("STORE", f"{uids[2]},{uids[3]}", "-FLAGS", "(\\Seen $Work)")
        other.uid("STORE", f"{uids[4]},{uids[6]}", "+FLAGS", "(\\Flagged \\Deleted)")
        other.expunge()
        listed = other.uid("SEARCH", "ALL")[1][0]
        other.logout()
        resolve(box.refresh())
        settle()
        uids = list(resolve(box.uids()))
        assert uids == [int(uid) for uid in listed.split()]  # both expunges reached the mirror
        metas = resolve(box.fetch(uids))  # every message parsed: the field texts are known
        assert not box.mirror.unparsed
        view = uids[1:-1]
        for _ in range(300):
            program = SearchProgram(_search_key(rng))
            found = resolve(box.search(program, view))
            context = SearchContext(view, frozenset(), box.content)
            scanned = resolve(evaluate(program, metas[1:-1], context))
            assert found == scanned, program


def test_stores_of_many_sessions_go_upstream_together(
    upstream: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STOREs waiting for the mailbox's upstream connection are sent together: each is
    answered with its own changes and reported with its own origin, and a STORE of a
    message another STORE of the batch changes waits for the next batch, so the later of
    the two wins."""
    from mailserv.backends.proxy.client import UpstreamProtocol
    from mailserv.interfaces import StoreMode
    from mailserv.testing import Recorder, resolve

    sent: list[int] = []
    pipeline = UpstreamProtocol.pipeline

    async def counted(conn: UpstreamProtocol, commands: Any) -> Any:
        sent.append(len(commands))
        return await pipeline(conn, commands)

    monkeypatch.setattr(UpstreamProtocol, "pipeline", counted)
    with selected_inbox(upstream, tmp_path, 4) as (_, box):
        listener = Recorder()
        box.add_listener(listener)
        one, two, three, _ = resolve(box.uids())
        a, b, c = object(), object(), object()
        flagged, seen, job = (frozenset({flag}) for flag in ("\\Flagged", "\\Seen", "$Job"))
        stores = [  # the first goes at once; the others wait for it
            ([three], StoreMode.ADD, job, c),
            ([one], StoreMode.ADD, flagged, a),
            ([two], StoreMode.ADD, seen, b),
            ([one], StoreMode.REMOVE, flagged, c),  # meets the first of the batch: after it
        ]
        waiting = [Deferred.fromCoroutine(box.store(*store)) for store in stores]
        results = [resolve(d) for d in waiting]
        assert sent == [1, 2, 1]
        assert [[(ch.uid, set(ch.flags)) for ch in r.changed] for r in results] == [
            [(three, {"$Job"})],
            [(one, {"\\Flagged"})],
            [(two, {"\\Seen"})],
            [(one, set())],
        ]
        told = [
            (o, [ch.uid for ch in changes])
            for kind, changes, o in listener.events
            if kind == "flags"
        ]
        assert told[-4:] == [(c, [three]), (a, [one]), (b, [two]), (c, [one])]
        assert [set(m.flags) for m in resolve(box.fetch([one, two, three]))] == [
            set(),
            {"\\Seen"},
            {"$Job"},
        ]
        box.remove_listener(listener)


def test_a_search_upstream_holds_up_no_store(
    upstream: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search the upstream answers (BODY) runs on a pooled connection that has the
    mailbox EXAMINEd, not on the mailbox's own connection: while its answer is held back
    (the connection's reading paused), another session's STORE completes."""
    from mailserv.backends.proxy.client import UpstreamProtocol
    from mailserv.interfaces import StoreMode
    from mailserv.search import Contains, SearchProgram, StringField
    from mailserv.testing import resolve

    held: list[UpstreamProtocol] = []
    command = UpstreamProtocol.command

    async def holding(conn: UpstreamProtocol, *args: Any, **kwargs: Any) -> Any:
        if args and args[0] == b"UID SEARCH":
            conn.transport.pauseProducing()  # type: ignore[union-attr]
            held.append(conn)
        return await command(conn, *args, **kwargs)

    monkeypatch.setattr(UpstreamProtocol, "command", holding)
    with selected_inbox(upstream, tmp_path, 3) as (_, box):
        uids = list(resolve(box.uids()))
        program = SearchProgram(Contains(StringField.BODY, "note"))
        searching = Deferred.fromCoroutine(box.search(program, uids))
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            settle(0.01)
        assert held and not searching.called
        stored = Deferred.fromCoroutine(
            box.store([uids[0]], StoreMode.ADD, frozenset({"\\Flagged"}), None)
        )
        while not stored.called and time.monotonic() < deadline:
            settle(0.01)
        assert stored.called and not searching.called
        held[0].transport.resumeProducing()  # type: ignore[union-attr]
        assert resolve(searching) == uids
        assert [set(m.flags) for m in resolve(box.fetch(uids[:1]))] == [{"\\Flagged"}]


def test_a_search_upstream_with_every_connection_taken_uses_the_channel(
    upstream: Dovecot, tmp_path: Path
) -> None:
    """With ``connections=2`` and two mailboxes selected, every upstream connection of the
    user is some mailbox's channel: a search the upstream answers goes on the mailbox's own
    rather than waiting for a pooled one (which would fail after the timeout)."""
    from mailserv.search import Contains, SearchProgram, StringField
    from mailserv.testing import Recorder, resolve

    with selected_inbox(upstream, tmp_path, 3, connections="2", timeout="4") as (account, box):
        resolve(account.create("Other"))
        other = resolve(account.open("Other"))
        listener = Recorder()
        other.add_listener(listener)
        resolve(other.status())  # selected upstream: the second connection is its channel
        assert not box.user.pool.available
        uids = list(resolve(box.uids()))
        started = time.monotonic()
        program = SearchProgram(Contains(StringField.BODY, "note"))
        assert resolve(box.search(program, uids)) == uids
        assert time.monotonic() - started < 2
        other.remove_listener(listener)
