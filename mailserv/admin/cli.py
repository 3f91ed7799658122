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
from typing import TYPE_CHECKING, Any, TextIO

from mailserv.admin import db
from mailserv.admin.transfer import Progress, StateLog, TransferError, state_path
from mailserv.auth.apppasswords import FILE_NAME as APP_PASSWORDS
from mailserv.auth.apppasswords import (
    IMAP_LOGIN_MODES,
    AppPasswordFile,
    IAppPasswordAdmin,
    SqlAppPasswords,
)
from mailserv.auth.passwd import InvalidUsername, PasswdError, PasswdFile, check_username
from mailserv.auth.schemes import DEFAULT_SCHEME, HASH_SCHEMES, hash_password
from mailserv.config import DEFAULT_DATA_DIR, Config, ConfigError, load_config, parse_assignment
from mailserv.delivery import agent
from mailserv.delivery.sieve import check_script, sieve_store
from mailserv.delivery.sievescript import MAX_SCRIPT, SieveError
from mailserv.delivery.sievestore import ScriptStore, StoreError
from mailserv.errors import BackendError
from mailserv.quota import StoredQuota, parse_count, parse_storage, storage_text

if TYPE_CHECKING:
    from mailserv.admin.backup import UserStores
    from mailserv.admin.mailstore import MailStore
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

    show = actions.add_parser("show", help="show a user's entry (not the hash)", parents=[common])
    show.add_argument("name")
    show.set_defaults(handler=_user_show)
    _app_password_commands(areas, actions, common)
    db.add_commands(areas, common)
    agent.add_command(areas, common)
    _sieve_commands(areas, common)
    _add_transfer_commands(areas, common)
    _backup_commands(areas, common)
    return parser


# -- mailserv backup / restore (mailserv.admin.backup, mailserv.admin.restore) -------------


def _backup_commands(areas: Any, common: argparse.ArgumentParser) -> None:
    store = _store_options()
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
    restore.add_argument(
        "--accounts",
        choices=("keep", "replace", "none"),
        default="keep",
        help="keep: add users the user store lacks, leave existing ones alone; replace: also "
        "set existing users' passwords, quotas and imap-login to the backup's; none: leave "
        "the user store alone [default: keep]",
    )
    restore.set_defaults(handler=_restore)


