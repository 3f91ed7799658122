"""``mailserv backup [--user USER] DEST``: a consistent, incremental copy of the mail store.

Layout of DEST::

    manifest.sqlite                 what the backup holds (the only index; see below)
    mail/<user>/<box>/<uidvalidity>/<uid>   each message, byte for byte, written once
    sieve/<user>/<name>.sieve, active       the user's Sieve scripts (DATA/sieve)
    .lock                           held while a backup or restore runs

``<user>`` is percent-encoded; ``<box>`` is the mailbox's MAILBOXID (RFC 8474) when the
backend keeps one, so a renamed folder keeps its files, else a hash of its name.

The manifest records, per mailbox, its name, special-use attributes, UIDVALIDITY and the
HIGHESTMODSEQ the copy is complete up to; per message its UID, flags and keywords,
internal date, modseq, size, SHA-256 and Message-ID; per user the folders (``\\Noselect``
parents too) and subscriptions.  A later run asks each mailbox for its changes since that
modseq (``IMailbox.changes_since``: changed and vanished UIDs), so its cost follows the
change, not the store; a mailbox whose UIDVALIDITY changed is copied in full again.

Consistency: a message file is written to a temporary name, fsynced and renamed, and its
directory fsynced, before the manifest transaction that names it commits (one per
mailbox); files of expunged messages are removed only after that commit.  A message
expunged while it is being copied is left out (the store no longer has it).  An
interrupted run leaves the manifest as the last commit made it: what it names is whole,
and the next run goes on from there.

Accounts: per user, the manifest also holds what a restore needs to bring a deleted user
back (table ``accounts``, one JSON record a user, rewritten only when it changed): the
user store's entry (passwd-file line fields, or the SQL users row: the ``{SCHEME}hash``
password, the quota limits, ``imap-login``) and the app passwords (their hashes); and
(table ``acls``) the access control list of each of the user's mailboxes.  The manifest
therefore holds password hashes: it is written mode 0600 in a 0700 DEST.

Replies sent: per user, the user's entries of ``DATA/sieve/sent.sqlite`` (the vacation
replies sent and redirects done, :class:`mailserv.delivery.sievestore.SentLog`) in table
``sent``, replaced whole when they changed; only that user's, so a restore of one user
does not answer anyone else's senders again.

Covered: messages, flags, keywords, internal dates, folders with their special-use
attributes, subscriptions, Sieve scripts, accounts, ACLs and the replies sent.  Not
covered: the server's configuration (quotas set there included): back it up with the
configuration files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO, cast
from urllib.parse import quote

from mailserv.admin.mailstore import REFUSED_BACKENDS, StoreError, open_store
from mailserv.auth.apppasswords import AppPassword, IAppPasswordAdmin
from mailserv.auth.passwd import PasswdEntry
from mailserv.auth.users import IUserAdmin
from mailserv.backends.maildir.files import fsync_dir
from mailserv.config import Config
from mailserv.delivery.sieve import sent_log, sieve_store
from mailserv.delivery.sievestore import SentRecord
from mailserv.errors import BackendError, MailboxNotFound
from mailserv.interfaces import (
    NOSELECT,
    RECENT,
    SPECIAL_USE,
    Changes,
    IAccount,
    IAclAccount,
    IMailbox,
    MailboxStatus,
    MessageMeta,
)

MANIFEST = "manifest.sqlite"
MAIL_DIR = "mail"
SIEVE_DIR = "sieve"
LOCK = ".lock"
BATCH = 200
"""Messages read from the store per call (metadata) and copied per round."""
WRITERS = 4
"""Threads writing and fsyncing message files."""
PROGRESS_EVERY = 5.0
"""Seconds between progress lines on stderr."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mailboxes (
    user TEXT NOT NULL, box TEXT NOT NULL, name TEXT NOT NULL, attributes TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL, highestmodseq INTEGER NOT NULL,
    PRIMARY KEY (user, box));
CREATE TABLE IF NOT EXISTS messages (
    user TEXT NOT NULL, box TEXT NOT NULL, uid INTEGER NOT NULL, sha256 TEXT NOT NULL,
    size INTEGER NOT NULL, flags TEXT NOT NULL, internaldate TEXT NOT NULL,
    modseq INTEGER NOT NULL, message_id TEXT NOT NULL,
    PRIMARY KEY (user, box, uid));
