"""App passwords: per-device passwords a user signs in with over IMAP, each revocable alone.

``mailserv app-password add USER --label phone`` prints a generated password once; only its
argon2id hash is kept.  The password is five groups of four characters from an alphabet
without look-alikes (no 0, 1, i, l, o): ``7kqm-4xhp-ua2c-93fd-rrte``.  The first group is
the password's **id**: it is stored in clear beside the hash and selects the one hash to
verify, so a user with many app passwords still costs one argon2 run per login.  The other
sixteen characters are the secret (31^16, about 79 bits).  Case, spaces and dashes do not
matter when it is typed.

A user may be set to sign in over IMAP with app passwords (or OAuth) only
(``mailserv user set USER --imap-login app-passwords``), for accounts whose main password is
guarded by two-factor sign-in elsewhere: the main password then gets the same NO as a wrong
one (and costs the same time), and the log says why.

Where they are kept, beside each user store:

- passwd-file users: ``app-passwords`` in the same directory, one line each
  (:class:`AppPasswordFile`), edited atomically under a lock, re-read by the server when it
  changes.  Lines: ``app:USER:ID:CREATED:LAST-USED:{SCHEME}hash:LABEL`` and
  ``imap-login:USER:MODE``.
- SQL users (``auth=sql``): the ``app_passwords`` table and ``users.imap_login``
  (schema version 9; :class:`SqlAppPasswords`, :class:`SqlAppPasswordStore`).

Revocation: each server process (each worker of ``--workers N``) re-reads the store every
:data:`REVOCATION_POLL` seconds while sessions signed in with an app password are open
(:class:`RevocationWatch`: a ``stat`` of the file, or one query), and says BYE to those whose
app password is gone.  No message between processes is needed, and a revocation made while
the server is down holds too.

Last use is written at most once per :data:`USE_INTERVAL` per app password and process, off
the reactor, so a storm of reconnecting clients writes almost nothing.
"""

from __future__ import annotations

import os
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any, Protocol

from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from mailserv.auth.passwd import PasswdError, UserNotFound, check_username, rewrite_locked
from mailserv.auth.sqlusers import Inline, Run, Tx
from mailserv.auth.users import IScramCensus, IUserStore, UserStoreChecker
from mailserv.auth.verified import ThreadRunner, VerifiedCache, user_and_password

_log = Logger()

ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
"""31 characters, none mistaken for another when read off a screen."""
GROUP = 4
GROUPS = 5
"""The first group is the id, the others the secret."""
FILE_NAME = "app-passwords"
MAX_LABEL = 64
MAX_PER_USER = 100
USE_INTERVAL = 60.0
"""Seconds between two writes of one app password's last use, per process."""
REVOCATION_POLL = 1.0
"""Seconds between two looks at the store for revoked app passwords in use."""

IMAP_LOGIN_ANY = "any"
IMAP_LOGIN_APP_PASSWORDS = "app-passwords"
IMAP_LOGIN_MODES = (IMAP_LOGIN_ANY, IMAP_LOGIN_APP_PASSWORDS)

Key = tuple[str, str]
"""(user, id) of one app password."""


class AppPasswordError(PasswdError):
    """An app-password edit was refused; the text says why."""


@dataclass(frozen=True, slots=True)
class AppPassword:
    user: str
    id: str
    label: str
    hashed: str
    """``{SCHEME}hash`` of the canonical password (lower case, no dashes)."""
    created: int
    last_used: int = 0
    """Unix time of the last login with it, 0 never (lags by up to USE_INTERVAL)."""


# -- the password itself ------------------------------------------------------------------


