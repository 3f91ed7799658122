"""The memory of recently verified passwords: hits, misses, expiry, bounds, and the checkers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.defer import Deferred

from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import verify_password
from mailserv.auth.users import UserStoreChecker
from mailserv.auth.verified import VerifiedCache, user_and_password


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_remembered_password_is_verified_until_it_expires() -> None:
    clock = Clock()
    cache = VerifiedCache(ttl=60, clock=clock)
    assert not cache.verified("{PLAIN}a", b"a")
    cache.remember("{PLAIN}a", b"a")
    assert cache.verified("{PLAIN}a", b"a")
    assert not cache.verified("{PLAIN}a", b"b")  # another password
    assert not cache.verified("{PLAIN}b", b"a")  # the stored hash changed
    clock.now += 61
    assert not cache.verified("{PLAIN}a", b"a")


def test_size_is_bounded_and_zero_ttl_disables() -> None:
    cache = VerifiedCache(size=2)
    for word in (b"1", b"2", b"3"):
        cache.remember("h", word)
    assert not cache.verified("h", b"1")
    assert cache.verified("h", b"2") and cache.verified("h", b"3")
    off = VerifiedCache(ttl=0)
    off.remember("h", b"1")
    assert not off.verified("h", b"1")


def test_the_cache_keeps_no_password() -> None:
    cache = VerifiedCache()
    cache.remember("h", b"secret-password")
    assert b"secret-password" not in repr(vars(cache)).encode()


@pytest.mark.parametrize(
    ("user", "password"), [(b"\xff", b"x"), (None, b"x"), (b"a", 5)], ids=["utf8", "none", "int"]
)
def test_malformed_credentials_are_refused(user: object, password: object) -> None:
    with pytest.raises(UnauthorizedLogin):
        user_and_password(UsernamePassword(user, password))  # type: ignore[arg-type]


def test_checker_verifies_a_reconnecting_client_once(tmp_path: Path) -> None:
    passwd = PasswdFile(tmp_path / "passwd")
    passwd.add_user("alice", "{PLAIN}first")
    calls: list[str] = []

    def counting(f: Callable[..., Any], stored: str, password: bytes) -> Deferred[Any]:
        calls.append(stored)
        return defer.maybeDeferred(verify_password, stored, password)

    checker = UserStoreChecker(passwd, in_thread=counting)

    def login(password: bytes) -> object:
        d = checker.requestAvatarId(UsernamePassword(b"alice", password))
        results: list[object] = []
        d.addBoth(results.append)
        return results[0]

    assert login(b"first") == "alice"
    assert login(b"first") == "alice"
    assert len(calls) == 1
    for _ in range(2):  # failures are never remembered: each one pays
        assert not isinstance(login(b"wrong"), str)
    assert len(calls) == 3
    PasswdFile(passwd.path).set_password("alice", "{PLAIN}second")
    assert not isinstance(login(b"first"), str)  # the old password stops working at once
    assert login(b"second") == "alice"
