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
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from mailserv.admin import db
from mailserv.auth.apppasswords import FILE_NAME as APP_PASSWORDS
from mailserv.auth.apppasswords import (
    IMAP_LOGIN_MODES,
    AppPasswordFile,
    IAppPasswordAdmin,
    SqlAppPasswords,
)
from mailserv.auth.passwd import InvalidUsername, PasswdError, PasswdFile, check_username
from mailserv.auth.schemes import hash_password
from mailserv.config import DEFAULT_DATA_DIR, ConfigError, load_config

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
    add.set_defaults(handler=_user_add)

    passwd = actions.add_parser("passwd", help="set a user's password", parents=[common])
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    passwd.set_defaults(handler=_user_passwd)

    delete = actions.add_parser("del", help="delete a user", parents=[common])
    delete.add_argument("name")
    delete.set_defaults(handler=_user_del)

    listing = actions.add_parser("list", help="list the users", parents=[common])
    listing.set_defaults(handler=_user_list)
    _app_password_commands(areas, actions, common)
    db.add_commands(areas, common)
    return parser


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
    passwd.add_user(args.name, hash_password(_password(args, stdin)))
    out.write(f"user {args.name} added\n")


def _user_passwd(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    check_username(args.name)
    passwd = _open_passwd(args, create=False)
    if passwd.lookup(args.name) is None:
        raise CommandError(f"no user {args.name!r}")
    passwd.set_password(args.name, hash_password(_password(args, stdin)))
    out.write(f"password of {args.name} changed\n")


def _user_del(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    check_username(args.name)
    _open_passwd(args, create=False).remove_user(args.name)
    _forget_app_passwords(args, args.name)
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


# -- app passwords and sign-in settings (mailserv.auth.apppasswords) ------------------


def _app_password_commands(
    areas: argparse._SubParsersAction,  # type: ignore[type-arg]
    user_actions: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    settings = user_actions.add_parser("set", help="change a user's settings", parents=[common])
    settings.add_argument("name")
    settings.add_argument(
        "--imap-login",
        required=True,
        choices=IMAP_LOGIN_MODES,
        help="app-passwords: over IMAP, refuse the main password (app passwords and OAuth "
        "still work); any: accept it again",
    )
    settings.set_defaults(handler=_user_set)
    area = areas.add_parser("app-password", help="manage users' app passwords", parents=[common])
    actions = area.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="make an app password and print it (shown only once)", parents=[common]
    )
    add.add_argument("name")
    add.add_argument("--label", required=True, help="what it is for, e.g. phone")
    add.set_defaults(handler=_app_add)
    listing = actions.add_parser(
        "list", help="id, creation, last use and label of each", parents=[common]
    )
    listing.add_argument("name")
    listing.set_defaults(handler=_app_list)
    revoke = actions.add_parser(
        "revoke", help="end an app password and the sessions using it", parents=[common]
    )
    revoke.add_argument("name")
    revoke.add_argument("which", metavar="ID|LABEL")
    revoke.set_defaults(handler=_app_revoke)


def _app_passwords(args: argparse.Namespace) -> IAppPasswordAdmin:
    """The user's app passwords, where the server looks (after checking the user exists)."""
    check_username(args.name)
    users = _open_passwd(args, create=False)
    if users.lookup(args.name) is None:
        raise CommandError(f"no user {args.name!r}")
    if isinstance(users, PasswdFile):
        return AppPasswordFile(os.path.join(os.path.dirname(users.path), APP_PASSWORDS))
    return SqlAppPasswords(users.database)


def _forget_app_passwords(args: argparse.Namespace, user: str) -> None:
    if db.sql_users(args, create=False) is None:  # SQL: the rows went with the user
        path = resolve_passwd_path(args)
        AppPasswordFile(os.path.join(os.path.dirname(path), APP_PASSWORDS)).remove_user(user)


def _when(stamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(stamp)) if stamp else "never"


def _app_add(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    record, shown = _app_passwords(args).add(args.name, args.label, hash_password)
    out.write(f"app password {record.id} ({record.label}) of {args.name}; shown only once:\n")
    out.write(shown + "\n")


def _app_list(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    records = _app_passwords(args).listing(args.name)
    out.write(f"{'ID':<6} {'CREATED':<21} {'LAST USED':<21} LABEL\n")
    for r in records:
        out.write(f"{r.id:<6} {_when(r.created):<21} {_when(r.last_used):<21} {r.label}\n")


def _app_revoke(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    record = _app_passwords(args).revoke(args.name, args.which)
    out.write(f"app password {record.id} ({record.label}) of {args.name} revoked\n")


def _user_set(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    _app_passwords(args).set_imap_login(args.name, args.imap_login)
    out.write(f"imap-login of {args.name}: {args.imap_login}\n")


Handler = Callable[[argparse.Namespace, TextIO, TextIO], None]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Handler = args.handler
    try:
        handler(args, sys.stdout, sys.stdin)
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