def generate() -> tuple[str, str]:
    """A new (id, password as shown): ``GROUPS`` dash-separated groups of ``GROUP``."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUP * GROUPS))
    groups = [chars[i : i + GROUP] for i in range(0, len(chars), GROUP)]
    return groups[0], "-".join(groups)


def split_app_password(password: bytes) -> tuple[str, bytes] | None:
    """(id, canonical octets to verify) when ``password`` has an app password's form, else
    None.  Dashes, spaces and case are ignored."""
    if len(password) > 2 * GROUP * GROUPS:
        return None
    try:
        text = password.decode("ascii")
    except UnicodeDecodeError:
        return None
    canonical = text.replace("-", "").replace(" ", "").lower()
    if len(canonical) != GROUP * GROUPS or not all(c in ALPHABET for c in canonical):
        return None
    return canonical[:GROUP], canonical.encode("ascii")


def check_label(label: str) -> None:
    if not label or len(label) > MAX_LABEL:
        raise AppPasswordError(f"the label must be 1 to {MAX_LABEL} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in label) or label != label.strip():
        raise AppPasswordError("the label holds a control character or surrounding spaces")
    if split_app_password(label.encode("utf-8")) is not None or _is_id(label):
        raise AppPasswordError("the label looks like an app password or its id")


def _is_id(text: str) -> bool:
    return len(text) == GROUP and all(c in ALPHABET for c in text)


def check_mode(mode: str) -> None:
    if mode not in IMAP_LOGIN_MODES:
        raise AppPasswordError(f"imap-login must be one of {', '.join(IMAP_LOGIN_MODES)}")


def choose(records: Iterable[AppPassword], id_or_label: str) -> AppPassword:
    """The one record ``id_or_label`` names (an id first), or AppPasswordError."""
    records = list(records)
    for wanted in (lambda r: r.id == id_or_label, lambda r: r.label == id_or_label):
        found = [r for r in records if wanted(r)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise AppPasswordError(f"{len(found)} app passwords are labelled {id_or_label!r}")
    raise AppPasswordError(f"no app password {id_or_label!r}")


def new_record(
    user: str, label: str, existing: Collection[AppPassword], hashed: Any
) -> tuple[AppPassword, str]:
    """A record for ``user`` with an id unlike the ids of ``existing`` and its password as
    shown; ``hashed(canonical octets)`` makes the stored value."""
    check_username(user)
    check_label(label)
    if len(existing) >= MAX_PER_USER:
        raise AppPasswordError(f"{user} has {MAX_PER_USER} app passwords: revoke one first")
    taken = {r.id for r in existing}
    while True:
        key_id, shown = generate()
        if key_id not in taken:
            break
    parsed = split_app_password(shown.encode("ascii"))
    assert parsed is not None
    record = AppPassword(user, key_id, label, hashed(parsed[1]), int(time.time()))
    return record, shown


# -- what the server reads, what the CLI edits ----------------------------------------


class IAppPasswords(Interface):
    """The app passwords as the server reads them (awaited)."""

    def find(user: str, key_id: str) -> Awaitable[AppPassword | None]:
        """The live app password ``key_id`` of ``user``, or None."""

    def app_only(user: str) -> Awaitable[bool]:
        """True when ``user`` may sign in over IMAP with app passwords (or OAuth) only."""

    def live(keys: Collection[Key]) -> Awaitable[set[Key]]:
        """Those of ``keys`` not revoked."""

    def note_used(key: Key, when: int) -> Awaitable[None]:
        """Record a login with ``key`` at ``when`` (Unix time; never moved back)."""


class IAppPasswordAdmin(Interface):
    """The same, edited by ``mailserv app-password`` and ``mailserv user set`` (synchronous)."""

    def listing(user: str) -> list[AppPassword]:
        """The app passwords of ``user``, oldest first."""

    def add(user: str, label: str, hashed: Callable[[bytes], str]) -> tuple[AppPassword, str]:
        """A new app password and its text as shown (once)."""

    def revoke(user: str, id_or_label: str) -> AppPassword:
        """Remove the app password named; AppPasswordError if none or ambiguous."""

    def imap_login(user: str) -> str:
        """One of IMAP_LOGIN_MODES."""

    def set_imap_login(user: str, mode: str) -> None:
        """Set ``user``'s mode (the user must exist in the user store)."""

    def put(record: AppPassword) -> bool:
        """Keep ``record`` as it is (``mailserv restore``) unless its user has an app
        password with its id; True when it was added."""


# -- beside a passwd-file ---------------------------------------------------------------


def _parse(data: bytes, path: str) -> tuple[dict[Key, AppPassword], set[str]]:
    records: dict[Key, AppPassword] = {}
    app_only: set[str] = set()
    for number, raw in enumerate(data.splitlines(), 1):
        line = raw.decode("utf-8", "replace")
        if not line.strip() or line.startswith("#"):
            continue
        kind, _, rest = line.partition(":")
        try:
            if kind == "app":
                user, key_id, created, used, hashed, label = rest.split(":", 5)
                records[user, key_id] = AppPassword(
                    user, key_id, label, hashed, int(created), int(used or 0)
                )
            elif kind == "imap-login":
                user, mode = rest.split(":", 1)
                if mode == IMAP_LOGIN_APP_PASSWORDS:
                    app_only.add(user)
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except ValueError as exc:
            _log.warn("{path} line {number} ignored: {error}", path=path, number=number, error=exc)
    return records, app_only


