"""Maildir trees in and out, as Dovecot lays them out.

Maildir++ (Dovecot's default, read and written): ``ROOT/{cur,new,tmp}`` is INBOX;
``ROOT/.Sub.Folder/`` is ``Sub/Folder`` (each level's name in modified UTF-7).

``LAYOUT=fs`` (read and written): a folder per directory level, ``ROOT/Sub/Folder/`` is
``Sub/Folder`` (names in modified UTF-7, or UTF-8 as Dovecot's ``UTF-8`` option writes them).  Its
messages are in the folder's own ``cur/``, ``new/`` and ``tmp/``, or, with Dovecot's
``DIRNAME=NAME``, in ``ROOT/Sub/Folder/NAME/{cur,new,tmp}`` (INBOX then being ``ROOT/INBOX``).
DIRNAME is recognised as the one name every message directory of the tree has when the root
holds none itself.  A ``ROOT/mailboxes/`` directory (and no messages at the root) is the
tree's top.  :func:`detect_layout` tells the two layouts apart: dot-directories holding
messages are Maildir++, other directories holding messages are ``fs``.  Written, an ``fs``
tree has INBOX at ``ROOT`` and no DIRNAME (Dovecot's plain ``LAYOUT=fs``); a level that would
start with a dot is written with its dot in modified UTF-7 (``&AC4-``), and a folder with a
level named ``cur``, ``new`` or ``tmp`` cannot be written (it would be read as messages).

In both, a file's flags are the letters after ``:2,``: ``DFPRST`` for the system flags (P,
passed: ``$Forwarded``) and ``a``-``z`` for the keywords listed in the ``dovecot-keywords``
beside the folder's ``cur/`` (``N name`` lines, letter ``a`` + N).  The internal date is the file's
modification time.  ``dovecot-uidlist`` is neither needed nor written.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime

from mailserv.admin.transfer import MAILDIR_LETTERS, SourceMessage, TransferError, stored_flags
from mailserv.interfaces import DELIMITER, INBOX
from mailserv.syntax import utf7

KEYWORDS_FILE = "dovecot-keywords"
KEYWORD_LETTERS = string.ascii_lowercase
INFO = ":2,"
MAILDIR_PLUS_PLUS = "maildir++"
FS = "fs"
LAYOUTS = (FS, MAILDIR_PLUS_PLUS)
_PARTS = ("cur", "new", "tmp")
MAILBOXES = "mailboxes"


def is_maildir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "cur")) or os.path.isdir(os.path.join(path, "new"))


def _folder_name(entry: str) -> str | None:
    """``.Sub.Folder`` as ``Sub/Folder``; None for what is no folder of the tree."""
    if not entry.startswith(".") or entry in (".", ".."):
        return None
    try:
        return DELIMITER.join(utf7.decode(part.encode("ascii")) for part in entry[1:].split("."))
    except (ValueError, UnicodeError):
        return None


def _plusplus_folders(root: str) -> list[tuple[str, str]]:
    """(folder, directory) of each ``.Sub.Folder`` holding messages."""
    found = []
    for entry in sorted(os.listdir(root)):
        name = _folder_name(entry)
        path = os.path.join(root, entry)
        if name is not None and is_maildir(path):
            found.append((name, path))
    return found


def _fs_level(part: str) -> str:
    """One level of an ``fs`` tree's folder name: modified UTF-7 when it reads as such."""
    try:
        return utf7.decode(part.encode("ascii"))
    except (ValueError, UnicodeError):
        return part  # Dovecot's UTF-8 option: the name as it is


def _fs_top(root: str) -> str:
    mailboxes = os.path.join(root, MAILBOXES)
    return mailboxes if not is_maildir(root) and os.path.isdir(mailboxes) else root


