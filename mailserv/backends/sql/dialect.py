"""Database URLs and the few differences between SQLite and PostgreSQL the store cares about.

The SQL text of the backend is written once, with ``?`` placeholders and ``{name}``
slots for type names and storage options; a :class:`Dialect` turns it into what its
driver wants.  Nothing here imports psycopg: it is loaded only for a PostgreSQL URL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from mailserv.errors import BackendOptionError

DEFAULT_SQLITE_NAME = "mail.db"
BUSY_TIMEOUT_MS = 30_000
"""How long an SQLite writer waits for another one before the transaction is retried."""

SQLITE_MMAP_BYTES = 1 << 30
"""Of an SQLite database file read through a memory map, per connection (address space,
shared with the page cache, not memory of its own): a page the connection's 2 MB cache
lacks is then read without a system call.  At 100k messages (message_info 200 MB) a FETCH
of 20 random messages' rows took 0.19 ms, 0.12 so."""

SQLITE_SYNC = ("full", "normal")
DEFAULT_SQLITE_SYNC = "full"
"""The contract wants an APPEND durable when it is acknowledged."""

FLAG_DURABILITY = ("fast", "full")
DEFAULT_FLAG_DURABILITY = "fast"
"""A flag change (STORE) is committed without waiting for the disk: PostgreSQL does not wait
for its WAL flush; SQLite (``sqlite-sync=full``) commits it with ``synchronous = NORMAL``,
no fsync (the next commit that syncs, or a checkpoint, takes it to the disk).  A crash of
the machine (of the database, for PostgreSQL) may lose the last flag changes, never a
message, never consistency."""


@dataclass(frozen=True)
class Dialect:
    """One database flavour: how to connect, spell types, and recognise transient errors."""

    name: str  # "sqlite" or "postgresql"
    driver: str  # DB-API module name, for twisted.enterprise.adbapi
    connargs: tuple[Any, ...]
    connkw: Mapping[str, Any]
    slots: Mapping[str, str]
    placeholder: str  # "?" or "%s"
    display: str  # the URL without a password, for logs
    sqlite_sync: str = DEFAULT_SQLITE_SYNC
    flag_durability: str = DEFAULT_FLAG_DURABILITY
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgresql"

    @property
    def for_update(self) -> str:
        """Appended to a SELECT that locks its row (SQLite's BEGIN IMMEDIATE locks it all)."""
        return " FOR UPDATE" if self.is_postgres else ""

    @property
    def lazy_flag_commit(self) -> str:
        """Selected by a flag-only write (a STORE) in its first statement: on PostgreSQL with
        ``flag-durability=fast``, its commit does not wait for the WAL flush
        (``synchronous_commit`` off for this transaction alone, set in the same round trip).
        Messages, EXPUNGE and everything else keep synchronous commits."""
        if self.is_postgres and self.flag_durability == "fast":
            return ", set_config('synchronous_commit', 'off', true)"
        return ""

    @property
    def lazy_sqlite_flags(self) -> bool:
        """SQLite commits a flag-only write (a STORE) without an fsync (``flag-durability``
        fast while ``sqlite-sync`` is full): ``synchronous = NORMAL`` for that transaction."""
        return (
            not self.is_postgres and self.flag_durability == "fast" and self.sqlite_sync == "full"
        )

    @property
    def find(self) -> str:
        """``find(haystack, needle) > 0``: substring test, exact and case-sensitive."""
        return "strpos" if self.is_postgres else "instr"

    @property
    def uid_list(self) -> str:
        """An aggregate of a group's UIDs as one text, comma-separated (a STORE of 100k
        reads its rows' UIDs as a few strings, not 100k rows)."""
        return "string_agg(uid::text, ',')" if self.is_postgres else "group_concat(uid)"

    def ddl(self, text: str) -> str:
        """Schema text with ``{blob}``, ``{serial}`` ... filled in for this database."""
        return text.format_map(self.slots)

    def sql(self, text: str) -> str:
        """A statement written with ``?`` placeholders, in this driver's style (cached)."""
        converted = self._cache.get(text)
        if converted is None:
            if self.placeholder == "?":
                converted = text
            else:
                converted = text.replace("%", "%%").replace("?", self.placeholder)
            self._cache[text] = converted
        return converted

    def module(self) -> Any:
        """The DB-API module (imported on first use)."""
        if self.is_postgres:
            return _import_psycopg()
        return sqlite3

    def connect(self) -> Any:
        """A new connection with the per-connection settings applied."""
        conn = self.module().connect(*self.connargs, **self.connkw)
        self.prepare_connection(conn)
        return conn

    def prepare_connection(self, conn: Any) -> None:
        """Per-connection settings (adbapi's ``cp_openfun``)."""
        if self.is_postgres:
            return
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA synchronous = {self.sqlite_sync.upper()}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")

    def is_transient(self, error: BaseException) -> bool:
        """Worth retrying the whole transaction: lock waits, serialization, lost races."""
        if self.is_postgres:
            errors = _import_psycopg().errors
            return isinstance(
                error,
                errors.SerializationFailure | errors.DeadlockDetected | errors.UniqueViolation,
            )
        if isinstance(error, sqlite3.OperationalError):
            text = str(error).lower()
            return "locked" in text or "busy" in text
        return False

    def is_unavailable(self, error: BaseException) -> bool:
        """The database cannot be reached (as opposed to a bug or a constraint)."""
        if self.is_postgres:
            return isinstance(error, _import_psycopg().OperationalError)
        return isinstance(error, sqlite3.OperationalError) and not self.is_transient(error)


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise BackendOptionError(
            "url: PostgreSQL needs psycopg 3 (pip install 'mailserv[sql]')"
        ) from exc
    return psycopg