def _app_line(record: AppPassword) -> bytes:
    r = record
    return f"app:{r.user}:{r.id}:{r.created}:{r.last_used}:{r.hashed}:{r.label}\n".encode()


def _line_key(line: bytes) -> tuple[bytes, ...]:
    """(kind, user[, id]) of a line, to find it again when editing."""
    parts = line.rstrip(b"\r\n").split(b":", 3)
    return tuple(parts[:3]) if parts[0] == b"app" else tuple(parts[:2])


def _key_of(user: str, key_id: str | None = None) -> tuple[bytes, ...]:
    if key_id is None:
        return (b"imap-login", user.encode())
    return (b"app", user.encode(), key_id.encode())


@implementer(IAppPasswords, IAppPasswordAdmin)
class AppPasswordFile:
    """``app-passwords`` beside the passwd-file; read again whenever it changes on disk."""

    def __init__(self, path: str | os.PathLike[str], in_thread: ThreadRunner | None = None) -> None:
        self.path = os.fspath(path)
        self._in_thread: ThreadRunner = in_thread or threads.deferToThread
        self._signature: tuple[int, int, int, int] | None = None
        self._records: dict[Key, AppPassword] = {}
        self._app_only: set[str] = set()

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._signature is not None:  # else keep the empty ones (caches keyed on them)
                self._signature, self._records, self._app_only = None, {}, set()
            return
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature:
            return
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            _log.warn("{path} cannot be read ({error})", path=self.path, error=exc)
            return  # keep what was read before
        self._records, self._app_only = _parse(data, self.path)
        self._signature = signature

    def current(self) -> tuple[Mapping[Key, AppPassword], AbstractSet[str]]:
        """The app passwords and the app-only users as on disk now: new objects whenever
        the file changed, the same ones otherwise (for caches keyed on them)."""
        self._refresh()
        return self._records, self._app_only

    # IAppPasswords (a stat per call; the file is small and read only when it changed)

    async def find(self, user: str, key_id: str) -> AppPassword | None:
        self._refresh()
        return self._records.get((user, key_id))

    async def app_only(self, user: str) -> bool:
        self._refresh()
        return user in self._app_only

    async def live(self, keys: Collection[Key]) -> set[Key]:
        self._refresh()
        return {key for key in keys if key in self._records}

    async def note_used(self, key: Key, when: int) -> None:
        await self._in_thread(self._write_use, key, when)

    def _write_use(self, key: Key, when: int) -> None:
        wanted = _key_of(*key)

        def change(lines: list[bytes]) -> list[bytes]:
            out = []
            for line in lines:
                if _line_key(line) == wanted:
                    records, _ = _parse(line, self.path)
                    record = records.get(key)
                    if record is not None and record.last_used < when:
                        line = _app_line(replace(record, last_used=when))
                out.append(line)
            return out

        rewrite_locked(self.path, change)

    # IAppPasswordAdmin

    def listing(self, user: str) -> list[AppPassword]:
        self._refresh()
        found = [r for r in self._records.values() if r.user == user]
        return sorted(found, key=lambda r: (r.created, r.id))

    def add(self, user: str, label: str, hashed: Callable[[bytes], str]) -> tuple[AppPassword, str]:
        result: list[tuple[AppPassword, str]] = []

        def change(lines: list[bytes]) -> list[bytes]:
            records, _ = _parse(b"".join(lines), self.path)
            record, shown = new_record(
                user, label, [r for r in records.values() if r.user == user], hashed
            )
            result.append((record, shown))
            return [*_ended(lines), _app_line(record)]

        rewrite_locked(self.path, change)
        return result[0]

    def revoke(self, user: str, id_or_label: str) -> AppPassword:
        result: list[AppPassword] = []

        def change(lines: list[bytes]) -> list[bytes]:
            records, _ = _parse(b"".join(lines), self.path)
            record = choose((r for r in records.values() if r.user == user), id_or_label)
            result.append(record)
            gone = _key_of(user, record.id)
            return [line for line in lines if _line_key(line) != gone]

        rewrite_locked(self.path, change)
        return result[0]

    def put(self, record: AppPassword) -> bool:
        check_username(record.user)
        added: list[bool] = []

        def change(lines: list[bytes]) -> list[bytes]:
            records, _ = _parse(b"".join(lines), self.path)
            added.append((record.user, record.id) not in records)
            return [*_ended(lines), _app_line(record)] if added[0] else lines

        rewrite_locked(self.path, change)
        return added[0]

    def imap_login(self, user: str) -> str:
        self._refresh()
        return IMAP_LOGIN_APP_PASSWORDS if user in self._app_only else IMAP_LOGIN_ANY

    def set_imap_login(self, user: str, mode: str) -> None:
        check_username(user)
        check_mode(mode)
        wanted = _key_of(user)

        def change(lines: list[bytes]) -> list[bytes]:
            kept = [line for line in lines if _line_key(line) != wanted]
            if mode == IMAP_LOGIN_ANY:
                return kept
            return [*_ended(kept), f"imap-login:{user}:{mode}\n".encode()]

        rewrite_locked(self.path, change)

    def remove_user(self, user: str) -> None:
        """Forget every app password and the setting of ``user`` (the user is deleted)."""
        name = user.encode()

        def change(lines: list[bytes]) -> list[bytes]:
            return [line for line in lines if (_line_key(line) + (b"",))[1] != name]

        if os.path.exists(self.path):
            rewrite_locked(self.path, change)