def _fs_folders(root: str) -> list[tuple[str, str]]:
    """(folder, message directory) of each folder of an ``fs`` tree below its top (the top
    itself, INBOX, is not listed), DIRNAME recognised (see the module's text)."""
    top = _fs_top(root)
    found: list[tuple[tuple[str, ...], str]] = []
    for directory, subdirectories, _ in os.walk(top):
        here = is_maildir(directory)
        subdirectories[:] = sorted(
            d for d in subdirectories if not d.startswith(".") and not (here and d in _PARTS)
        )
        if here and directory != top:
            found.append((tuple(os.path.relpath(directory, top).split(os.sep)), directory))
    names = {parts[-1] for parts, _ in found}
    dirname = not is_maildir(top) and len(names) == 1 and all(len(p) > 1 for p, _ in found)
    folders = []
    for parts, directory in found:
        levels = [_fs_level(part) for part in (parts[:-1] if dirname else parts)]
        if levels[0].upper() == INBOX:
            levels[0] = INBOX
        folders.append((DELIMITER.join(levels), directory))
    return folders


def detect_layout(root: str) -> str | None:
    """``maildir++`` or ``fs`` for a Maildir tree at ``root``; None when it is none."""
    if not os.path.isdir(root):
        return None
    if _plusplus_folders(root):
        return MAILDIR_PLUS_PLUS
    if _fs_folders(root):
        return FS
    return MAILDIR_PLUS_PLUS if is_maildir(root) else None


def _directory_name(folder: str) -> str:
    """``Sub/Folder`` as ``.Sub.Folder`` (a ``.`` inside a level is written ``&AC4-``)."""
    parts = [
        utf7.encode(part).decode("ascii").replace(".", "&AC4-") for part in folder.split(DELIMITER)
    ]
    return "." + ".".join(parts)


def _fs_directory(folder: str) -> str:
    """``Sub/Folder`` as the relative path ``Sub/Folder`` of an ``fs`` tree."""
    levels = []
    for part in folder.split(DELIMITER):
        level = utf7.encode(part).decode("ascii")
        if level.startswith("."):
            level = "&AC4-" + level[1:]
        if level in ("", *_PARTS):
            raise TransferError(f"folder {folder!r} cannot be written in LAYOUT=fs")
        levels.append(level)
    return os.path.join(*levels)


def read_keywords(directory: str) -> dict[str, str]:
    """Keyword letters of a folder's ``dovecot-keywords``: ``{"a": "$Junk", ...}``."""
    letters: dict[str, str] = {}
    try:
        with open(os.path.join(directory, KEYWORDS_FILE), encoding="utf-8") as handle:
            for line in handle:
                number, _, name = line.rstrip("\n").partition(" ")
                if number.isdigit() and int(number) < len(KEYWORD_LETTERS) and name:
                    letters[KEYWORD_LETTERS[int(number)]] = name
    except FileNotFoundError:
        pass
    return letters


def _flags(info: str, keywords: dict[str, str]) -> frozenset[str]:
    flags = {MAILDIR_LETTERS[c] for c in info if c in MAILDIR_LETTERS}
    flags.update(keywords[c] for c in info if c in keywords)
    return stored_flags(flags)


_DELIVERY = re.compile(r"(\d+)\.(?:[^.]*?M(\d+))?")


def _sort_key(name: str) -> tuple[int, int, str]:
    """Delivery order: the seconds a name starts with, then its ``M`` microseconds."""
    found = _DELIVERY.match(name)
    if found is None:
        return (0, 0, name)
    return (int(found.group(1)), int(found.group(2) or 0), name)


