"""twisted.cred pieces: UserStoreChecker, MailRealm, build_portal."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from twisted.cred.checkers import ICredentialsChecker, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import Interface, implementer
from zope.interface.verify import verifyObject

from mailserv.auth.passwd import PasswdFile
from mailserv.auth.portal import build_portal
from mailserv.auth.realm import MailRealm
from mailserv.auth.schemes import hash_password
from mailserv.auth.users import IUserAdmin, IUserStore, UserStoreChecker
from mailserv.interfaces import IAccount, IBackend

FAST = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def inline(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Stands in for deferToThread: runs at once, so results are synchronous."""
    return defer.maybeDeferred(f, *args)


class FakeAccount:
    """Only what the realm touches: close()."""

    def __init__(self, user: str, close_result: Callable[[], object] = lambda: None) -> None:
        self.user = user
        self.closed = 0
        self._close_result = close_result

    def close(self) -> object:
        self.closed += 1
        return self._close_result()


@implementer(IBackend)
class FakeBackend:
    """A trivial backend whose account() answers as a coroutine or a Deferred (the contract's
    two awaitable styles), or fails."""

    def __init__(self, style: str = "coroutine", checker: object = None) -> None:
        self.style = style
        self.checker = checker
        self.accounts: list[FakeAccount] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def account(self, username: str) -> Any:
        account = FakeAccount(username)
        self.accounts.append(account)
        if self.style == "deferred":
            return defer.succeed(account)
        if self.style == "coroutine":

            async def later() -> FakeAccount:
                return account

            return later()
        assert self.style == "error", self.style
        raise RuntimeError("backend down")

    def credentials_checker(self) -> object:
        return self.checker


def fake(account: object) -> FakeAccount:
    assert isinstance(account, FakeAccount)
    return account


def temp_dir(case: SynchronousTestCase) -> Path:
    """A private directory removed after the test (trial's mktemp would write under cwd)."""
    path = tempfile.mkdtemp(prefix="mailserv-auth-")
    case.addCleanup(shutil.rmtree, path, True)
    return Path(path)


def make_passwd(tmp: Path) -> PasswdFile:
    passwd = PasswdFile(tmp / "passwd")
    passwd.add_user("alice", hash_password(b"wonderland", hasher=FAST))
    passwd.add_user("Jürgen", "{PLAIN}straße")
    return passwd


class CheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        tmp = temp_dir(self)
        self.passwd = make_passwd(tmp)
        self.checker = UserStoreChecker(self.passwd, in_thread=inline)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))
        self.assertTrue(verifyObject(IUserStore, self.passwd))
        self.assertTrue(verifyObject(IUserAdmin, self.passwd))

    def test_good_password_gives_text_avatar_id(self) -> None:
        for username in (b"alice", "alice"):
            creds = UsernamePassword(username, b"wonderland")  # type: ignore[arg-type]
            d = self.checker.requestAvatarId(creds)
            result = self.successResultOf(d)
            self.assertEqual(result, "alice")
            self.assertIsInstance(result, str)

    def test_utf8_username_and_str_password(self) -> None:
        creds = UsernamePassword("Jürgen".encode(), "straße")  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(self.checker.requestAvatarId(creds)), "Jürgen")

    def test_failures(self) -> None:
        for username, password in [
            (b"alice", b"wrong"),
            (b"alice", b""),
            (b"nobody", b"wonderland"),
            (b"\xff\xfe", b"x"),
            (b"a:b", b"x"),
            (b"", b""),
        ]:
            d = self.checker.requestAvatarId(UsernamePassword(username, password))
            self.failureResultOf(d, UnauthorizedLogin)

    def test_empty_stored_password_never_matches(self) -> None:
        Path(self.passwd.path).write_text("empty:\nempty2::::::\n")
        for user in (b"empty", b"empty2"):
            d = self.checker.requestAvatarId(UsernamePassword(user, b""))
            self.failureResultOf(d, UnauthorizedLogin)

    def test_unknown_user_still_verifies_a_hash(self) -> None:
        calls: list[str] = []

        def spy(f: Callable[..., Any], stored: str, password: bytes) -> Deferred[Any]:
            calls.append(stored)
            return defer.succeed(True)  # even a "match" must not log in an unknown user

        checker = UserStoreChecker(self.passwd, in_thread=spy)
        d = checker.requestAvatarId(UsernamePassword(b"ghost", b"x"))
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(len(calls), 1)
        self.assertTrue(calls[0].startswith("{ARGON2ID}"))

    def test_new_user_seen_without_restart(self) -> None:
        other = PasswdFile(self.passwd.path)
        other.add_user("newbie", "{PLAIN}fresh")
        d = self.checker.requestAvatarId(UsernamePassword(b"newbie", b"fresh"))
        self.assertEqual(self.successResultOf(d), "newbie")


