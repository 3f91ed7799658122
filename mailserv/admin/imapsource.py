"""Another IMAP server as an import source: ``imap://user@host:port`` (STARTTLS when the
server offers it) or ``imaps://...``, signed in as the user or, with a master user, as
``user*master`` (Dovecot's convention) with the master's password.  Every selectable folder
is read with EXAMINE (nothing changes there) and ``UID FETCH (FLAGS INTERNALDATE
BODY.PEEK[])`` in batches.  Key of a message: ``folder/UIDVALIDITY/UID``."""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlsplit

from mailserv.admin.transfer import SourceMessage, TransferError, stored_flags
from mailserv.interfaces import DELIMITER, INBOX
from mailserv.syntax import utf7

BATCH = 50
_LIST = re.compile(rb'\((?P<attrs>[^)]*)\) (?P<delim>NIL|"(?:\\.|[^"\\])*") ?(?P<name>.*)$')
_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_SKIPPED = {b"\\noselect", b"\\nonexistent"}


@dataclass(frozen=True)
class ImapAddress:
    tls: bool
    host: str
    port: int
    user: str

    @property
    def shown(self) -> str:
        """The source as the state file and messages name it (no password)."""
        return f"{'imaps' if self.tls else 'imap'}://{self.user}@{self.host}:{self.port}"


def parse_address(url: str) -> ImapAddress | None:
    """``imap[s]://user@host[:port]``; None when ``url`` is not an IMAP URL at all."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps"):
        return None
    try:
        port = parts.port
    except ValueError as exc:
        raise TransferError(f"bad port in {url!r}") from exc
    if not parts.hostname or not parts.username:
        raise TransferError(f"{url!r}: give the user and host, as imap://user@host:port")
    tls = parts.scheme == "imaps"
    return ImapAddress(tls, parts.hostname, port or (993 if tls else 143), unquote(parts.username))


def _quoted(raw: bytes) -> str:
    text = raw.decode("ascii", "surrogateescape")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _internaldate(meta: bytes) -> datetime | None:
    found = _DATE.search(meta)
    if found is None:
        return None
    try:
        return datetime.strptime(found.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


class ImapReader:
    """The messages of every selectable folder of one account on another IMAP server."""

    def __init__(
        self,
        address: ImapAddress,
        password: str,
        master_user: str | None = None,
        ca_file: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.address = address
        context = ssl.create_default_context(cafile=ca_file)
        try:
            if address.tls:
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    address.host, address.port, ssl_context=context, timeout=timeout
                )
            else:
                client = imaplib.IMAP4(address.host, address.port, timeout=timeout)
                if "STARTTLS" in client.capabilities:
                    client.starttls(context)
            login = f"{address.user}*{master_user}" if master_user else address.user
            client.login(login, password)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransferError(f"{address.shown}: {_text(exc)}") from exc
        self.client = client
        self.folders = self._folders()

    def _folders(self) -> list[tuple[str, bytes]]:
        """(mailserv name, the server's raw name) of every selectable folder, INBOX first."""
        typ, data = self.client.list('""', "*")
        if typ != "OK":
            raise TransferError(f"{self.address.shown}: LIST failed")
        found = []
        for item in data:
            line = item[0] + item[1] if isinstance(item, tuple) else item
            match = _LIST.match(line or b"")
            if match is None:
                continue
            attrs = set(match.group("attrs").lower().split())
            raw = match.group("name")
            if isinstance(item, tuple):
                raw = item[1]
            elif raw.startswith(b'"'):
                raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
            if attrs & _SKIPPED:
                continue
            delimiter = match.group("delim")
            name = utf7.decode(raw)
            if delimiter != b"NIL":
                name = name.replace(delimiter[1:-1].replace(b"\\", b"").decode(), DELIMITER)
            if name.upper() == INBOX:
                name = INBOX
            found.append((name, raw))
        return sorted(found, key=lambda folder: (folder[0] != INBOX, folder[0]))

    def count(self) -> int:
        total = 0
        for _, raw in self.folders:
            typ, data = self.client.status(_quoted(raw), "(MESSAGES)")
            found = re.search(rb"MESSAGES (\d+)", data[0] or b"") if typ == "OK" else None
            total += int(found.group(1)) if found else 0
        return total

    def __iter__(self) -> Iterator[SourceMessage]:
        for name, raw in self.folders:
            typ, _ = self.client.select(_quoted(raw), readonly=True)
            if typ != "OK":
                raise TransferError(f"{self.address.shown}: cannot open folder {name!r}")
            uidvalidity = int((self.client.response("UIDVALIDITY")[1] or [b"0"])[0] or b"0")
            typ, data = self.client.uid("SEARCH", "ALL")
            uids = [int(uid) for uid in (data[0] or b"").split()] if typ == "OK" else []
            for low in range(0, len(uids), BATCH):
                yield from self._batch(name, uidvalidity, uids[low : low + BATCH])

    def _batch(self, folder: str, uidvalidity: int, uids: Sequence[int]) -> Iterator[SourceMessage]:
        wanted = ",".join(map(str, uids))
        typ, data = self.client.uid("FETCH", wanted, "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        if typ != "OK":
            raise TransferError(f"{self.address.shown}: FETCH failed in {folder!r}")
        pending: list[tuple[bytes, bytes]] = []
        for item in data:
            if isinstance(item, tuple):
                pending.append((item[0], item[1]))
            elif item and pending:  # what follows the literal: ")" or more items
                meta, body = pending[-1]
                pending[-1] = (meta + item, body)
        for meta, body in pending:
            uid, flags = _UID.search(meta), _FLAGS.search(meta)
            if uid is None:
                continue
            names = flags.group(1).decode("utf-8", "replace").split() if flags else []
            key = f"{folder}/{uidvalidity}/{int(uid.group(1))}"
            yield SourceMessage(folder, key, body, stored_flags(names), _internaldate(meta))

    def close(self) -> None:
        try:
            self.client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _text(exc: BaseException) -> str:
    detail = exc.args[0] if exc.args else exc
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)