def _ended(lines: list[bytes]) -> list[bytes]:
    if lines and not lines[-1].endswith(b"\n"):
        return [*lines[:-1], lines[-1] + b"\n"]
    return lines


# -- in the SQL database (transaction functions, then the two stores) ---------------------

_COLUMNS = "name, id, label, password, created, last_used"


def _record(row: Any) -> AppPassword:
    name, key_id, label, password, created, last_used = row
    return AppPassword(
        str(name), str(key_id), str(label), str(password), int(created), int(last_used)
    )


def app_passwords_of(tx: Tx, user: str) -> list[AppPassword]:
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM app_passwords WHERE name = ? ORDER BY created, id", (user,)
    )
    return [_record(row) for row in rows]


def find_app_password(tx: Tx, user: str, key_id: str) -> AppPassword | None:
    rows = tx.all(f"SELECT {_COLUMNS} FROM app_passwords WHERE name = ? AND id = ?", (user, key_id))
    return _record(rows[0]) if rows else None


def insert_app_password(
    tx: Tx, user: str, label: str, hashed: Callable[[bytes], str]
) -> tuple[AppPassword, str]:
    if tx.scalar("SELECT count(*) FROM users WHERE name = ?", (user,)) == 0:
        raise UserNotFound(f"no user {user!r}")
    record, shown = new_record(user, label, app_passwords_of(tx, user), hashed)
    tx.execute(
        f"INSERT INTO app_passwords ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (user, record.id, label, record.hashed, record.created, 0),
    )
    return record, shown


def delete_app_password(tx: Tx, user: str, id_or_label: str) -> AppPassword:
    record = choose(app_passwords_of(tx, user), id_or_label)
    tx.execute("DELETE FROM app_passwords WHERE name = ? AND id = ?", (user, record.id))
    return record


def put_app_password(tx: Tx, record: AppPassword) -> bool:
    if tx.scalar("SELECT count(*) FROM users WHERE name = ?", (record.user,)) == 0:
        raise UserNotFound(f"no user {record.user!r}")
    if find_app_password(tx, record.user, record.id) is not None:
        return False
    r = record
    tx.execute(
        f"INSERT INTO app_passwords ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (r.user, r.id, r.label, r.hashed, r.created, r.last_used),
    )
    return True


def imap_login_of(tx: Tx, user: str) -> str:
    mode = tx.scalar("SELECT imap_login FROM users WHERE name = ?", (user,))
    return str(mode) if mode else IMAP_LOGIN_ANY


def update_imap_login(tx: Tx, user: str, mode: str) -> None:
    if tx.scalar("SELECT count(*) FROM users WHERE name = ?", (user,)) == 0:
        raise UserNotFound(f"no user {user!r}")
    stored = None if mode == IMAP_LOGIN_ANY else mode
    tx.execute("UPDATE users SET imap_login = ? WHERE name = ?", (stored, user))


