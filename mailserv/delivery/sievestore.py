"""Where users' Sieve scripts live: ``DATA/sieve/<user>/`` for every backend.

One directory per user (its name percent-encoded, so any user name is one safe path
component) holding ``<name>.sieve`` files (names percent-encoded too), an ``active``
file naming the active script, and ``vacation.json``, the record of vacation replies
sent (RFC 5230 4.2's per-sender limit).  Every write goes to a temporary file that is
synced and then renamed over the old one, so a reader (the delivery of another worker)
sees the old state or the new one.  Scripts live beside the other data of the server
and not in a backend: the same files serve the memory, maildir and sql backends (with sql
on PostgreSQL shared by several hosts, DATA must then be shared too).

Vacation replies are written to ``DATA/sieve/outbox/`` (see :class:`Outbox`): this
server sends no mail itself.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import unicodedata
from urllib.parse import quote, unquote

__all__ = ["MAX_NAME", "MAX_SCRIPTS", "Outbox", "ScriptStore", "StoreError", "check_name"]

MAX_SCRIPTS = 20
"""Scripts one user may keep."""
MAX_NAME = 128
"""Characters in a script name."""
MAX_VACATION_RECORDS = 2000
"""Senders remembered per user for vacation; the oldest are forgotten first."""
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
        self._vacation_lock = threading.Lock()
        """Deliveries run vacation_due in threads: one read-modify-write at a time (in this
        process; two workers may still both answer a sender's first message)."""

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

    def vacation_due(self, user: str, key: str, days: int, now: float | None = None) -> bool:
        """Whether a vacation reply keyed ``key`` (sender and handle) may go now, at most
        one per ``days``; when it may, the reply is recorded as sent."""
        with self._vacation_lock:
            return self._vacation_due(user, key, days, time.time() if now is None else now)

    def _vacation_due(self, user: str, key: str, days: int, now: float) -> bool:
        path = os.path.join(self._dir(user), "vacation.json")
        try:
            with open(path, encoding="utf-8") as f:
                sent: dict[str, float] = json.load(f)
        except (FileNotFoundError, ValueError):
            sent = {}
        if now - sent.get(key, float("-inf")) < days * 86400:
            return False
        sent.pop(key, None)
        sent[key] = now
        while len(sent) > MAX_VACATION_RECORDS:
            del sent[next(iter(sent))]
        os.makedirs(self._dir(user), mode=0o700, exist_ok=True)
        _write(path, json.dumps(sent).encode("utf-8"))
        return True


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
