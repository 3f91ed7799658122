"""``mailserv restore [--user USER] [--folder F] [--dry-run] SRC``: bring mail back from a
backup that ``mailserv backup`` made (see :mod:`mailserv.admin.backup` for its layout).

Appends what the store lacks and never changes or removes what it has: folders are
created (with their special-use attribute) and subscribed again, and each message of the
backup is appended with its flags, keywords and internal date unless the folder holds one
with the same bytes.  Messages are matched by Message-ID and size first, then by SHA-256
of the bytes, counted as a multiset (two identical messages in the backup need two in the
folder), so a second restore adds nothing.  Sieve scripts the user lacks are put back
(and the active one activated when the user has none active), and so are the user's
records of replies sent (vacation, redirect) the server lacks or holds older, so that
senders already answered are not answered again.

Accounts (``--accounts``, not with ``--folder``): ``keep`` (the default) adds a user the
user store lacks as the backup has it (password hash, quota, imap-login, app passwords),
and leaves an existing user alone; ``replace`` also sets an existing user's password,
quota and imap-login to the backup's and puts back the app passwords it lacks; ``none``
leaves the user store alone.  ACL entries a restored folder lacks are added (with
``replace``, an entry whose rights differ is set to the backup's too).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from mailserv.admin.backup import (
    BATCH,
    SIEVE_DIR,
    Account,
    BackupError,
    Manifest,
    Progress,
    Recorded,
    Store,
    UserStores,
    encoded,
    locked,
    refuse_backend,
)
from mailserv.auth.apppasswords import IMAP_LOGIN_ANY
from mailserv.auth.passwd import PasswdEntry, PasswdError, PasswdFile
from mailserv.config import Config
from mailserv.delivery.sieve import sent_log, sieve_store
from mailserv.delivery.sievestore import StoreError
from mailserv.errors import MailboxExists, MailboxNotFound
from mailserv.interfaces import (
    SPECIAL_USE,
    IAccount,
    IAclAccount,
    IMailbox,
    IMultiAppendAccount,
    MessageMeta,
    NewMessage,
)
from mailserv.quota import StoredQuota

KEEP = "keep"
REPLACE = "replace"
NONE = "none"
ACCOUNT_MODES = (KEEP, REPLACE, NONE)


@dataclass
class RestoreTally:
    folders: int = 0
    subscribed: int = 0
    appended: int = 0
    present: int = 0
    scripts: int = 0
    accounts: int = 0
    app_passwords: int = 0
    acl_entries: int = 0
    sent: int = 0

    def line(self, dry_run: bool) -> str:
        verb = "would restore" if dry_run else "restored"
        return (
            f"restore: {verb} {self.folders} folders, {self.subscribed} subscriptions, "
            f"{self.appended} messages, {self.scripts} sieve scripts, {self.accounts} "
            f"accounts, {self.app_passwords} app passwords, {self.acl_entries} ACL entries, "
            f"{self.sent} records of replies sent; {self.present} messages already there"
        )


def restore(
    config: Config,
    source: str,
    users: Sequence[str] | None,
    folder: str | None,
    dry_run: bool,
    out: TextIO,
    err: TextIO = sys.stderr,
    stores: UserStores | None = None,
    accounts: str = KEEP,
) -> RestoreTally:
    """Restore ``users`` (None: everyone in the backup), only ``folder`` when given; their
    accounts into ``stores`` as ``accounts`` (one of ACCOUNT_MODES) says."""
    refuse_backend(config)
    if not os.path.isdir(source):
        raise BackupError(f"{source} is not a directory")
    tally = RestoreTally()
    with locked(source):
        manifest = Manifest(source, create=False)
        try:
            present = manifest.users()
            chosen = list(users) if users is not None else present
            for user in chosen:
                if user not in present:
                    raise BackupError(f"the backup in {source} holds no mail of {user!r}")
            if not chosen:
                raise BackupError(f"the backup in {source} holds no mail")
            store = Store(config, chosen[0])
            try:
                progress = Progress(err, "restore")
                run = _Restore(store, manifest, dry_run, out, tally, progress, accounts == REPLACE)
                for user in chosen:
                    saved = manifest.account(user)
                    if folder is None and stores is not None and saved and accounts != NONE:
                        steps = _account_steps(stores, user, saved, accounts == REPLACE)
                        _run_steps(user, steps, dry_run, out)
                        tally.accounts += any(not app for _, _, app in steps)
                        tally.app_passwords += sum(app for _, _, app in steps)
                    run.user(user, folder)
                    if folder is None:
                        _restore_scripts(config, manifest, user, dry_run, out, tally)
                        _restore_sent(config, manifest, user, dry_run, out, tally)
            finally:
                store.close()
        finally:
            manifest.close()
    out.write(tally.line(dry_run) + "\n")
    return tally


@dataclass
class _Restore:
    store: Store
    manifest: Manifest
    dry_run: bool
    out: TextIO
    tally: RestoreTally
    progress: Progress
    replace_acl: bool

    def user(self, user: str, folder: str | None) -> None:
        folders = self.manifest.folders(user)
        if folder is not None:
            folders = [entry for entry in folders if entry[0] == folder]
            if not folders:
                raise BackupError(f"the backup holds no folder {folder!r} of {user!r}")
        account = self.store.account(user)
        try:
            existing = {info.name for info in self.store.call(account.list_mailboxes)}
            subscribed = set(self.store.call(account.subscriptions))
            for name, attributes, was_subscribed in folders:
                if name not in existing:
                    self._create(user, account, name, attributes)
                if was_subscribed and name not in subscribed:
                    self.tally.subscribed += 1
                    if not self.dry_run:
                        self.store.call(account.subscribe, name)
            wanted = {name for name, _, _ in folders}
            for name, acl in sorted(self.manifest.acls(user).items()):
                if name in wanted:
                    self._acl(user, account, name, acl)
            for box, (name, validity, _) in sorted(self.manifest.boxes(user).items()):
                if name in wanted:
                    self.mailbox(user, account, box, name, validity)
        finally:
            self.store.call(account.close)

    def _acl(self, user: str, account: IAccount, name: str, saved: Mapping[str, str]) -> None:
        """Set the entries of ``saved`` the folder's list lacks (with ``replace_acl``, those
        whose rights differ too)."""
        if not IAclAccount.providedBy(account):
            return
        lists = IAclAccount(account)
        try:
            current: Mapping[str, str] = self.store.call(lists.get_acl, name)
        except MailboxNotFound:
            current = {}  # a dry run: the folder is still to create
        for identifier, rights in sorted(saved.items()):
            held = current.get(identifier)
            if held == rights or (held is not None and not self.replace_acl):
                continue
            self.tally.acl_entries += 1
            if self.dry_run:
                self.out.write(f"{user}: would set the ACL of {name}: {identifier} {rights}\n")
            else:
                self.store.call(lists.set_acl, name, identifier, rights)

    def _create(self, user: str, account: IAccount, name: str, attributes: frozenset[str]) -> None:
        special = sorted(attributes & SPECIAL_USE)
        self.tally.folders += 1
        if self.dry_run:
            self.out.write(f"{user}: would create folder {name}\n")
            return
        try:
            self.store.call(account.create, name, special[0] if special else None)
        except MailboxExists:
            pass  # a parent made on the way to a child

    def mailbox(self, user: str, account: IAccount, box: str, name: str, validity: int) -> None:
        recorded = self.manifest.messages(user, box)
        if not recorded:
            return
        if self.dry_run and name not in {i.name for i in self.store.call(account.list_mailboxes)}:
            missing = recorded  # a folder still to create holds nothing yet
        else:
            mailbox: IMailbox = self.store.call(account.open, name)
            missing = self._missing(mailbox, recorded)
        self.tally.present += len(recorded) - len(missing)
        if self.dry_run:
            if missing:
                self.out.write(f"{user}: would append {len(missing)} messages to {name}\n")
            self.tally.appended += len(missing)
            return
        for start in range(0, len(missing), BATCH // 4):
            batch = missing[start : start + BATCH // 4]
            news = [
                NewMessage(
                    self.manifest.read(user, box, validity, entry.uid),
                    entry.flags,
                    datetime.fromisoformat(entry.internaldate),
                )
                for entry in batch
            ]
            for new, entry in zip(news, batch, strict=True):
                if hashlib.sha256(new.message).hexdigest() != entry.sha256:
                    raise BackupError(
                        f"message {entry.uid} of {user}'s {name} is damaged in the backup"
                    )
            if IMultiAppendAccount.providedBy(account):
                self.store.call(IMultiAppendAccount(account).append_many, name, news, None)
            else:
                for new in news:
                    self.store.call(mailbox.append, new.message, new.flags, new.internaldate, None)
            self.tally.appended += len(batch)
            self.progress.tell(user, name, start + len(batch), len(missing))

    def _missing(self, mailbox: IMailbox, recorded: list[Recorded]) -> list[Recorded]:
        """The recorded messages the mailbox does not hold (as a multiset)."""
        by_key: dict[tuple[str, int], list[Recorded]] = defaultdict(list)
        for entry in recorded:
            by_key[(entry.message_id, entry.size)].append(entry)
        uids = list(self.store.call(mailbox.uids))
        candidates: list[int] = []
        for start in range(0, len(uids), BATCH * 10):
            metas: list[MessageMeta] = self.store.call(
                mailbox.fetch, uids[start : start + BATCH * 10]
            )
            candidates += [m.uid for m in metas if (m.info.message_id, m.size) in by_key]
        held: dict[str, int] = defaultdict(int)
        for start in range(0, len(candidates), BATCH):
            contents = self.store.call(_read, mailbox, candidates[start : start + BATCH])
            for data in contents:
                held[hashlib.sha256(data).hexdigest()] += 1
        missing = []
        for entry in recorded:
            if held[entry.sha256] > 0:
                held[entry.sha256] -= 1
            else:
                missing.append(entry)
        return missing


async def _read(mailbox: IMailbox, uids: Sequence[int]) -> list[bytes]:
    found = []
    for uid in uids:
        try:
            found.append(await mailbox.content(uid))
        except KeyError:
            continue
    return found


Step = tuple[str, Callable[[], object], bool]
"""What to do to an account: its text, the call doing it, whether it is an app password."""


def _account_steps(stores: UserStores, user: str, saved: Account, replace: bool) -> list[Step]:
    """What brings ``user``'s account to the backup's: everything for a user the user store
    lacks; for an existing one, nothing unless ``replace``."""
    users, apps, entry, mode = stores.users, stores.apps, saved.entry, saved.imap_login
    current = users.lookup(user)
    if current is not None and not replace:
        return []
    steps: list[Step] = []
    call = functools.partial
    if current is None:
        steps.append((f"add user {user}", call(_add_user, stores, entry), False))
    else:
        if current.password != entry.password:
            setting = call(users.set_password, user, entry.password)
            steps.append((f"set the password of {user}", setting, False))
        if current.quota != entry.quota:
            steps.append(
                (f"set the quota of {user}", call(users.set_quota, user, entry.quota), False)
            )
    if (apps.imap_login(user) if current is not None else IMAP_LOGIN_ANY) != mode:
        setting = call(apps.set_imap_login, user, mode)
        steps.append((f"set imap-login of {user} to {mode}", setting, False))
    held = {app.id for app in apps.listing(user)} if current is not None else set()
    for app in saved.app_passwords:
        if app.id not in held:
            text = f"put back app password {app.id} ({app.label}) of {user}"
            steps.append((text, call(apps.put, app), True))
    return steps


def _add_user(stores: UserStores, entry: PasswdEntry) -> None:
    """``entry`` into the user store: every field of a passwd-file line, or the password and
    quota of an SQL row."""
    if isinstance(stores.users, PasswdFile):
        fields = {name: getattr(entry, name) for name in ("uid", "gid", "gecos", "home", "shell")}
        stores.users.add_user(entry.user, entry.password, **fields, extra=entry.extra)
        return
    stores.users.add_user(entry.user, entry.password)
    if entry.quota != StoredQuota():
        stores.users.set_quota(entry.user, entry.quota)


def _run_steps(user: str, steps: Sequence[Step], dry_run: bool, out: TextIO) -> None:
    for text, action, _ in steps:
        if dry_run:
            out.write(f"{user}: would {text}\n")
            continue
        try:
            action()
        except PasswdError as exc:
            raise BackupError(f"cannot {text}: {exc}") from exc


def _restore_scripts(
    config: Config, manifest: Manifest, user: str, dry_run: bool, out: TextIO, tally: RestoreTally
) -> None:
    from urllib.parse import unquote

    source = os.path.join(manifest.dest, SIEVE_DIR, encoded(user))
    refuse_backend(config)
    if not os.path.isdir(source):
        return
    scripts = sieve_store(config.data_dir)
    try:
        with open(os.path.join(source, "active"), encoding="utf-8") as f:
            active: str | None = f.read()
    except FileNotFoundError:
        active = None
    for filename in sorted(os.listdir(source)):
        if not filename.endswith(".sieve"):
            continue
        name = unquote(filename.removesuffix(".sieve"))
        if scripts.exists(user, name):
            continue
        tally.scripts += 1
        if dry_run:
            out.write(f"{user}: would put sieve script {name}\n")
            continue
        with open(os.path.join(source, filename), "rb") as f:
            try:
                scripts.put(user, name, f.read())
            except StoreError as exc:
                raise BackupError(f"sieve script {name!r} of {user!r}: {exc}") from exc
    if (
        active
        and not dry_run
        and scripts.active_name(user) is None
        and scripts.exists(user, active)
    ):
        scripts.activate(user, active)


def _restore_sent(
    config: Config, manifest: Manifest, user: str, dry_run: bool, out: TextIO, tally: RestoreTally
) -> None:
    """The user's records of replies sent that the server lacks (or holds older)."""
    saved = manifest.sent(user)
    if not saved:
        return
    taken = sent_log(config.data_dir).put_back(user, saved, dry_run)
    tally.sent += taken
    if dry_run and taken:
        out.write(f"{user}: would put back {taken} records of replies sent\n")