_LIVE_BATCH = 200


def live_keys(tx: Tx, keys: list[Key]) -> set[Key]:
    found: set[Key] = set()
    for start in range(0, len(keys), _LIVE_BATCH):
        batch = keys[start : start + _LIVE_BATCH]
        ids = sorted({key_id for _, key_id in batch})
        marks = ", ".join("?" * len(ids))
        rows = tx.all(f"SELECT name, id FROM app_passwords WHERE id IN ({marks})", ids)
        found.update((str(name), str(key_id)) for name, key_id in rows)
    return found & set(keys)


def touch_app_password(tx: Tx, key: Key, when: int) -> None:
    tx.execute(
        "UPDATE app_passwords SET last_used = ? WHERE name = ? AND id = ? AND last_used < ?",
        (when, key[0], key[1], when),
    )


@implementer(IAppPasswordAdmin)
class SqlAppPasswords:
    """The app passwords of the SQL users, edited synchronously (one transaction a call)."""

    def __init__(self, database: Inline) -> None:
        self.database = database

    def listing(self, user: str) -> list[AppPassword]:
        return self.database.call(app_passwords_of, user)

    def add(self, user: str, label: str, hashed: Callable[[bytes], str]) -> tuple[AppPassword, str]:
        return self.database.call(insert_app_password, user, label, hashed, write=True)

    def revoke(self, user: str, id_or_label: str) -> AppPassword:
        return self.database.call(delete_app_password, user, id_or_label, write=True)

    def imap_login(self, user: str) -> str:
        return self.database.call(imap_login_of, user)

    def set_imap_login(self, user: str, mode: str) -> None:
        check_username(user)
        check_mode(mode)
        self.database.call(update_imap_login, user, mode, write=True)

    def put(self, record: AppPassword) -> bool:
        check_username(record.user)
        return self.database.call(put_app_password, record, write=True)


