"""Whether to offer AUTHENTICATE SCRAM-SHA-256(-PLUS) now (``--limit offer_scram``).

CAPABILITY is sent before the client names its user, and some clients (mbsync) pick SCRAM
whenever it is offered and never fall back to PLAIN.  So with ``offer_scram=auto`` SCRAM is
offered only while every user of the store could finish a SCRAM exchange:

- each user holds ``{SCRAM-SHA-256}`` keys, or is set to sign in over IMAP with app
  passwords or OAuth only (``--imap-login app-passwords``) and has no app password: such a
  user can only use OAuth, whose clients ask for OAUTHBEARER/XOAUTH2 by name;
- and no app password exists: app passwords are argon2id hashes, which SCRAM cannot check,
  so a device given one would fail if it picked SCRAM.

A store with no user offers nothing.  The census is cheap and current: for the passwd-file
and its ``app-passwords`` file it is computed again only when either file changed on disk
(the ``stat`` each lookup already does); for the SQL users table it is one query, its answer
kept :data:`SQL_CENSUS_TTL` seconds and asked again in the background when older.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from mailserv.auth.apppasswords import IMAP_LOGIN_APP_PASSWORDS, AppPasswordFile
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import SCRAM_SCHEME, parse_scram
from mailserv.auth.sqlusers import Run, Tx
from mailserv.auth.users import IScramCensus, IStoreChecker, IUserStore

if TYPE_CHECKING:
    from twisted.cred.portal import Portal

    from mailserv.imap.settings import OfferScram

_log = Logger()

SQL_CENSUS_TTL = 10.0
"""Seconds the SQL users table's answer is kept before it is asked again."""


def scram_key_store(portal: Portal, offer: OfferScram) -> IUserStore | None:
    """The user store SCRAM reads keys from when SCRAM is to be offered now, else None
    (``offer``: the ``offer_scram`` setting)."""
    if offer == "false":
        return None
    for found in portal.checkers.values():
        if IStoreChecker.providedBy(found):
            checker = IStoreChecker(found)
            if offer == "true" or checker.scram_for_all():
                store: IUserStore = checker.store
                return store
    return None


@implementer(IScramCensus)
class FileScramCensus:
    """The census of a passwd-file and its app-passwords file, computed again only when
    one of them changed on disk."""

    def __init__(self, passwd: PasswdFile, apps: AppPasswordFile) -> None:
        self._passwd = passwd
        self._apps = apps
        self._seen: tuple[object, object, object] | None = None
        self._answer = False

    def all_scram(self) -> bool:
        entries = self._passwd.current()
        records, app_only = self._apps.current()
        seen = (entries, records, app_only)
        if self._seen is None or any(a is not b for a, b in zip(seen, self._seen, strict=True)):
            self._answer = bool(entries) and not records
            if self._answer:
                self._answer = all(
                    e.user in app_only or parse_scram(e.password) is not None
                    for e in entries.values()
                )
            self._seen = seen
        return self._answer


def all_users_scram(tx: Tx) -> bool:
    """The census of the SQL users table and its app passwords, in one transaction."""
    if tx.scalar("SELECT 1 FROM users LIMIT 1") is None:
        return False
    if tx.scalar("SELECT 1 FROM app_passwords LIMIT 1") is not None:
        return False
    prefix = "{" + SCRAM_SCHEME + "}"
    blocking = tx.scalar(
        "SELECT 1 FROM users WHERE upper(substr(password, 1, ?)) <> ?"
        " AND (imap_login IS NULL OR imap_login <> ?) LIMIT 1",
        (len(prefix), prefix, IMAP_LOGIN_APP_PASSWORDS),
    )
    return blocking is None


@implementer(IScramCensus)
class SqlScramCensus:
    """The SQL census, asked in the background: :meth:`all_scram` answers at once with the
    last answer (False before the first) and starts a new query when it is older than
    ``ttl`` seconds (one at a time)."""

    def __init__(self, run: Run, clock: IReactorTime, ttl: float = SQL_CENSUS_TTL) -> None:
        self._run = run
        self._clock = clock
        self._ttl = ttl
        self._answer = False
        self._asked_at: float | None = None
        self._asking = False

    def all_scram(self) -> bool:
        now = self._clock.seconds()
        if not self._asking and (self._asked_at is None or now - self._asked_at >= self._ttl):
            self.refresh()
        return self._answer

    def refresh(self) -> Deferred[None]:
        """Ask the database now (fires when the answer is in)."""
        self._asking = True
        return Deferred.fromCoroutine(self._ask())

    async def _ask(self) -> None:
        try:
            answer: Any = await self._run(all_users_scram)
            self._answer = bool(answer)
        except Exception:  # noqa: BLE001 - logged; SCRAM is not offered meanwhile
            _log.failure("Asking the users table whether every user can do SCRAM failed")
            self._answer = False
        finally:
            self._asked_at = self._clock.seconds()
            self._asking = False
