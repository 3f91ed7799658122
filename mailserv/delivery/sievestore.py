"""Where users' Sieve scripts live: ``DATA/sieve/<user>/`` for every backend.

One directory per user (its name percent-encoded, so any user name is one safe path
component) holding ``<name>.sieve`` files (names percent-encoded too), an ``active``
file naming the active script.  Every script write goes to a temporary file that is
synced and then renamed over the old one, so a reader (the delivery of another worker)
sees the old state or the new one.  Scripts live beside the other data of the server
and not in a backend: the same files serve the memory, maildir and sql backends (with sql
on PostgreSQL shared by several hosts, DATA must then be shared too).

``DATA/sieve/sent.sqlite`` (:class:`SentLog`) records the vacation replies sent (RFC 5230
4.2's once per ``:days``) and the redirects done, in transactions, so every process that
delivers (``--workers``, ``mailserv deliver``) honours them.  Without a submission host,
vacation replies are written to ``DATA/sieve/outbox/`` (see :class:`Outbox`).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Iterable
from urllib.parse import quote, unquote

__all__ = [
    "MAX_NAME",
    "MAX_SCRIPTS",
    "Outbox",
    "ScriptStore",
    "SentLog",
    "SentRecord",
    "StoreError",
    "check_name",
]

MAX_SCRIPTS = 20
"""Scripts one user may keep."""
MAX_NAME = 128
"""Characters in a script name."""
MAX_VACATION_DAYS = 90
"""A vacation record is kept at most this long (RFC 5230 :days is capped there)."""
REDIRECT_MEMORY = 86400.0
"""Seconds a redirect done is remembered, so a delivery the MTA retries does not send it
again (the MTA's retries of one message come within a day or it gives up soon after)."""
_SUFFIX = ".sieve"


class StoreError(Exception):
    """An operation refused; ``code`` is ManageSieve's response code (RFC 5804 1.3)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


def check_name(name: str) -> None:
    """RFC 5804 1.6: a non-empty name without control characters; ours are bounded."""
    if not name:
        raise StoreError("Script name is empty")
    if len(name) > MAX_NAME:
        raise StoreError(f"Script name longer than {MAX_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        raise StoreError("Script name contains control characters")


def _component(text: str) -> str:
    """``text`` as one safe file name: percent-encoded, never starting with a dot."""
    encoded = quote(text, safe="@+-_")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


class ScriptStore:
    """The scripts of every user under ``root`` (``DATA/sieve``)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _dir(self, user: str) -> str:
        return os.path.join(self.root, "users", _component(user))

    def _path(self, user: str, name: str) -> str:
        return os.path.join(self._dir(user), _component(name) + _SUFFIX)

    def list(self, user: str) -> list[tuple[str, bool]]:
        """(name, active) of each script, sorted by name."""
        try:
            files = os.listdir(self._dir(user))
        except FileNotFoundError:
            return []
        active = self.active_name(user)
        names = sorted(unquote(f[: -len(_SUFFIX)]) for f in files if f.endswith(_SUFFIX))
        return [(name, name == active) for name in names]

    def get(self, user: str, name: str) -> bytes:
        check_name(name)
        try:
            with open(self._path(user, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise StoreError(f"No script named {name!r}", "NONEXISTENT") from None

    def exists(self, user: str, name: str) -> bool:
        return os.path.exists(self._path(user, name))

    def room_for(self, user: str, name: str) -> None:
        """StoreError (QUOTA/MAXSCRIPTS) when ``name`` is new and the user has the most."""
        check_name(name)
        if not self.exists(user, name) and len(self.list(user)) >= MAX_SCRIPTS:
            raise StoreError(f"At most {MAX_SCRIPTS} scripts per user", "QUOTA/MAXSCRIPTS")

    def put(self, user: str, name: str, source: bytes) -> None:
        """Store ``source`` (the caller has checked it) as ``name``."""
        self.room_for(user, name)
        os.makedirs(self._dir(user), mode=0o700, exist_ok=True)
        _write(self._path(user, name), source)

    def active_name(self, user: str) -> str | None:
        try:
            with open(os.path.join(self._dir(user), "active"), encoding="utf-8") as f:
                name = f.read().strip()
        except FileNotFoundError:
            return None
        return name if name and self.exists(user, name) else None

    def activate(self, user: str, name: str | None) -> None:
        """Make ``name`` the active script; None or "": no script is active."""
        marker = os.path.join(self._dir(user), "active")
        if not name:
            if os.path.exists(marker):
                _write(marker, b"")
            return
        check_name(name)
        if not self.exists(user, name):
            raise StoreError(f"No script named {name!r}", "NONEXISTENT")
        _write(marker, name.encode("utf-8"))

    def delete(self, user: str, name: str) -> None:
        check_name(name)
        if self.active_name(user) == name:
            raise StoreError(f"Script {name!r} is active; deactivate it first", "ACTIVE")
        try:
            os.unlink(self._path(user, name))
        except FileNotFoundError:
            raise StoreError(f"No script named {name!r}", "NONEXISTENT") from None

    def rename(self, user: str, old: str, new: str) -> None:
        check_name(old)
        check_name(new)
        if not self.exists(user, old):
            raise StoreError(f"No script named {old!r}", "NONEXISTENT")
        if self.exists(user, new):
            raise StoreError(f"A script named {new!r} exists", "ALREADYEXISTS")
        was_active = self.active_name(user) == old
        os.rename(self._path(user, old), self._path(user, new))
        if was_active:
            self.activate(user, new)

    def active_stamp(self, user: str) -> tuple[str, tuple[int, int, int]] | None:
        """The active script's name and stamp without reading it (for a cache)."""
        name = self.active_name(user)
        if name is None:
            return None
        try:
            info = os.stat(self._path(user, name))
        except FileNotFoundError:
            return None
        return name, (info.st_ino, info.st_size, info.st_mtime_ns)


SentRecord = tuple[str, str, float]
"""One entry of :class:`SentLog` for a user: its kind (``vacation``, ``redirect``), key
and time (seconds since the epoch)."""


class SentLog:
    """What was sent on users' behalf, in the SQLite file ``path``; one transaction per
    question, so two processes asking at once get one yes between them.  Blocking: call
    it in a thread."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute(
            "CREATE TABLE IF NOT EXISTS sent (kind TEXT NOT NULL, user TEXT NOT NULL,"
            " key TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (kind, user, key))"
        )
        return db

    def due(self, kind: str, user: str, key: str, every: float, now: float | None = None) -> bool:
        """Whether ``key`` of ``user`` was not sent in the last ``every`` seconds; when it
        was not, it is recorded as sent now (check and record in one transaction)."""
        now = time.time() if now is None else now
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT at FROM sent WHERE kind = ? AND user = ? AND key = ?", (kind, user, key)
            ).fetchone()
            if row is not None and now - row[0] < every:
                db.execute("ROLLBACK")
                return False
            db.execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?, ?)", (kind, user, key, now))
            forget = now - max(every, MAX_VACATION_DAYS * 86400.0)
            db.execute("DELETE FROM sent WHERE kind = ? AND user = ? AND at < ?",
                       (kind, user, forget))  # fmt: skip
            db.execute("COMMIT")
            return True
        finally:
            db.close()

    def recent(self, kind: str, user: str, key: str, every: float) -> bool:
        """Whether ``key`` of ``user`` was recorded in the last ``every`` seconds."""
        db = self._connect()
        try:
            row = db.execute(
                "SELECT at FROM sent WHERE kind = ? AND user = ? AND key = ?", (kind, user, key)
            ).fetchone()
        finally:
            db.close()
        return row is not None and time.time() - row[0] < every

    def record(self, kind: str, user: str, key: str) -> None:
        """Record ``key`` of ``user`` as sent now (after it was)."""
        db = self._connect()
        try:
            db.execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?, ?)",
                       (kind, user, key, time.time()))  # fmt: skip
        finally:
            db.close()

    def vacation_due(self, user: str, key: str, days: int, now: float | None = None) -> bool:
        """Whether a vacation reply keyed ``key`` (sender and handle) may go now, at most
        one per ``days``; when it may, the reply is recorded as sent."""
        return self.due("vacation", user, key, days * 86400.0, now)

    def records(self, user: str) -> list[SentRecord]:
        """What is recorded for ``user`` (for a backup); none while the file is not there
        (it is not created for this)."""
        if not os.path.exists(self.path):
            return []
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT kind, key, at FROM sent WHERE user = ? ORDER BY kind, key", (user,)
            ).fetchall()
        finally:
            db.close()
        return [(kind, key, at) for kind, key, at in rows]

    def put_back(self, user: str, records: Iterable[SentRecord], dry_run: bool = False) -> int:
        """Take ``records`` of ``user`` (from a backup) where the log has none of that kind
        and key, or an older one; how many were (with ``dry_run``: would be) taken.  One
        transaction; a dry run creates nothing."""
        records = list(records)
        if dry_run and not os.path.exists(self.path):
            return len(records)
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            taken = 0
            for kind, key, at in records:
                row = db.execute(
                    "SELECT at FROM sent WHERE kind = ? AND user = ? AND key = ?", (kind, user, key)
                ).fetchone()
                if row is not None and row[0] >= at:
                    continue
                taken += 1
                if not dry_run:
                    db.execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?, ?)",
                               (kind, user, key, at))  # fmt: skip
            db.execute("COMMIT")
            return taken
        finally:
            db.close()


class Outbox:
    """Mail this server would send (vacation replies), as files an operator's job passes
    to the MTA: ``<id>.eml`` (the message) and then ``<id>.json`` (``{"from": sender,
    "to": [recipients]}``, written last: a message is complete once its JSON exists)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def add(self, sender: str, recipients: list[str], message: bytes) -> str:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        ident = f"{time.time_ns()}.{secrets.token_hex(4)}"
        base = os.path.join(self.root, ident)
        _write(base + ".eml", message)
        envelope = {"from": sender, "to": recipients}
        _write(base + ".json", json.dumps(envelope).encode("utf-8"))
        return ident


def _write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (synced before the rename)."""
    temporary = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