@implementer(IAppPasswords)
class SqlAppPasswordStore:
    """The app passwords of the SQL users, read by the server (``run``: the database's)."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def find(self, user: str, key_id: str) -> AppPassword | None:
        found: AppPassword | None = await self._run(find_app_password, user, key_id)
        return found

    async def app_only(self, user: str) -> bool:
        mode: str = await self._run(imap_login_of, user)
        return mode == IMAP_LOGIN_APP_PASSWORDS

    async def live(self, keys: Collection[Key]) -> set[Key]:
        found: set[Key] = await self._run(live_keys, sorted(keys))
        return found

    async def note_used(self, key: Key, when: int) -> None:
        await self._run(touch_app_password, key, when, write=True)


# -- sessions held by an app password -------------------------------------------------


class Revocable(Protocol):
    """A session as the watch needs it."""

    @property
    def ended(self) -> bool: ...

    def shutdown(self, text: str) -> None:
        """BYE and close (at once, or when the running command ends)."""


class RevocationWatch:
    """The open sessions signed in with each app password; BYE when it is revoked.

    Polls ``store.live`` every ``interval`` seconds while it holds any session (stopped
    when none is left).
    """

    def __init__(self, store: IAppPasswords, clock: IReactorTime, interval: float) -> None:
        self.store = store
        self._held: dict[Key, weakref.WeakSet[Any]] = {}
        self._poll = LoopingCall(self._look)
        self._poll.clock = clock
        self._interval = interval

    def hold(self, key: Key, session: Revocable) -> None:
        self._held.setdefault(key, weakref.WeakSet()).add(session)
        if not self._poll.running:
            self._poll.start(self._interval, now=False).addErrback(self._poll_failed)

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._held.values())

    async def _check(self) -> None:
        for key in list(self._held):
            sessions = self._held[key]
            for session in list(sessions):
                if session.ended:
                    sessions.discard(session)
            if not sessions:
                del self._held[key]
        if not self._held:
            self._poll.stop()
            return
        asked = list(self._held)
        live = await self.store.live(asked)
        for key in set(asked) - live:  # a key held meanwhile was not asked about
            sessions = self._held.pop(key, weakref.WeakSet())
            _log.info(
                "App password {id} of {user} revoked: closing {count} session(s)",
                id=key[1],
                user=key[0],
                count=len(sessions),
            )
            for session in list(sessions):
                session.shutdown("App password revoked")

    def _look(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self._check())
        d.addErrback(self._look_failed)
        return d

    def _look_failed(self, failure: Failure) -> None:
        _log.failure("Looking for revoked app passwords failed (tried again)", failure)

    def _poll_failed(self, failure: Failure) -> None:
        _log.failure("The revoked app password watch stopped", failure)


@dataclass(frozen=True)
class AppPasswordUse:
    """Handed to the engine with the credentials of a login by app password: ``hold``
    makes revoking it end the session."""

    key: Key
    watch: RevocationWatch

    def hold(self, session: Revocable) -> None:
        self.watch.hold(self.key, session)


_USE_ATTRIBUTE = "mailserv_app_password"


def app_password_use(credentials: ICredentials) -> AppPasswordUse | None:
    """The app password a successful login used, if any (set by AppPasswordChecker)."""
    use = getattr(credentials, _USE_ATTRIBUTE, None)
    return use if isinstance(use, AppPasswordUse) else None


# -- the checker ----------------------------------------------------------------------


class AppPasswordChecker(UserStoreChecker):
    """UserStoreChecker that also takes ``user``'s live app passwords, and refuses the main
    password of users set to app passwords only (over IMAP; OAuth is another checker).

    One verification per login: a password of the app-password form whose id names one of
    the user's app passwords is verified against that hash only; any other password against
    the main one (or, for an app-only user, against nothing: a dummy run, the same NO).
    """

    def __init__(
        self,
        store: IUserStore,
        apps: IAppPasswords,
        clock: IReactorTime,
        in_thread: ThreadRunner | None = None,
        cache: VerifiedCache | None = None,
        poll: float = REVOCATION_POLL,
        census: IScramCensus | None = None,
    ) -> None:
        super().__init__(store, in_thread, cache, census)
        self.apps = apps
        self.clock = clock
        self.watch = RevocationWatch(apps, clock, poll)
        self._written: dict[Key, float] = {}

    def requestAvatarId(  # type: ignore[override]  # the avatar id is text, not bytes
        self, credentials: ICredentials
    ) -> Deferred[str]:
        return Deferred.fromCoroutine(self._sign_in(credentials))

    async def _sign_in(self, credentials: ICredentials) -> str:
        if not IUsernamePassword.providedBy(credentials):  # a proof of the main password
            user = str(getattr(credentials, "username", ""))
            if await self.apps.app_only(user):
                self._refused(user)
                raise UnauthorizedLogin("authentication failed")
            main: str = await super().requestAvatarId(credentials)  # type: ignore[arg-type]
            return main
        user, password = user_and_password(IUsernamePassword(credentials))
        parsed = split_app_password(password)
        if parsed is not None:
            record = await self.apps.find(user, parsed[0])
            if record is not None and await self.store.find(user) is not None:
                await self.cache.check(record.hashed, parsed[1], self._in_thread)
                self._used(record)
                setattr(credentials, _USE_ATTRIBUTE, AppPasswordUse((user, record.id), self.watch))
                return user
        if await self.apps.app_only(user):
            try:
                await self.cache.check(None, password, self._in_thread)  # costs the same
            finally:
                self._refused(user)
        checked: str = await super().requestAvatarId(credentials)  # type: ignore[arg-type]
        return checked

    def _refused(self, user: str) -> None:
        _log.info(
            "Main password of {user!r} refused: the user signs in over IMAP with app "
            "passwords only",
            user=user[:64],
        )

    def _used(self, record: AppPassword) -> None:
        """Note the use, at most once per USE_INTERVAL (this process) per app password."""
        key = (record.user, record.id)
        now = self.clock.seconds()
        last = self._written.get(key)
        if last is not None and now - last < USE_INTERVAL:
            return
        if len(self._written) > 10_000:
            self._written = {k: t for k, t in self._written.items() if now - t < USE_INTERVAL}
        self._written[key] = now
        Deferred.fromCoroutine(self._note_used(key, int(time.time())))

    async def _note_used(self, key: Key, when: int) -> None:
        try:
            await self.apps.note_used(key, when)
        except Exception:  # noqa: BLE001 - logged; the login stands
            _log.failure("Recording the use of app password {id} failed", id=key[1])