CREATE TABLE IF NOT EXISTS folders (
    user TEXT NOT NULL, name TEXT NOT NULL, attributes TEXT NOT NULL,
    subscribed INTEGER NOT NULL, PRIMARY KEY (user, name));
CREATE TABLE IF NOT EXISTS runs (
    started REAL NOT NULL, finished REAL NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (user TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acls (
    user TEXT NOT NULL, name TEXT NOT NULL, identifier TEXT NOT NULL, rights TEXT NOT NULL,
    PRIMARY KEY (user, name, identifier));
CREATE TABLE IF NOT EXISTS sent (
    user TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (user, kind, key));
"""


class BackupError(Exception):
    """Reported on stderr with exit status 1; the text is for the operator."""


# -- the backend, run in a reactor thread ----------------------------------------------------


class Store:
    """The configured backend, opened as ``mailserv import``/``export`` open it
    (:mod:`mailserv.admin.mailstore`: a reactor thread; ``call`` hands a backend call to
    it), and the accounts of several users."""

    def __init__(self, config: Config, first_user: str) -> None:
        try:
            self._store = open_store(config, first_user)
        except StoreError as exc:
            raise BackupError(str(exc)) from exc
        self.backend = self._store.backend

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return self._store.call(function, *args)

    def account(self, user: str) -> IAccount:
        try:
            return cast(IAccount, self.call(self.backend.account, user))
        except BackendError as exc:
            raise BackupError(f"cannot open the mail of {user!r}: {exc}") from exc

    def close(self) -> None:
        self._store.close()


def refuse_backend(config: Config) -> None:
    """Before any other check: a backend without a store of its own cannot be used."""
    reason = REFUSED_BACKENDS.get(config.backend)
    if reason is not None:
        raise BackupError(f"cannot use the {config.backend} backend: {reason}")


async def _metas(mailbox: IMailbox, uids: Sequence[int]) -> list[MessageMeta]:
    return list(await mailbox.fetch(uids))


async def _contents(mailbox: IMailbox, uids: Sequence[int]) -> dict[int, bytes]:
    """The messages still there among ``uids`` (one expunged meanwhile is left out)."""
    found = {}
    for uid in uids:
        try:
            found[uid] = await mailbox.content(uid)
        except KeyError:
            continue
    return found


# -- the manifest and the files ---------------------------------------------------------------


def encoded(name: str) -> str:
    """One safe path component for a user or script name."""
    return quote(name, safe="") if name not in (".", "..") else quote(name.replace(".", "%2E"))


def box_key(name: str, mailboxid: str | None) -> str:
    if mailboxid:
        return "id-" + mailboxid
    return "name-" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:24]


@dataclass(frozen=True)
class UserStores:
    """Where the accounts are: the user store and its app passwords (the CLI finds them as
    the server does: the passwd-file and ``app-passwords`` beside it, or the SQL tables)."""

    users: IUserAdmin
    apps: IAppPasswordAdmin


@dataclass(frozen=True)
class Account:
    """What a restore needs to bring a user back: the user store's entry (``entry``: the
    passwd-file fields after the name, an SQL row's password and quota as those fields),
    the ``imap-login`` mode and the app passwords."""

    entry: PasswdEntry
    imap_login: str
    app_passwords: tuple[AppPassword, ...]

    @classmethod
    def read(cls, stores: UserStores, user: str) -> Account | None:
        entry = stores.users.lookup(user)
        if entry is None:
            return None
        apps = tuple(stores.apps.listing(user))
        return cls(entry, stores.apps.imap_login(user), apps)

    def to_json(self) -> str:
        record = {
            "entry": dataclasses.asdict(self.entry),
            "imap_login": self.imap_login,
            "app_passwords": [dataclasses.asdict(app) for app in self.app_passwords],
        }
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Account:
        record = json.loads(text)
        apps = tuple(AppPassword(**app) for app in record["app_passwords"])
        return cls(PasswdEntry(**record["entry"]), record["imap_login"], apps)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One message as the manifest holds it."""

    uid: int
    sha256: str
    size: int
    flags: frozenset[str]
    internaldate: str
    message_id: str


class Manifest:
    """``DEST/manifest.sqlite``; every change is one transaction (``with manifest.db:``)."""

    def __init__(self, dest: str, create: bool) -> None:
        self.dest = dest
        path = os.path.join(dest, MANIFEST)
        if not create and not os.path.exists(path):
            raise BackupError(f"{dest} holds no backup (no {MANIFEST})")
        self.db = sqlite3.connect(path, isolation_level=None)
        if create:
            os.chmod(path, 0o600)  # it holds password hashes
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("PRAGMA journal_mode = DELETE")
        if create:
            self.db.executescript(_SCHEMA)
        else:
            try:
                self.db.execute("SELECT 1 FROM messages LIMIT 1")
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"{path} is not a mailserv backup manifest: {exc}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def users(self) -> list[str]:
        rows = self.db.execute("SELECT DISTINCT user FROM folders ORDER BY user")
        return [user for (user,) in rows]

    def boxes(self, user: str) -> dict[str, tuple[str, int, int]]:
        """box key → (name, uidvalidity, highestmodseq)."""
        rows = self.db.execute(
            "SELECT box, name, uidvalidity, highestmodseq FROM mailboxes WHERE user = ?", (user,)
        )
        return {box: (name, validity, modseq) for box, name, validity, modseq in rows}

    def folders(self, user: str) -> list[tuple[str, frozenset[str], bool]]:
        rows = self.db.execute(
            "SELECT name, attributes, subscribed FROM folders WHERE user = ? ORDER BY name",
            (user,),
        )
        return [(name, frozenset(json.loads(attrs)), bool(sub)) for name, attrs, sub in rows]

    def messages(self, user: str, box: str) -> list[Recorded]:
        rows = self.db.execute(
            "SELECT uid, sha256, size, flags, internaldate, message_id FROM messages "
            "WHERE user = ? AND box = ? ORDER BY uid",
            (user, box),
        )
        return [
            Recorded(uid, sha, size, frozenset(json.loads(flags)), date, mid)
            for uid, sha, size, flags, date, mid in rows
        ]

    def account(self, user: str) -> Account | None:
        """The user's account record; None when the backup has none (made before backups
        covered accounts, or the user was in no user store)."""
        try:
            row = self.db.execute("SELECT record FROM accounts WHERE user = ?", (user,)).fetchone()
        except sqlite3.OperationalError:  # no such table: an older backup
            return None
        if row is None:
            return None
        try:
            return Account.from_json(row[0])
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"the account record of {user!r} is damaged in the backup") from exc

    def acls(self, user: str) -> dict[str, dict[str, str]]:
        """Folder name → its access control list (identifier → rights)."""
        found: dict[str, dict[str, str]] = {}
        try:
            rows = self.db.execute(
                "SELECT name, identifier, rights FROM acls WHERE user = ?", (user,)
            ).fetchall()
        except sqlite3.OperationalError:
            return found
        for name, identifier, rights in rows:
            found.setdefault(name, {})[identifier] = rights
        return found

    def sent(self, user: str) -> list[SentRecord]:
        """The user's replies sent, as the backup holds them (none in an older backup)."""
        try:
            rows = self.db.execute(
                "SELECT kind, key, at FROM sent WHERE user = ? ORDER BY kind, key", (user,)
            ).fetchall()
        except sqlite3.OperationalError:  # no such table: an older backup
            return []
        return [(kind, key, at) for kind, key, at in rows]

    def shas(self, user: str, box: str) -> dict[int, str]:
        rows = self.db.execute(
            "SELECT uid, sha256 FROM messages WHERE user = ? AND box = ?", (user, box)
        )
        return dict(rows.fetchall())

    def path(self, user: str, box: str, uidvalidity: int, uid: int | None = None) -> str:
        parts = [self.dest, MAIL_DIR, encoded(user), box, str(uidvalidity)]
        return os.path.join(*parts, str(uid)) if uid is not None else os.path.join(*parts)

    def read(self, user: str, box: str, uidvalidity: int, uid: int) -> bytes:
        with open(self.path(user, box, uidvalidity, uid), "rb") as f:
            return f.read()

    def close(self) -> None:
        self.db.close()


@contextlib.contextmanager
def locked(dest: str) -> Iterator[None]:
    """Only one backup or restore at a time uses DEST."""
    handle = open(os.path.join(dest, LOCK), "a")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BackupError(f"another backup or restore is using {dest}") from exc
        yield
    finally:
        handle.close()


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: temporary name, fsync, rename."""
    temporary = f"{path}.tmp{threading.get_ident()}"
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


class Progress:
    """A line on ``stream`` every few seconds of long work (the summary comes at the end)."""

    def __init__(self, stream: TextIO, verb: str) -> None:
        self._stream = stream
        self._verb = verb
        self._next = time.monotonic() + PROGRESS_EVERY

    def tell(self, user: str, name: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_EVERY
            self._stream.write(f"{self._verb}: {user} {name}: {done}/{total} messages\n")
            self._stream.flush()


# -- the backup ----------------------------------------------------------------------------


@dataclass
class Tally:
    users: int = 0
    mailboxes: int = 0
    full: int = 0
    copied: int = 0
    octets: int = 0
    updated: int = 0
    removed: int = 0
    scripts: int = 0
    accounts: int = 0
    sent: int = 0
    details: list[str] = field(default_factory=list)

    def line(self, kept: int) -> str:
        return (
            f"backup: {self.users} users, {self.mailboxes} mailboxes ({self.full} copied in "
            f"full), {self.copied} messages copied ({self.octets} octets), {self.updated} "
            f"flag updates, {self.removed} removed, {kept} messages in the backup, "
            f"{self.scripts} sieve scripts, {self.accounts} accounts copied, {self.sent} "
            "records of replies sent copied"
        )


def backup(
    config: Config,
    users: Sequence[str],
    dest: str,
    out: TextIO,
    err: TextIO = sys.stderr,
    stores: UserStores | None = None,
) -> Tally:
    """Bring ``dest`` up to date with the mail of ``users`` (and their accounts, from
    ``stores`` when given); prints the summary line."""
    refuse_backend(config)
    try:
        os.makedirs(os.path.join(dest, MAIL_DIR), mode=0o700, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot use {dest}: {exc.strerror}") from exc
    started = time.time()
    tally = Tally()
    with locked(dest):
        manifest = Manifest(dest, create=True)
        if not users:
            raise BackupError("no users to back up")
        store = Store(config, users[0])
        try:
            with ThreadPoolExecutor(WRITERS, thread_name_prefix="backup-write") as writers:
                run = _Run(store, manifest, writers, tally, Progress(err, "backup"))
                for user in users:
                    run.user(user)
                    _copy_scripts(config, manifest, user, tally)
                    _copy_sent(config, manifest, user, tally)
                    if stores is not None:
                        _copy_account(stores, manifest, user, tally)
            kept = manifest.db.execute("SELECT count(*) FROM messages").fetchone()[0]
            summary = tally.line(kept)
            with manifest.transaction() as db:
                db.execute("INSERT INTO runs VALUES (?, ?, ?)", (started, time.time(), summary))
        finally:
            manifest.close()
            store.close()
    out.write(summary + "\n")
    return tally


@dataclass
class _Run:
    store: Store
    manifest: Manifest
    writers: ThreadPoolExecutor
    tally: Tally
    progress: Progress

    def user(self, user: str) -> None:
        account = self.store.account(user)
        try:
            listed = self.store.call(account.list_mailboxes)
            subscribed = set(self.store.call(account.subscriptions))
            known = self.manifest.boxes(user)
            seen: set[str] = set()
            for info in listed:
                if NOSELECT in info.attributes:
                    continue
                seen.add(self.mailbox(user, account, info.name, info.attributes, known))
            folders = [
                (user, i.name, json.dumps(sorted(i.attributes)), int(i.name in subscribed))
                for i in listed
            ]
            gone = [box for box in known if box not in seen]
            acls = self._acls(user, account, [info.name for info in listed])
            with self.manifest.transaction() as db:
                db.execute("DELETE FROM folders WHERE user = ?", (user,))
                db.executemany("INSERT INTO folders VALUES (?, ?, ?, ?)", folders)
                db.execute("DELETE FROM acls WHERE user = ?", (user,))
                db.executemany("INSERT INTO acls VALUES (?, ?, ?, ?)", acls)
                for box in gone:
                    db.execute("DELETE FROM mailboxes WHERE user = ? AND box = ?", (user, box))
                    removed = db.execute(
                        "DELETE FROM messages WHERE user = ? AND box = ?", (user, box)
                    ).rowcount
                    self.tally.removed += removed
            for box in gone:  # after the commit: the manifest never names a missing file
                shutil.rmtree(os.path.join(self.manifest.dest, MAIL_DIR, encoded(user), box), True)
        finally:
            self.store.call(account.close)
        self.tally.users += 1

    def _acls(
        self, user: str, account: IAccount, names: Sequence[str]
    ) -> list[tuple[str, str, str, str]]:
        """(user, folder, identifier, rights) of every ACL entry of the user's folders."""
        if not IAclAccount.providedBy(account):
            return []
        rows: list[tuple[str, str, str, str]] = []
        for name in names:
            try:
                acl: Mapping[str, str] = self.store.call(IAclAccount(account).get_acl, name)
            except MailboxNotFound:
                continue  # a \Noselect parent, or deleted meanwhile
            rows += [(user, name, identifier, rights) for identifier, rights in acl.items()]
        return rows

    def mailbox(
        self,
        user: str,
        account: IAccount,
        name: str,
        attributes: frozenset[str],
        known: dict[str, tuple[str, int, int]],
    ) -> str:
        """Copy what changed in one mailbox; returns its box key."""
        mailbox: IMailbox = self.store.call(account.open, name)
        status = self.store.call(mailbox.status)
        box = box_key(name, status.mailboxid)
        copy = _Copy(user, box, name, attributes, status.uidvalidity, mailbox)
        self.tally.mailboxes += 1
        before = known.get(box)
        old_validity = before[1] if before else None
        if before is not None and old_validity == status.uidvalidity and before[2] > 0:
            if before[2] == status.highestmodseq and before[0] == name:
                return box  # nothing changed
            changes = self.store.call(mailbox.changes_since, before[2])
            if changes.complete:
                self._apply(copy, changes)
                return box
        self.tally.full += 1
        self._full(copy, status, old_validity)
        return box

    def _apply(self, copy: _Copy, changes: Changes) -> None:
        known = self.manifest.shas(copy.user, copy.box)
        vanished = [uid for uid in changes.vanished if uid in known]
        self._store(copy, list(changes.changed), known, vanished)
        self._commit_box(copy, changes.highestmodseq)
        self._unlink(copy, vanished)

    def _full(self, copy: _Copy, status: MailboxStatus, old_validity: int | None) -> None:
        """Copy the whole mailbox: first run, its UIDVALIDITY changed, or a full copy that
        was interrupted (its modseq is still 0: the messages it recorded are not copied
        again)."""
        user, box = copy.user, copy.box
        if old_validity is not None and old_validity != copy.validity:
            with self.manifest.transaction() as db:  # the old UIDs mean nothing now
                gone = db.execute(
                    "DELETE FROM messages WHERE user = ? AND box = ?", (user, box)
                ).rowcount
                db.execute("DELETE FROM mailboxes WHERE user = ? AND box = ?", (user, box))
            self.tally.removed += gone
            shutil.rmtree(self.manifest.path(user, box, old_validity), True)
        self._commit_box(copy, 0)
        known = self.manifest.shas(user, box)
        uids = list(self.store.call(copy.mailbox.uids))
        vanished = sorted(set(known) - set(uids))
        for start in range(0, len(uids), BATCH * 10):
            chunk = uids[start : start + BATCH * 10]
            metas = self.store.call(_metas, copy.mailbox, chunk)
            self._store(copy, metas, known, [])
            self.progress.tell(user, copy.name, start + len(chunk), len(uids))
        self._commit_box(copy, status.highestmodseq)
        if vanished:
            self._store(copy, [], {}, vanished)
            self._unlink(copy, vanished)

    def _store(
        self,
        copy: _Copy,
        metas: Sequence[MessageMeta],
        known: dict[int, str],
        vanished: Sequence[int],
    ) -> None:
        """Copy the new messages among ``metas``, then record them all (and drop the
        ``vanished``) in one transaction: files first, manifest last."""
        user, box, mailbox = copy.user, copy.box, copy.mailbox
        directory = self.manifest.path(user, box, copy.validity)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        rows: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for start in range(0, len(metas), BATCH):
            batch = metas[start : start + BATCH]
            fresh = [meta.uid for meta in batch if meta.uid not in known]
            contents = self.store.call(_contents, mailbox, fresh) if fresh else {}
            digests = {uid: hashlib.sha256(data).hexdigest() for uid, data in contents.items()}
            writes = [
                self.writers.submit(write_file, os.path.join(directory, str(uid)), data)
                for uid, data in contents.items()
            ]
            for write in writes:
                write.result()
            for meta in batch:
                flags = json.dumps(sorted(meta.flags - {RECENT}))
                if meta.uid in known:
                    updates.append((flags, meta.modseq, user, box, meta.uid))
                elif meta.uid in contents:
                    data = contents[meta.uid]
                    rows.append(
                        (user, box, meta.uid, digests[meta.uid], len(data), flags,
                         meta.internaldate.isoformat(), meta.modseq, meta.info.message_id)
                    )  # fmt: skip
                    self.tally.octets += len(data)
        if rows:
            fsync_dir(directory)
        with self.manifest.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?,?)", rows)
            db.executemany(
                "UPDATE messages SET flags = ?, modseq = ? WHERE user = ? AND box = ? AND uid = ?",
                updates,
            )
            db.executemany(
                "DELETE FROM messages WHERE user = ? AND box = ? AND uid = ?",
                [(user, box, uid) for uid in vanished],
            )
        self.tally.copied += len(rows)
        self.tally.updated += len(updates)
        self.tally.removed += len(vanished)

    def _commit_box(self, copy: _Copy, modseq: int) -> None:
        """Record that ``copy``'s box is copied up to ``modseq`` (the last write of a mailbox)."""
        special = json.dumps(sorted(copy.attributes & SPECIAL_USE))
        row = (copy.user, copy.box, copy.name, special, copy.validity, modseq)
        with self.manifest.transaction() as db:
            db.execute("INSERT OR REPLACE INTO mailboxes VALUES (?, ?, ?, ?, ?, ?)", row)

    def _unlink(self, copy: _Copy, uids: Sequence[int]) -> None:
        for uid in uids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.manifest.path(copy.user, copy.box, copy.validity, uid))


