"""Users in a Dovecot-style passwd-file: ``user:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]``.

The server re-reads the file whenever it changes on disk (one ``stat`` per lookup), so users
added with ``mailserv user add`` log in without a restart.  Edits rewrite the whole file
atomically under an ``flock`` so two concurrent commands never lose each other's change, and
keep every other line (comments included) byte for byte.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace

from twisted.logger import Logger
from zope.interface import implementer

from mailserv.auth.users import IUserAdmin, IUserStore
from mailserv.quota import StoredQuota, rule_fields, stored_quota, without_rules

_log = Logger()

MAX_USERNAME_BYTES = 255
FILE_MODE = 0o600

_FIELDS = ("uid", "gid", "gecos", "home", "shell")


class PasswdError(Exception):
    """An edit of the passwd-file was refused; the text says why."""


class InvalidUsername(PasswdError, ValueError):
    """The name cannot be stored in a passwd-file (or is not one a client could log in as)."""


class InvalidField(PasswdError, ValueError):
    """A hash or extra field would break the line format."""


class UserExists(PasswdError):
    pass


class UserNotFound(PasswdError):
    pass


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One user line; ``password`` is the stored value with its ``{SCHEME}`` prefix."""

    user: str
    password: str
    uid: str = ""
    gid: str = ""
    gecos: str = ""
    home: str = ""
    shell: str = ""
    extra: str = ""
    """Dovecot's extra fields: space-separated ``key=value`` (or bare ``key``) words."""

    @property
    def extra_fields(self) -> dict[str, str]:
        """``extra`` as a mapping; a bare ``key`` maps to the empty string."""
        fields: dict[str, str] = {}
        for word in self.extra.split():
            key, _, value = word.partition("=")
            fields[key] = value
        return fields

    @property
    def quota(self) -> StoredQuota:
        """The limits the ``userdb_quota_rule*`` extra fields set (see :mod:`mailserv.quota`)."""
        return stored_quota(self.extra_fields, self.user)

    def to_line(self) -> str:
        """The line as written (no newline), in the full seven-field form Dovecot documents."""
        head = ":".join((self.user, self.password, *(getattr(self, f) for f in _FIELDS)))
        return f"{head}:{self.extra}" if self.extra else head