def _backup(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.admin.backup import BackupError, backup

    config = _transfer_config(args)
    if args.user is not None:
        _check_user(args)
    stores = _user_stores(args, create=False)
    users = [args.user] if args.user is not None else list(stores.users.users())
    try:
        backup(config, users, args.dest, out, stores=stores)
    except BackupError as exc:
        raise CommandError(str(exc)) from exc


def _restore(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.admin.backup import BackupError
    from mailserv.admin.restore import restore

    config = _transfer_config(args)
    if args.user is not None:
        check_username(args.user)
    users = [args.user] if args.user is not None else None
    if args.folder is not None and users is None:
        raise CommandError("--folder needs --user", EXIT_USAGE)
    stores = None
    if args.accounts != "none" and args.folder is None:
        stores = _user_stores(args, create=not args.dry_run, absent_ok=args.dry_run)
    try:
        restore(
            config,
            args.source,
            users,
            args.folder,
            args.dry_run,
            out,
            sys.stderr,
            stores,
            args.accounts,
        )
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


def _sends_mail(args: argparse.Namespace) -> bool:
    """Whether the configuration (``--config``) names a submission host (so scripts may
    redirect)."""
    if not getattr(args, "config", None):
        return False
    try:
        return load_config({}, args.config).submission is not None
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def _sieve_put(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    store = _scripts(args)
    if args.file:
        with open(args.file, "rb") as f:
            source = f.read(MAX_SCRIPT + 1)
    else:
        source = stdin.buffer.read(MAX_SCRIPT + 1) if hasattr(stdin, "buffer") else b""
    try:
        check_script(source, _sends_mail(args))
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


# -- mailserv import / export ---------------------------------------------------------------


def _store_options() -> argparse.ArgumentParser:
    """``--backend`` and ``--backend-option``, read by ``_transfer_config``."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--backend", default=argparse.SUPPRESS, help="the backend (as the server's)")
    store.add_argument(
        "--backend-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a backend option, as the server's --backend-option; repeatable",
    )
    return store


def _add_transfer_commands(
    areas: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:  # type: ignore[type-arg]
    store = _store_options()
    store.add_argument("--quiet", action="store_true", help="no progress bar")
    parents = [common, store]
    imports = areas.add_parser(
        "import",
        help="import mail from an mbox file, a Maildir or another IMAP server",
        parents=parents,
    )
    imports.add_argument("user")
    imports.add_argument(
        "source", help="an mbox file, a directory of *.mbox, a Maildir, or imap[s]://user@host:port"
    )
    imports.add_argument("--folder", metavar="F", help="import into F (a tree: under F)")
    imports.add_argument("--password-file", metavar="FILE", help="IMAP source: its password")
    imports.add_argument(
        "--master-user", metavar="NAME", help="IMAP source: sign in as USER*NAME (Dovecot)"
    )
    imports.add_argument("--ca-file", metavar="FILE", help="IMAP source: CA certificates (PEM)")
    imports.add_argument(
        "--layout",
        choices=("fs", "maildir++"),
        help="Maildir source: Dovecot's LAYOUT=fs or Maildir++ [default: as found]",
    )
    imports.set_defaults(handler=_import)
    exports = areas.add_parser(
        "export", help="export a user's mail to a Maildir or to mbox files", parents=parents
    )
    exports.add_argument("user")
    exports.add_argument("directory")
    exports.add_argument("--format", choices=("maildir", "mbox"), default="maildir")
    exports.add_argument(
        "--layout",
        choices=("fs", "maildir++"),
        help="--format maildir: Dovecot's LAYOUT=fs or Maildir++ [default: maildir++]",
    )
    exports.set_defaults(handler=_export)


def _transfer_config(args: argparse.Namespace) -> Config:
    """The server's configuration as these options and ``--config`` make it."""
    given: dict[str, object] = {}
    for option in ("data_dir", "passwd_file", "backend"):
        if getattr(args, option, None):
            given[option.replace("_", "-")] = getattr(args, option)
    backend_options = dict(
        parse_assignment(text, "--backend-option") for text in args.backend_option
    )
    if getattr(args, "db", None):
        given.setdefault("backend", db.SQL_BACKEND)
        backend_options["url"] = args.db
    if backend_options:
        given["backend-option"] = backend_options
    try:
        return load_config(given, getattr(args, "config", None))
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc


def _check_user(args: argparse.Namespace) -> None:
    check_username(args.user)
    if _open_passwd(args, create=False).lookup(args.user) is None:
        raise CommandError(f"no user {args.user!r}")


def _open_transfer(args: argparse.Namespace, create: bool) -> tuple[Config, MailStore]:
    _check_user(args)
    from mailserv.admin.mailstore import StoreError, open_store

    config = _transfer_config(args)
    try:
        return config, open_store(config, args.user, create)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc


def _source_password(args: argparse.Namespace, stdin: TextIO) -> Callable[[], str]:
    def password() -> str:
        if args.password_file:
            with open(args.password_file, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        if not stdin.isatty():
            raise CommandError("no terminal to ask for the source's password; use --password-file")
        return getpass.getpass("Password of the source: ")

    return password


def _import(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.admin.importer import Importer
    from mailserv.admin.sources import open_source

    _check_user(args)
    try:
        source = open_source(
            args.source, _source_password(args, stdin), args.master_user, args.ca_file,
            args.layout,
        )  # fmt: skip
    except TransferError as exc:
        raise CommandError(str(exc)) from exc
    try:
        config, store = _open_transfer(args, create=True)
    except BaseException:
        source.close()
        raise
    identity = f"{source.identity} -> {args.folder or ''}"
    state = StateLog(state_path(config.data_dir, "import", args.user, identity))
    progress = Progress(source.total, source.unit, args.quiet, "import")
    try:
        counts = Importer(store, state, args.folder, progress, source.measure).run(source.messages)
    except (TransferError, BackendError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        progress.close()
        state.close()
        source.close()
        store.close()
    out.write(
        f"imported {counts.imported} messages into {len(counts.folders)} folders of {args.user}"
        f" ({counts.skipped} already imported by an earlier run)\n"
    )


def _export(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    from mailserv.admin.exporter import Exporter

    if args.layout is not None and args.format != "maildir":
        raise CommandError("--layout is for --format maildir", EXIT_USAGE)
    layout = args.layout or "maildir++"
    config, store = _open_transfer(args, create=False)
    kind = args.format if layout == "maildir++" else f"{args.format} {layout}"
    identity = f"{os.path.realpath(args.directory)} ({kind})"
    state = StateLog(state_path(config.data_dir, "export", args.user, identity))
    exporter = Exporter(store, args.directory, args.format, state, args.quiet, layout)
    try:
        written = exporter.run()
    except (TransferError, BackendError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        state.close()
        store.close()
    out.write(
        f"exported {written} messages of {args.user} to {args.directory} ({args.format})"
        f" ({exporter.skipped} already written by an earlier run)\n"
    )


def _user_show(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    check_username(args.name)
    entry = _open_passwd(args, create=False).lookup(args.name)
    if entry is None:
        raise CommandError(f"no user {args.name!r}")
    scheme = entry.password[1:].partition("}")[0] if entry.password.startswith("{") else ""
    fields = [("user", entry.user), ("scheme", scheme or "(crypt)"), ("uid", entry.uid)]
    fields += [("gid", entry.gid), ("home", entry.home), ("extra", entry.extra)]
    fields += _quota_fields(entry.quota)
    out.writelines(f"{key}: {value}\n" for key, value in fields if value)


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
        choices=IMAP_LOGIN_MODES,
        help="app-passwords: over IMAP, refuse the main password (app passwords and OAuth "
        "still work); any: accept it again",
    )
    settings.add_argument(
        "--quota-storage",
        metavar="SIZE",
        help="the user's storage quota: KiB, or with a suffix B, k, M, G, T (1G); 0: no "
        "limit; 'default': the configuration's",
    )
    settings.add_argument(
        "--quota-messages",
        metavar="N",
        help="the user's message-count quota; 0: no limit; 'default': the configuration's",
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
    return _app_store(users)


def _app_store(users: PasswdFile | SqlUsers) -> IAppPasswordAdmin:
    """The app passwords kept beside ``users``."""
    if isinstance(users, PasswdFile):
        return AppPasswordFile(os.path.join(os.path.dirname(users.path), APP_PASSWORDS))
    return SqlAppPasswords(users.database)


def _user_stores(args: argparse.Namespace, create: bool, absent_ok: bool = False) -> UserStores:
    """The user store and its app passwords, for ``backup`` and ``restore``;
    ``absent_ok``: a passwd-file not there yet reads as empty, and is not created (a dry
    run into a new install)."""
    from mailserv.admin.backup import UserStores

    path = resolve_passwd_path(args)
    if absent_ok and not db.locate(args).users_in_db and not os.path.exists(path):
        users: PasswdFile | SqlUsers = PasswdFile(path)
    else:
        users = _open_passwd(args, create=create)
    return UserStores(users, _app_store(users))


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
    if args.imap_login is None and args.quota_storage is None and args.quota_messages is None:
        raise CommandError(
            "nothing to set: give --imap-login, --quota-storage or --quota-messages", EXIT_USAGE
        )
    if args.quota_storage is not None or args.quota_messages is not None:
        _set_quota(args, out)
    if args.imap_login is not None:
        _app_passwords(args).set_imap_login(args.name, args.imap_login)
        out.write(f"imap-login of {args.name}: {args.imap_login}\n")


def _quota_value(
    option: str, text: str | None, kept: int | None, parse: Callable[[str], int]
) -> int | None:
    """The new value of one resource: ``kept`` when the option is absent, None for
    ``default``."""
    if text is None:
        return kept
    if text == "default":
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}", EXIT_USAGE) from exc


def _set_quota(args: argparse.Namespace, out: TextIO) -> None:
    check_username(args.name)
    users = _open_passwd(args, create=False)
    entry = users.lookup(args.name)
    if entry is None:
        raise CommandError(f"no user {args.name!r}")
    kept = entry.quota
    quota = StoredQuota(
        _quota_value("--quota-storage", args.quota_storage, kept.storage, parse_storage),
        _quota_value("--quota-messages", args.quota_messages, kept.messages, parse_count),
    )
    users.set_quota(args.name, quota)
    shown = _quota_fields(quota)
    text = ", ".join(f"{key} {value}" for key, value in shown) or "the configuration's"
    out.write(f"quota of {args.name}: {text}\n")


def _quota_fields(quota: StoredQuota) -> list[tuple[str, str]]:
    """What ``quota`` sets, as (name, text) pairs; ``0`` reads "no limit"."""
    fields = []
    if quota.storage is not None:
        fields.append(("quota-storage", storage_text(quota.storage) if quota.storage else "0"))
    if quota.messages is not None:
        fields.append(("quota-messages", str(quota.messages)))
    return [(key, "0 (no limit)" if value == "0" else value) for key, value in fields]


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
