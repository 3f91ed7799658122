"""``mailserv db upgrade|check``, and where the CLI finds the SQL backend's database.

The database is the one the server would use: ``--db URL`` if given, else the ``url``
backend option of ``--config`` (when it selects the sql backend), else the default SQLite
file in the data directory.  ``mailserv user ...`` works on the database's users table when
``--db`` is given or the configuration says ``auth = "sql"``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from mailserv.config import DEFAULT_DATA_DIR, Config, ConfigError, load_config
from mailserv.errors import BackendError, BackendOptionError

if TYPE_CHECKING:  # the SQL modules load only when a command needs them (CLI start-up time)
    from mailserv.auth.sqlusers import SqlUsers
    from mailserv.backends.sql.db import InlineDatabase
    from mailserv.backends.sql.dialect import Dialect

SQL_BACKEND = "sql"


class DatabaseCommandError(Exception):
    """Reported on stderr with exit status 1 (the CLI's failure status)."""


@dataclass(frozen=True)
class Location:
    """Where the database is, and whether logins are checked against it."""

    url: str | None
    data_dir: str
    users_in_db: bool


def add_commands(areas: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """The ``db`` command family, with the CLI's shared location options."""
    db = areas.add_parser("db", help="the sql backend's database schema", parents=[common])
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    upgrade = actions.add_parser(
        "upgrade", help="create the schema or apply pending migrations", parents=[common]
    )
    upgrade.set_defaults(handler=_upgrade)
    check = actions.add_parser(
        "check", help="print the schema version; exit 1 unless it is current", parents=[common]
    )
    check.set_defaults(handler=_check)


def locate(args: argparse.Namespace) -> Location:
    """The database the server configured by these options would use."""
    config = _config(args)
    data_dir = getattr(args, "data_dir", None) or (config.data_dir if config else DEFAULT_DATA_DIR)
    url = getattr(args, "db", None)
    users_in_db = url is not None
    if url is None and config is not None and config.backend == SQL_BACKEND:
        url = config.backend_options.get("url")
        users_in_db = config.backend_options.get("auth") == "sql"
        if getattr(args, "passwd_file", None):
            users_in_db = False  # an explicit passwd-file wins over the configuration
    return Location(url, data_dir, users_in_db)


def _config(args: argparse.Namespace) -> Config | None:
    path = getattr(args, "config", None)
    if not path:
        return None
    try:
        return load_config({}, path)
    except ConfigError as exc:
        raise DatabaseCommandError(str(exc)) from exc


def open_database(location: Location, create: bool = False) -> InlineDatabase:
    """The database at ``location``; an SQLite file (and its directory) is made only if
    ``create``, so that a mistyped path is reported rather than silently created."""
    from mailserv.backends.sql.db import InlineDatabase
    from mailserv.backends.sql.dialect import parse_url, sqlite_path

    try:
        dialect = parse_url(location.url, location.data_dir)
    except BackendOptionError as exc:
        raise DatabaseCommandError(str(exc)) from exc
    if not dialect.is_postgres:
        path = sqlite_path(dialect)
        if create:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        elif not os.path.exists(path):
            raise DatabaseCommandError(f"no database file {path}")
    return InlineDatabase(dialect)


def sql_users(args: argparse.Namespace, create: bool) -> SqlUsers | None:
    """The users table when the options put users in the database, else None.

    With ``create``, an empty database gets its schema first (as the server's first start
    would do), so users can be added before the server ever ran.
    """
    location = locate(args)
    if not location.users_in_db:
        return None
    from mailserv.auth.sqlusers import SqlUsers
    from mailserv.backends.sql import schema

    database = open_database(location, create=create)
    try:
        if create:
            database.call(schema.prepare, write=True)
        else:
            version = database.call(schema.current_version)
            if version is None:
                raise DatabaseCommandError(f"{_shown(database.dialect)} holds no mailserv schema")
    except (BackendError, schema.SchemaError) as exc:
        database.close()
        raise DatabaseCommandError(str(exc)) from exc
    return SqlUsers(database)


def _shown(dialect: Dialect) -> str:
    return dialect.display


def _upgrade(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.backends.sql import schema

    database = open_database(locate(args), create=True)
    try:
        applied = database.call(schema.upgrade, write=True)
    except (BackendError, schema.SchemaError) as exc:
        raise DatabaseCommandError(str(exc)) from exc
    finally:
        database.close()
    shown = _shown(database.dialect)
    if applied:
        out.write(f"{shown}: applied migrations {', '.join(map(str, applied))}; ")
        out.write(f"schema version {applied[-1]}\n")
    else:
        out.write(f"{shown}: schema version {schema.LATEST}, up to date\n")


def _check(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.backends.sql import schema

    database = open_database(locate(args))
    try:
        version = database.call(schema.current_version)
    except BackendError as exc:
        raise DatabaseCommandError(str(exc)) from exc
    finally:
        database.close()
    shown = _shown(database.dialect)
    if version is None:
        raise DatabaseCommandError(
            f"{shown}: no mailserv schema (the server creates it on first start, "
            "or run `mailserv db upgrade`)"
        )
    if version < schema.LATEST:
        raise DatabaseCommandError(
            f"{shown}: schema version {version}, this mailserv needs {schema.LATEST}: "
            "run `mailserv db upgrade`"
        )
    if version > schema.LATEST:
        raise DatabaseCommandError(
            f"{shown}: schema version {version} is newer than this mailserv ({schema.LATEST})"
        )
    out.write(f"{shown}: schema version {version}, up to date\n")