@dataclass(frozen=True)
class _Copy:
    """One mailbox being copied: whose, its box key in the backup, its name and attributes,
    the UIDVALIDITY its files are kept under, and the open mailbox."""

    user: str
    box: str
    name: str
    attributes: frozenset[str]
    validity: int
    mailbox: IMailbox


def _copy_scripts(config: Config, manifest: Manifest, user: str, tally: Tally) -> None:
    """The user's Sieve scripts, replaced whole (they are few and small)."""
    scripts = sieve_store(config.data_dir)
    target = os.path.join(manifest.dest, SIEVE_DIR, encoded(user))
    listed = scripts.list(user)
    if not listed and not os.path.isdir(target):
        return
    os.makedirs(target, mode=0o700, exist_ok=True)
    names = set()
    for name, active in listed:
        filename = encoded(name) + ".sieve"
        names.add(filename)
        write_file(os.path.join(target, filename), scripts.get(user, name))
        if active:
            write_file(os.path.join(target, "active"), name.encode())
        tally.scripts += 1
    if not any(active for _, active in listed):
        names.discard("active")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(target, "active"))
    for stale in set(os.listdir(target)) - names - {"active"}:
        os.unlink(os.path.join(target, stale))


def _copy_sent(config: Config, manifest: Manifest, user: str, tally: Tally) -> None:
    """The user's entries of the record of replies sent, replaced when they changed."""
    records = sent_log(config.data_dir).records(user)
    kept = manifest.sent(user)
    if records == kept:
        return
    with manifest.transaction() as db:
        db.execute("DELETE FROM sent WHERE user = ?", (user,))
        db.executemany(
            "INSERT INTO sent VALUES (?, ?, ?, ?)", [(user, *record) for record in records]
        )
    tally.sent += len(set(records) - set(kept))


def _copy_account(stores: UserStores, manifest: Manifest, user: str, tally: Tally) -> None:
    """The user's account record, written when it differs from the one kept."""
    account = Account.read(stores, user)
    if account is None:
        return  # not (or no longer) in the user store: the record kept stays
    record = account.to_json()
    with manifest.transaction() as db:
        row = db.execute("SELECT record FROM accounts WHERE user = ?", (user,)).fetchone()
        if row is None or row[0] != record:
            db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?)", (user, record))
            tally.accounts += 1
