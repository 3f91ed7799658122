"""What ``mailserv import SOURCE`` names: an mbox file, a directory of ``*.mbox`` files (as
``mailserv export --format mbox`` writes), a Maildir tree (Maildir++ or Dovecot's
``LAYOUT=fs``, see :mod:`mailserv.admin.maildirs`), or an IMAP URL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mailserv.admin import mbox
from mailserv.admin.imapsource import ImapReader, parse_address
from mailserv.admin.maildirs import MaildirReader, detect_layout
from mailserv.admin.transfer import SourceMessage, TransferError
from mailserv.interfaces import DELIMITER, INBOX


def _size(message: SourceMessage) -> int:
    return len(message.data)


def _one(message: SourceMessage) -> int:
    return 1


@dataclass
class Source:
    """``messages`` in order; ``identity`` names the source in the state file; progress is
    counted in ``unit`` (``measure`` of each message, ``total`` in all)."""

    messages: Iterable[SourceMessage]
    identity: str
    total: int | None
    unit: str
    measure: Callable[[SourceMessage], int]
    close: Callable[[], None] = field(default=lambda: None)


class MboxTree:
    """Every ``*.mbox`` file under a directory; ``Sub/Folder.mbox`` is ``Sub/Folder``."""

    def __init__(self, root: str) -> None:
        self.files: list[tuple[str, str]] = []
        for directory, _, names in os.walk(root):
            for name in names:
                if name.endswith(mbox.SUFFIX):
                    path = os.path.join(directory, name)
                    relative = os.path.relpath(path, root)[: -len(mbox.SUFFIX)]
                    self.files.append((relative.replace(os.sep, DELIMITER), path))
        if not self.files:
            raise TransferError(f"{root} is neither a Maildir nor a directory of *.mbox files")
        self.files.sort(key=lambda item: (item[0] != INBOX, item[0]))

    def size(self) -> int:
        return sum(os.path.getsize(path) for _, path in self.files)

    def __iter__(self) -> Iterator[SourceMessage]:
        for folder, path in self.files:
            yield from mbox.MboxReader(path, folder, tag=f"{folder}:")


def open_source(
    spec: str,
    password: Callable[[], str],
    master_user: str | None,
    ca_file: str | None,
    layout: str | None = None,
) -> Source:
    """The source ``spec`` names; ``password()`` is asked only for an IMAP source.  A
    directory is read as a Maildir tree in ``layout`` (None: as :func:`detect_layout` finds)."""
    address = parse_address(spec)
    if address is not None:
        reader = ImapReader(address, password(), master_user, ca_file)
        identity = address.shown + (f"*{master_user}" if master_user else "")
        return Source(reader, identity, reader.count(), "msg", _one, reader.close)
    if not os.path.exists(spec):
        raise TransferError(f"{spec}: no such file or directory")
    identity = os.path.realpath(spec)
    if layout is not None and not os.path.isdir(spec):
        raise TransferError(f"{spec} is not a directory (--layout names a Maildir's layout)")
    if os.path.isdir(spec):
        layout = layout or detect_layout(spec)
        if layout is not None:
            maildir = MaildirReader(spec, layout)
            return Source(maildir, identity, maildir.count(), "msg", _one)
        tree = MboxTree(spec)
        return Source(tree, identity, tree.size(), "B", _size)
    reader_file = mbox.MboxReader(spec, INBOX)
    return Source(reader_file, identity, reader_file.size, "B", _size)