class ThreadedCheckerTests(TestCase):
    """The default runner really goes through the reactor's thread pool."""

    def test_default_runs_in_thread(self) -> Deferred[None]:
        tmp = temp_dir(self)
        checker = UserStoreChecker(make_passwd(tmp))

        async def run() -> None:
            self.assertEqual(
                await checker.requestAvatarId(UsernamePassword(b"alice", b"wonderland")), "alice"
            )
            try:
                await checker.requestAvatarId(UsernamePassword(b"alice", b"bad"))
            except UnauthorizedLogin:
                return
            self.fail("bad password accepted")

        return Deferred.fromCoroutine(run())


class RealmTests(SynchronousTestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IRealm, MailRealm(FakeBackend())))

    def test_every_account_style(self) -> None:
        for style in ("deferred", "coroutine"):
            backend = FakeBackend(style)
            d = MailRealm(backend).requestAvatar("alice", None, IAccount)
            iface, avatar, logout = self.successResultOf(d)
            account = fake(avatar)
            self.assertIs(iface, IAccount)
            self.assertIs(account, backend.accounts[0])
            self.assertEqual(account.user, "alice")
            logout()
            logout()  # idempotent
            self.assertEqual(account.closed, 1)

    def test_bytes_avatar_id(self) -> None:
        backend = FakeBackend()
        d = MailRealm(backend).requestAvatar("Jürgen".encode(), None, Interface, IAccount)
        self.assertEqual(fake(self.successResultOf(d)[1]).user, "Jürgen")

    def test_other_interfaces_refused(self) -> None:
        d = MailRealm(FakeBackend()).requestAvatar("alice", None, Interface)
        self.failureResultOf(d, NotImplementedError)

    def test_backend_error_propagates(self) -> None:
        d = MailRealm(FakeBackend("error")).requestAvatar("alice", None, IAccount)
        self.failureResultOf(d, RuntimeError)

    def test_async_close_failure_is_logged_not_raised(self) -> None:
        backend = FakeBackend()
        _, avatar, logout = self.successResultOf(
            MailRealm(backend).requestAvatar("alice", None, IAccount)
        )
        account = fake(avatar)

        async def broken() -> None:
            raise OSError("disk gone")

        account._close_result = broken
        logout()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class PortalTests(SynchronousTestCase):
    def setUp(self) -> None:
        tmp = temp_dir(self)
        self.checker = UserStoreChecker(make_passwd(tmp), in_thread=inline)

    def test_login_through_portal(self) -> None:
        backend = FakeBackend("coroutine")
        portal = build_portal(backend, self.checker)
        self.assertIsInstance(portal, Portal)
        d = portal.login(UsernamePassword(b"alice", b"wonderland"), None, IAccount)
        _iface, avatar, logout = self.successResultOf(d)
        account = fake(avatar)
        self.assertEqual(account.user, "alice")
        logout()
        self.assertEqual(account.closed, 1)
        d = portal.login(UsernamePassword(b"alice", b"nope"), None, IAccount)
        self.failureResultOf(d, UnauthorizedLogin)

    def test_backend_checker_wins(self) -> None:
        own = InMemoryUsernamePasswordDatabaseDontUse(bob=b"builder")
        portal = build_portal(FakeBackend(checker=own), self.checker)
        d = portal.login(UsernamePassword(b"bob", b"builder"), None, IAccount)
        self.assertEqual(fake(self.successResultOf(d)[1]).user, "bob")  # bytes id decoded
        d = portal.login(UsernamePassword(b"alice", b"wonderland"), None, IAccount)
        self.failureResultOf(d, UnauthorizedLogin)

    def test_backend_checker_from_fired_deferred(self) -> None:
        own = InMemoryUsernamePasswordDatabaseDontUse(bob=b"builder")
        portal = build_portal(FakeBackend(checker=defer.succeed(own)), None)
        d = portal.login(UsernamePassword(b"bob", b"builder"), None, IAccount)
        self.assertEqual(fake(self.successResultOf(d)[1]).user, "bob")

    def test_no_checker_at_all(self) -> None:
        with self.assertRaises(ValueError):
            build_portal(FakeBackend(), None)

    def test_not_a_checker(self) -> None:
        with self.assertRaises(TypeError):
            build_portal(FakeBackend(checker=object()), None)
        with self.assertRaises(TypeError):
            build_portal(FakeBackend(checker=Deferred()), None)
