"""The ``mailserv`` command: manage the users of the passwd-file (or of the SQL database,
see ``mailserv.admin.db``) and the SQL backend's schema.

Edits reach a running server at once (it re-reads the file when it changes).  Exit status:
0 success, 1 the operation failed (unknown user, file error...), 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from mailserv.admin import db
from mailserv.auth.passwd import InvalidUsername, PasswdError, PasswdFile, check_username
from mailserv.auth.schemes import DEFAULT_SCHEME, HASH_SCHEMES, hash_password
from mailserv.config import DEFAULT_DATA_DIR, Config, ConfigError, load_config
from mailserv.delivery import agent
from mailserv.delivery.sieve import check_script, sieve_store
from mailserv.delivery.sievescript import MAX_SCRIPT, SieveError
from mailserv.delivery.sievestore import ScriptStore, StoreError

if TYPE_CHECKING:
    from mailserv.auth.sqlusers import SqlUsers

PASSWD_NAME = "passwd"
DIR_MODE = 0o700
MAX_PASSWORD_BYTES = 4096

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure to report on stderr, with the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def _location_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the sub-command (``mailserv user add --data-dir``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"data directory; the users are in DIR/{PASSWD_NAME} (default ./{DEFAULT_DATA_DIR})",
    )
    common.add_argument(
        "--passwd-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="the passwd-file itself (overrides --data-dir)",
    )
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML file with 'data-dir' and/or 'passwd-file' keys (command-line options win)",
    )
    common.add_argument(
        "--db",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the sql backend's database (its url option); users are then kept there",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _location_options()
    parser = argparse.ArgumentParser(
        prog="mailserv", description="Administer a mailserv installation.", parents=[common]
    )
    areas = parser.add_subparsers(dest="area", metavar="COMMAND", required=True)
    user = areas.add_parser("user", help="manage users", parents=[common])
    actions = user.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="create a user", parents=[common])
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _scheme_option(add)
    add.set_defaults(handler=_user_add)

    passwd = actions.add_parser("passwd", help="set a user's password", parents=[common])
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    _scheme_option(passwd)
    passwd.set_defaults(handler=_user_passwd)

    delete = actions.add_parser("del", help="delete a user", parents=[common])
    delete.add_argument("name")
    delete.set_defaults(handler=_user_del)

    listing = actions.add_parser("list", help="list the users", parents=[common])
    listing.set_defaults(handler=_user_list)
    db.add_commands(areas, common)
    agent.add_command(areas, common)
    _sieve_commands(areas, common)
    _backup_commands(areas, common)
    return parser


# -- mailserv backup / restore (mailserv.admin.backup, mailserv.admin.restore) -------------


def _backup_commands(areas: Any, common: argparse.ArgumentParser) -> None:
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--backend", default=argparse.SUPPRESS, help="mail store plugin")
    store.add_argument(
        "--backend-option",
        metavar="KEY=VALUE",
        action="append",
        default=argparse.SUPPRESS,
        help="passed to the backend; repeatable",
    )
    store.add_argument("--user", metavar="USER", help="only this user [default: everyone]")
    parents = [common, store]
    backup = areas.add_parser(
        "backup", help="copy the mail store to DEST (incremental)", parents=parents
    )
    backup.add_argument("dest", metavar="DEST")
    backup.set_defaults(handler=_backup)
    restore = areas.add_parser(
        "restore", help="append what a backup holds and the store lacks", parents=parents
    )
    restore.add_argument("source", metavar="SRC")
    restore.add_argument("--folder", metavar="F", help="only this folder")
    restore.add_argument("--dry-run", action="store_true", help="print what would be done")
    restore.set_defaults(handler=_restore)


def _backup_config(args: argparse.Namespace) -> Config:
    try:
        return agent.store_config(args)
    except agent.DeliveryExit as exc:
        raise CommandError(str(exc)) from exc


def _backup(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.admin.backup import BackupError, backup

    config = _backup_config(args)
    passwd = _open_passwd(args, create=False)
    if args.user is not None:
        check_username(args.user)
        if passwd.lookup(args.user) is None:
            raise CommandError(f"no user {args.user!r}")
    users = [args.user] if args.user is not None else list(passwd.users())
    try:
        backup(config, users, args.dest, out)
    except BackupError as exc:
        raise CommandError(str(exc)) from exc


def _restore(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.admin.backup import BackupError
    from mailserv.admin.restore import restore

    config = _backup_config(args)
    if args.user is not None:
        check_username(args.user)
    users = [args.user] if args.user is not None else None
    if args.folder is not None and users is None:
        raise CommandError("--folder needs --user", EXIT_USAGE)
    try:
        restore(config, args.source, users, args.folder, args.dry_run, out)
    except BackupError as exc:
        raise CommandError(str(exc)) from exc


# -- mailserv sieve: users' Sieve scripts (mailserv.delivery.sievestore) ------------------


def _sieve_commands(areas: Any, common: argparse.ArgumentParser) -> None:
    sieve = areas.add_parser("sieve", help="manage users' Sieve scripts", parents=[common])
    actions = sieve.add_subparsers(dest="action", metavar="ACTION", required=True)
    put = actions.add_parser("put", help="check and store a script", parents=[common])
    put.add_argument("user")
    put.add_argument("name")
    put.add_argument("file", nargs="?", help="the script [default: standard input]")
    put.add_argument("--activate", action="store_true", help="make it the active script")
    put.set_defaults(handler=_sieve_put)
    for verb, text in (("get", "print a script"), ("delete", "delete a script")):
        action = actions.add_parser(verb, help=text, parents=[common])
        action.add_argument("user")
        action.add_argument("name")
        action.set_defaults(handler=_sieve_get if verb == "get" else _sieve_delete)
    activate = actions.add_parser(
        "activate", help="make NAME the active script (none: no script)", parents=[common]
    )
    activate.add_argument("user")
    activate.add_argument("name", nargs="?")
    activate.set_defaults(handler=_sieve_activate)
    listing = actions.add_parser("list", help="list a user's scripts", parents=[common])
    listing.add_argument("user")
    listing.set_defaults(handler=_sieve_list)


def _scripts(args: argparse.Namespace) -> ScriptStore:
    check_username(args.user)
    data_dir = getattr(args, "data_dir", None)
    if not data_dir:
        try:
            data_dir = load_config({}, getattr(args, "config", None)).data_dir
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
    return sieve_store(data_dir)


def _sieve_put(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    store = _scripts(args)
    if args.file:
        with open(args.file, "rb") as f:
            source = f.read(MAX_SCRIPT + 1)
    else:
        source = stdin.buffer.read(MAX_SCRIPT + 1) if hasattr(stdin, "buffer") else b""
    try:
        check_script(source)
        store.put(args.user, args.name, source)
        if args.activate:
            store.activate(args.user, args.name)
    except (SieveError, StoreError) as exc:
        raise CommandError(f"script {args.name!r}: {exc}") from exc
    out.write(f"script {args.name} stored{' and active' if args.activate else ''}\n")


def _sieve_get(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    try:
        source = _scripts(args).get(args.user, args.name)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    out.write(source.decode("utf-8", "replace"))


def _sieve_delete(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    try:
        _scripts(args).delete(args.user, args.name)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    out.write(f"script {args.name} deleted\n")


def _sieve_activate(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    try:
        _scripts(args).activate(args.user, args.name)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    out.write(f"script {args.name} active\n" if args.name else "no script active\n")


def _sieve_list(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    for name, active in _scripts(args).list(args.user):
        out.write(f"{name}{' ACTIVE' if active else ''}\n")


def _scheme_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheme",
        type=str.upper,
        choices=HASH_SCHEMES,
        default=DEFAULT_SCHEME,
        help=f"how to store the password [default: {DEFAULT_SCHEME}]; SCRAM-SHA-256 stores "
        "SCRAM keys, which AUTHENTICATE SCRAM-SHA-256(-PLUS) needs (LOGIN works with both)",
    )


def _hash(args: argparse.Namespace, stdin: TextIO) -> str:
    try:
        return hash_password(_password(args, stdin), scheme=args.scheme)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def resolve_passwd_path(args: argparse.Namespace) -> str:
    """Where the passwd-file is: options first, then the config file, then the default.

    The config file is read exactly as the server reads it (``mailserv.config``), so both
    agree on relative paths (taken from the file's directory) and on defaults.
    """
    if getattr(args, "passwd_file", None):
        return str(args.passwd_file)
    if getattr(args, "data_dir", None):
        return os.path.join(args.data_dir, PASSWD_NAME)
    config_path = getattr(args, "config", None)
    if config_path:
        try:
            return load_config({}, config_path).passwd_path
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
    return os.path.join(DEFAULT_DATA_DIR, PASSWD_NAME)


def _open_passwd(args: argparse.Namespace, *, create: bool) -> PasswdFile | SqlUsers:
    """The passwd-file, or the SQL users table when the options say users live there."""
    users = db.sql_users(args, create)
    if users is not None:
        return users
    path = resolve_passwd_path(args)
    directory = os.path.dirname(path) or "."
    if create:
        try:
            os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
            if not os.path.exists(path):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise CommandError(f"cannot create {path}: {exc.strerror}") from exc
    elif not os.path.exists(path):
        raise CommandError(f"passwd-file {path} does not exist")
    return PasswdFile(path)


def _password(args: argparse.Namespace, stdin: TextIO) -> bytes:
    if args.password_stdin:
        raw = stdin.buffer if hasattr(stdin, "buffer") else None
        if raw is not None:
            line = raw.readline(MAX_PASSWORD_BYTES + 3).decode("utf-8", "surrogateescape")
        else:
            line = stdin.readline(MAX_PASSWORD_BYTES + 3)
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        if not stdin.isatty():
            raise CommandError("no terminal to ask for the password; use --password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise CommandError("the passwords do not match")
    if not password:
        raise CommandError("the password is empty")
    encoded = password.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise CommandError("password too long")
    return encoded


def _user_add(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    check_username(args.name)
    passwd = _open_passwd(args, create=True)
    if passwd.lookup(args.name) is not None:
        raise CommandError(f"user {args.name!r} already exists")
    passwd.add_user(args.name, _hash(args, stdin))
    out.write(f"user {args.name} added\n")


def _user_passwd(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    check_username(args.name)
    passwd = _open_passwd(args, create=False)
    if passwd.lookup(args.name) is None:
        raise CommandError(f"no user {args.name!r}")
    passwd.set_password(args.name, _hash(args, stdin))
    out.write(f"password of {args.name} changed\n")


def _user_del(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    check_username(args.name)
    _open_passwd(args, create=False).remove_user(args.name)
    out.write(f"user {args.name} deleted\n")


def _user_list(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    users = db.sql_users(args, create=False)
    if users is not None:
        out.writelines(name + "\n" for name in users.users())
        return
    path = resolve_passwd_path(args)
    if not os.path.exists(path):
        return  # no file yet: no users
    out.writelines(name + "\n" for name in _open_passwd(args, create=False).users())


Handler = Callable[[argparse.Namespace, TextIO, TextIO], None]


def _area(argv: list[str] | None) -> str | None:
    """The command word of a command line (``user``, ``db``, ``deliver``), if any."""
    words = sys.argv[1:] if argv is None else argv
    return next((w for w in words if w in ("user", "db", "deliver")), None)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        return agent.EX_USAGE if code == EXIT_USAGE and _area(argv) == "deliver" else code
    handler: Handler = args.handler
    try:
        handler(args, sys.stdout, sys.stdin)
    except agent.DeliveryExit as exc:  # sysexits statuses, for the MTA
        sys.stderr.write(f"mailserv deliver: {exc}\n")
        return exc.status
    except InvalidUsername as exc:
        sys.stderr.write(f"mailserv: invalid user name: {exc}\n")
        return EXIT_USAGE
    except (CommandError, PasswdError, db.DatabaseCommandError) as exc:
        sys.stderr.write(f"mailserv: {exc}\n")
        return exc.status if isinstance(exc, CommandError) else EXIT_FAILURE
    except OSError as exc:
        name = exc.filename or ""
        sys.stderr.write(f"mailserv: {name}{': ' if name else ''}{exc.strerror or exc}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        sys.stderr.write("mailserv: interrupted\n")
        return EXIT_FAILURE
    return EXIT_OK