class MaildirReader:
    """Every message of a Maildir tree in ``layout`` (``maildir++`` or ``fs``), folder by
    folder (INBOX first), each folder's files in delivery order (the time their names start
    with).  Key: ``folder/unique name``."""

    def __init__(self, root: str, layout: str = MAILDIR_PLUS_PLUS) -> None:
        self.root = root
        if layout == FS:
            top = _fs_top(root)
            inbox = [(INBOX, top)] if is_maildir(top) else []
            self.folders: list[tuple[str, str]] = inbox + _fs_folders(root)
            self.folders.sort(key=lambda folder: folder[0] != INBOX)
            if not self.folders:
                raise TransferError(f"{root} is no Maildir tree of LAYOUT=fs (no cur/ or new/)")
            return
        if not is_maildir(root):
            raise TransferError(f"{root} is not a Maildir (no cur/ or new/ in it)")
        self.folders = [(INBOX, root), *_plusplus_folders(root)]

    def files(self, directory: str) -> list[tuple[str, str]]:
        """(subdirectory, file name) of a folder's messages, in delivery order."""
        found = []
        for sub in ("new", "cur"):
            try:
                found += [(sub, name) for name in os.listdir(os.path.join(directory, sub))]
            except FileNotFoundError:
                continue
        return sorted((f for f in found if not f[1].startswith(".")), key=lambda f: _sort_key(f[1]))

    def count(self) -> int:
        return sum(len(self.files(path)) for _, path in self.folders)

    def __iter__(self) -> Iterator[SourceMessage]:
        for folder, directory in self.folders:
            keywords = read_keywords(directory)
            for sub, name in self.files(directory):
                path = os.path.join(directory, sub, name)
                unique, _, info = name.partition(INFO)
                try:
                    with open(path, "rb") as handle:
                        data = handle.read()
                        mtime = os.fstat(handle.fileno()).st_mtime
                except FileNotFoundError:
                    continue  # expunged meanwhile by whoever else uses the tree
                flags = _flags(info if sub == "cur" else "", keywords)
                when = datetime.fromtimestamp(int(mtime), UTC)
                yield SourceMessage(folder, f"{folder}/{unique}", data, flags, when)


class MaildirWriter:
    """Writes messages into a Maildir tree in ``layout`` (Maildir++ or ``fs``):
    ``cur/<date>.M<uid>V<uidvalidity>.mailserv:2,<letters>`` through ``tmp/``, mtime set to
    the internal date; the same message gets the same name again, so writing it twice
    leaves one file."""

    def __init__(self, root: str, layout: str = MAILDIR_PLUS_PLUS) -> None:
        self.root = root
        self._named = _fs_directory if layout == FS else _directory_name
        self._keywords: dict[str, dict[str, str]] = {}

    def path(self, folder: str) -> str:
        return self.root if folder == INBOX else os.path.join(self.root, self._named(folder))

    def directory(self, folder: str) -> str:
        """The folder's directory, made with its cur/, new/ and tmp/ if need be."""
        path = self.path(folder)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
        return path

    def letters(self, directory: str, flags: frozenset[str]) -> str:
        """The info letters of ``flags``, adding new keywords to ``dovecot-keywords``
        (keywords past the 26 letters Dovecot has are left out)."""
        known = self._keywords.get(directory)
        if known is None:
            known = {name: letter for letter, name in read_keywords(directory).items()}
            self._keywords[directory] = known
        system = {flag: letter for letter, flag in MAILDIR_LETTERS.items()}
        letters = [system[flag] for flag in flags if flag in system]
        for keyword in sorted(flag for flag in flags if flag not in system):
            if keyword not in known and len(known) < len(KEYWORD_LETTERS):
                known[keyword] = KEYWORD_LETTERS[len(known)]
                with open(os.path.join(directory, KEYWORDS_FILE), "a", encoding="utf-8") as out:
                    out.write(f"{len(known) - 1} {keyword}\n")
            if keyword in known:
                letters.append(known[keyword])
        return "".join(sorted(letters))

    def write(
        self,
        directory: str,
        uidvalidity: int,
        uid: int,
        data: bytes,
        flags: frozenset[str],
        internaldate: datetime,
    ) -> None:
        stamp = int(internaldate.timestamp())
        unique = f"{stamp}.M{uid}V{uidvalidity}.mailserv,S={len(data)}"
        temporary = os.path.join(directory, "tmp", unique)
        with open(temporary, "wb") as out:
            out.write(data)
        os.utime(temporary, (stamp, stamp))
        final = f"{unique}{INFO}{self.letters(directory, flags)}"
        os.replace(temporary, os.path.join(directory, "cur", final))
