"""``--backend-option`` keys of the maildir backend, and where a user's mail lives.

``root`` is a template: ``%u`` the user name, ``%n`` its local part, ``%d`` its domain,
``%%`` a percent sign, and a leading ``~`` the user's home from the passwd-file.  A relative
root is taken from the data directory.  The substituted parts may not contain ``/`` or be
``.``/``..``, so a user name can never point outside the template.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mailserv.backends.kit.options import Bool, Choice, Int, Number, OptionSchema, Text
from mailserv.backends.maildir.names import check_name
from mailserv.errors import BackendOptionError, BackendUnavailable, InvalidMailboxName

DEFAULT_ROOT = "mail/%u/Maildir"

SPECIAL_USE: Mapping[str, str] = MappingProxyType(
    {
        "drafts": "\\Drafts",
        "sent": "\\Sent",
        "junk": "\\Junk",
        "trash": "\\Trash",
        "archive": "\\Archive",
    }
)

ROOT = Text(
    "Where each user's Maildir is: %u user, %n local part, %d domain, leading ~ "
    "the passwd-file home; relative to the data dir [default: mail/%u/Maildir].",
    DEFAULT_ROOT,
)
FSYNC = Bool(
    "true|false: fsync messages, dovecot-uidlist and directories before an "
    "APPEND/COPY is acknowledged [default: true].",
    True,
)
AUTOCREATE = Bool(
    "true|false: create the special-use folders on a user's first login [default: true].",
    True,
)
FOLDERS = {
    key: Text(f"Name of the {attribute} folder; empty for none [default: {key.title()}].", "")
    for key, attribute in SPECIAL_USE.items()
}
IO_THREADS = Int(
    "Threads for file I/O (and as many for searches and reads); 0 does it on the reactor "
    "thread [default: 4].",
    4,
    0,
    64,
)
WATCH = Choice(
    "auto|inotify|poll: how changes by other programs are noticed "
    "[default: auto, inotify where available].",
    "auto",
    ("auto", "inotify", "poll"),
)
POLL_INTERVAL = Number(
    "Seconds between directory checks when polling [default: 1].", 1.0, 0.01, 3600
)
LINGER = Number(
    "Seconds a user's mailboxes stay loaded after their last session [default: 30].",
    30.0,
    0.0,
    86400.0,
)
KEPT_INFOS = Int(
    "Parsed messages (FETCH's headers and structure) kept in memory for all mailboxes; "
    "past it the longest kept are dropped and read from the index again when wanted "
    "(about 2.5 KB each) [default: 50000].",
    50000,
    0,
    10_000_000,
)

SCHEMA = OptionSchema(
    "maildir",
    {
        "root": ROOT,
        "fsync": FSYNC,
        "autocreate": AUTOCREATE,
        **FOLDERS,
        "io-threads": IO_THREADS,
        "watch": WATCH,
        "poll-interval": POLL_INTERVAL,
        "linger": LINGER,
        "kept-infos": KEPT_INFOS,
    },
)
OPTIONS = SCHEMA.help

_ESCAPE = re.compile(r"%(.)")


@dataclass(frozen=True)
class MaildirSettings:
    root: str = DEFAULT_ROOT
    fsync: bool = True
    autocreate: bool = True
    special: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType(
            {attribute: key.title() for key, attribute in SPECIAL_USE.items()}
        )
    )
    """Special-use attribute -> folder name."""
    io_threads: int = 4
    watch: str = "auto"
    poll_interval: float = 1.0
    linger: float = 30.0
    kept_infos: int = 50000


def parse_options(options: Mapping[str, str]) -> MaildirSettings:
    """Checked settings; BackendOptionError names the first bad key."""
    values = SCHEMA.parse(options)
    root = values[ROOT]
    _check_template(root)
    special = dict(MaildirSettings().special)
    for key, attribute in SPECIAL_USE.items():
        if key in options:
            name = options[key].strip().strip("/")
            if name:
                try:
                    check_name(name)
                except InvalidMailboxName as exc:
                    raise BackendOptionError(f"{key}: {exc}") from None
                if name.upper() == "INBOX":
                    raise BackendOptionError(f"{key}: INBOX cannot be a special-use folder")
                special[attribute] = name
            else:
                special.pop(attribute, None)
    return MaildirSettings(
        root=root,
        fsync=values[FSYNC],
        autocreate=values[AUTOCREATE],
        special=MappingProxyType(special),
        io_threads=values[IO_THREADS],
        watch=values[WATCH],
        poll_interval=values[POLL_INTERVAL],
        linger=values[LINGER],
        kept_infos=values[KEPT_INFOS],
    )


def _check_template(root: str) -> None:
    if not root:
        raise BackendOptionError("root must not be empty")
    if "\0" in root:
        raise BackendOptionError("root must not contain NUL")
    for match in _ESCAPE.finditer(root):
        if match.group(1) not in "udn%":
            raise BackendOptionError(f"root: unknown escape %{match.group(1)} (use %u %d %n %%)")
    if root.endswith("%") and not root.endswith("%%"):
        raise BackendOptionError("root: a lone % at the end")
    if "~" in root and not (root == "~" or root.startswith("~/")):
        raise BackendOptionError("root: ~ may only start the path (~ or ~/...)")


def resolve_root(
    template: str,
    user: str,
    data_dir: str,
    home_of: Callable[[str], str | None] | None,
) -> str:
    """The absolute Maildir root of ``user``; BackendUnavailable when there is none."""
    local, at, domain = user.rpartition("@") if "@" in user else (user, "", "")
    values = {"u": user, "n": local, "d": domain if at else "", "%": "%"}
    for key in ("u", "n", "d"):
        value = values[key]
        if "/" in value or "\0" in value or value in (".", "..") or (key == "u" and not value):
            raise BackendUnavailable(f"user name {user!r} cannot name a mail directory")
    path = _ESCAPE.sub(lambda m: values[m.group(1)], template)
    if path == "~" or path.startswith("~/"):
        home = home_of(user) if home_of is not None else None
        if not home or not os.path.isabs(home):
            raise BackendUnavailable(f"no home directory known for {user!r} (root uses ~)")
        path = os.path.join(home, path[2:]) if path != "~" else home
    elif not os.path.isabs(path):
        path = os.path.join(data_dir, path)
    return os.path.abspath(path)