def _bad_chars(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def check_username(user: str) -> None:
    """Raise InvalidUsername unless ``user`` can be a passwd-file key."""
    if not user:
        raise InvalidUsername("user name is empty")
    try:
        encoded = user.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidUsername("user name is not valid Unicode text") from exc
    if len(encoded) > MAX_USERNAME_BYTES:
        raise InvalidUsername(f"user name is longer than {MAX_USERNAME_BYTES} bytes")
    if ":" in user:
        raise InvalidUsername("user name contains ':'")
    if _bad_chars(user):
        raise InvalidUsername("user name contains a control character (newline, NUL, ...)")
    if user != user.strip():
        raise InvalidUsername("user name starts or ends with white space")
    if user.startswith("#"):
        raise InvalidUsername("user name starts with '#' (a comment in the passwd-file)")


def _check_field(name: str, value: str, *, colon_ok: bool = False) -> None:
    if _bad_chars(value):
        raise InvalidField(f"{name} contains a control character")
    if not colon_ok and ":" in value:
        raise InvalidField(f"{name} contains ':'")


def parse_line(line: str) -> PasswdEntry | None:
    """An entry, or None for a blank or comment line; ValueError when the line is malformed."""
    line = line.rstrip("\r\n")
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    parts = line.split(":", 7)
    user = parts[0]
    if not user:
        raise ValueError("empty user name")
    parts += [""] * (8 - len(parts))
    return PasswdEntry(user, *parts[1:8])


def _line_user(line: bytes) -> bytes | None:
    stripped = line.strip()
    if not stripped or stripped.startswith(b"#"):
        return None
    return line.split(b":", 1)[0].rstrip(b"\r\n")


@implementer(IUserStore, IUserAdmin)
class PasswdFile:
    """A passwd-file on disk: cached lookups that follow the file, and locked atomic edits."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._signature: tuple[int, int, int, int] | None = None
        self._loaded = False
        self._entries: dict[str, PasswdEntry] = {}

    # -- reading -----------------------------------------------------------------------

    def lookup(self, user: str) -> PasswdEntry | None:
        """The entry for ``user`` (as on disk now), or None; never raises for odd names."""
        self._refresh()
        return self._entries.get(user)

    async def find(self, user: str) -> PasswdEntry | None:
        """:meth:`lookup` for the server (IUserStore): one ``stat``, no I/O wait worth a thread."""
        return self.lookup(user)

    def current(self) -> Mapping[str, PasswdEntry]:
        """The entries as on disk now: a new mapping whenever the file changed, the same one
        otherwise (for caches keyed on it)."""
        self._refresh()
        return self._entries

    def users(self) -> list[str]:
        """Every user name, in file order."""
        self._refresh()
        return list(self._entries)

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._signature is not None or not self._loaded:
                _log.warn(
                    "passwd-file {path} cannot be read ({error}): no users",
                    path=self.path,
                    error=exc.strerror,
                )
                self._signature, self._entries, self._loaded = None, {}, True
            return
        if self._loaded and self._signature == _signature(st):
            return
        try:
            with open(self.path, "rb") as f:
                signature = _signature(os.fstat(f.fileno()))
                data = f.read()
        except OSError as exc:
            _log.warn("passwd-file {path} cannot be read ({error})", path=self.path, error=exc)
            self._signature, self._entries, self._loaded = None, {}, True
            return
        self._entries = self._parse(data)
        self._signature, self._loaded = signature, True

    def _parse(self, data: bytes) -> dict[str, PasswdEntry]:
        entries: dict[str, PasswdEntry] = {}
        for number, raw in enumerate(data.splitlines(), 1):
            try:
                entry = parse_line(raw.decode("utf-8"))
            except ValueError as exc:  # UnicodeDecodeError included
                _log.warn(
                    "passwd-file {path} line {number} ignored: {error}",
                    path=self.path,
                    number=number,
                    error=exc,
                )
                continue
            if entry is None:
                continue
            if entry.user in entries:
                _log.warn(
                    "passwd-file {path} line {number}: duplicate user {user!r} ignored",
                    path=self.path,
                    number=number,
                    user=entry.user,
                )
                continue
            entries[entry.user] = entry
        return entries

    # -- editing -----------------------------------------------------------------------

    def add_user(
        self,
        user: str,
        hashed: str,
        *,
        uid: str = "",
        gid: str = "",
        gecos: str = "",
        home: str = "",
        shell: str = "",
        extra: str = "",
    ) -> PasswdEntry:
        """Append a user line; UserExists if the name is taken."""
        check_username(user)
        _check_hash(hashed)
        for name, value in zip(_FIELDS, (uid, gid, gecos, home, shell), strict=True):
            _check_field(name, value)
        _check_field("extra", extra, colon_ok=True)
        entry = PasswdEntry(user, hashed, uid, gid, gecos, home, shell, extra)
        key = user.encode("utf-8")

        def change(lines: list[bytes]) -> list[bytes]:
            if any(_line_user(line) == key for line in lines):
                raise UserExists(f"user {user!r} already exists")
            if lines and not lines[-1].endswith(b"\n"):
                lines[-1] += b"\n"
            return [*lines, entry.to_line().encode("utf-8") + b"\n"]

        self._edit(change)
        return entry

    def set_password(self, user: str, hashed: str) -> None:
        """Replace the stored hash of ``user``, keeping its other fields; UserNotFound if absent."""
        check_username(user)
        _check_hash(hashed)
        new = hashed.encode("utf-8")

        def change(body: bytes) -> bytes:
            parts = body.split(b":", 2)
            parts[1:2] = [new]
            return b":".join(parts)

        self._edit_user(user, change)

    def set_quota(self, user: str, quota: StoredQuota) -> None:
        """Replace the quota rules among ``user``'s extra fields by those setting ``quota``
        (none where it is None), keeping the other fields; UserNotFound if absent."""
        check_username(user)

        def change(body: bytes) -> bytes:
            try:
                entry = parse_line(body.decode("utf-8"))
            except ValueError as exc:
                raise PasswdError(f"the line of {user!r} cannot be read: {exc}") from exc
            assert entry is not None  # the line is the user's
            extra = " ".join(without_rules(entry.extra.split()) + rule_fields(quota))
            return replace(entry, extra=extra).to_line().encode("utf-8")

        self._edit_user(user, change)

    def _edit_user(self, user: str, change: Callable[[bytes], bytes]) -> None:
        """Replace each line of ``user`` (without its line ending) by ``change(line)``."""
        key = user.encode("utf-8")

        def edit(lines: list[bytes]) -> list[bytes]:
            found = False
            result = []
            for line in lines:
                if _line_user(line) == key:
                    found = True
                    body = line.rstrip(b"\r\n")
                    line = change(body) + line[len(body) :]
                result.append(line)
            if not found:
                raise UserNotFound(f"no user {user!r}")
            return result

        self._edit(edit)

    def remove_user(self, user: str) -> None:
        """Delete the line(s) of ``user``; UserNotFound if absent."""
        check_username(user)
        key = user.encode("utf-8")

        def change(lines: list[bytes]) -> list[bytes]:
            kept = [line for line in lines if _line_user(line) != key]
            if len(kept) == len(lines):
                raise UserNotFound(f"no user {user!r}")
            return kept

        self._edit(change)

    def _edit(self, change: Callable[[list[bytes]], list[bytes]]) -> None:
        rewrite_locked(self.path, change)


def rewrite_locked(path: str, change: Callable[[list[bytes]], list[bytes]]) -> None:
    """Replace the lines of ``path`` (none if absent) by ``change(lines)``, atomically and
    under an exclusive flock on ``<path>.lock`` (kept on disk: unlinking it would race)."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(path, "rb") as f:
                lines = f.read().splitlines(keepends=True)
        except FileNotFoundError:
            lines = []
        _replace(path, b"".join(change(lines)))
    finally:
        os.close(fd)


def _check_hash(hashed: str) -> None:
    if not hashed:
        raise InvalidField("password hash is empty")
    _check_field("password hash", hashed)


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _replace(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path``."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