_SQLITE_SLOTS = MappingProxyType(
    {
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "blob": "BLOB",
        "bigint": "INTEGER",
        "without_rowid": " WITHOUT ROWID",
    }
)
_POSTGRES_SLOTS = MappingProxyType(
    {
        "serial": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "blob": "BYTEA",
        "bigint": "BIGINT",
        "without_rowid": "",
    }
)


def parse_url(
    url: str | None,
    data_dir: str,
    sqlite_sync: str = DEFAULT_SQLITE_SYNC,
    flag_durability: str = DEFAULT_FLAG_DURABILITY,
) -> Dialect:
    """A Dialect for ``url``; BackendOptionError names what is wrong.

    ``sqlite:///abs/path.db`` (absolute, as in file URLs), ``sqlite:rel/path.db`` (relative
    to ``data_dir``), ``sqlite:`` or no URL at all (``data_dir``/mail.db);
    ``postgresql://user:password@host:port/dbname?options`` (libpq's own URI syntax).
    """
    if sqlite_sync not in SQLITE_SYNC:
        raise BackendOptionError(f"sqlite-sync must be one of {', '.join(SQLITE_SYNC)}")
    if flag_durability not in FLAG_DURABILITY:
        raise BackendOptionError(f"flag-durability must be one of {', '.join(FLAG_DURABILITY)}")
    if not url:
        url = "sqlite:"
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _sqlite(rest, data_dir, sqlite_sync, flag_durability)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url, flag_durability)
    raise BackendOptionError(
        f"url: unsupported database {scheme!r} (use sqlite:///path or postgresql://...)"
    )


def _sqlite(rest: str, data_dir: str, sync: str, flag_durability: str) -> Dialect:
    if rest.startswith("//"):
        parts = urlsplit("sqlite:" + rest)
        if parts.netloc not in ("", "localhost"):
            raise BackendOptionError("url: an sqlite URL names a file, not a host")
        path = unquote(parts.path)
        if parts.query:
            raise BackendOptionError("url: sqlite URLs take no ?options")
    else:
        path = unquote(rest)
    if path in ("", "/"):
        path = DEFAULT_SQLITE_NAME
    if path == ":memory:" or path.startswith("file:"):
        raise BackendOptionError("url: the sql backend needs an SQLite file, not :memory:")
    path = os.path.join(data_dir, path)  # an absolute path stays as it is
    return Dialect(
        name="sqlite",
        driver="sqlite3",
        connargs=(path,),
        connkw=MappingProxyType({"check_same_thread": False, "isolation_level": None}),
        slots=_SQLITE_SLOTS,
        placeholder="?",
        display=f"sqlite:///{os.path.abspath(path).lstrip('/')}",
        sqlite_sync=sync,
        flag_durability=flag_durability,
    )


def _postgres(url: str, flag_durability: str) -> Dialect:
    parts = urlsplit(url)
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise BackendOptionError("url: a postgresql URL must name the database")
    shown = parts.hostname or "localhost"
    if parts.port:
        shown += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return Dialect(
        name="postgresql",
        driver="psycopg",
        connargs=(url,),
        connkw=MappingProxyType({}),
        slots=_POSTGRES_SLOTS,
        placeholder="%s",
        display=f"postgresql://{user}{shown}{parts.path}",
        flag_durability=flag_durability,
    )


def sqlite_path(dialect: Dialect) -> str:
    """The database file of an SQLite dialect."""
    path: str = dialect.connargs[0]
    return path
