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

OPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "root": "Where each user's Maildir is: %u user, %n local part, %d domain, leading ~ "
        "the passwd-file home; relative to the data dir [default: mail/%u/Maildir].",
        "fsync": "true|false: fsync messages, dovecot-uidlist and directories before an "
        "APPEND/COPY is acknowledged [default: true].",
        "autocreate": "true|false: create the special-use folders on a user's first login "
        "[default: true].",
        **{
            key: f"Name of the {attribute} folder; empty for none [default: {key.title()}]."
            for key, attribute in SPECIAL_USE.items()
        },
        "io-threads": "Threads for file I/O; 0 does it on the reactor thread [default: 4].",
        "watch": "auto|inotify|poll: how changes by other programs are noticed "
        "[default: auto, inotify where available].",
        "poll-interval": "Seconds between directory checks when polling [default: 1].",
    }
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
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


def parse_options(options: Mapping[str, str]) -> MaildirSettings:
    """Checked settings; BackendOptionError names the first bad key."""
    for key in sorted(options):
        if key not in OPTIONS:
            raise BackendOptionError(f"The maildir backend has no option {key!r}")
    defaults = MaildirSettings()
    root = options.get("root", defaults.root)
    _check_template(root)
    special = dict(defaults.special)
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
    watch = options.get("watch", defaults.watch)
    if watch not in ("auto", "inotify", "poll"):
        raise BackendOptionError(f"watch must be auto, inotify or poll, got {watch!r}")
    return MaildirSettings(
        root=root,
        fsync=_bool(options, "fsync", defaults.fsync),
        autocreate=_bool(options, "autocreate", defaults.autocreate),
        special=MappingProxyType(special),
        io_threads=int(_number(options, "io-threads", defaults.io_threads, 0, 64)),
        watch=watch,
        poll_interval=_number(options, "poll-interval", defaults.poll_interval, 0.01, 3600),
    )


def _bool(options: Mapping[str, str], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise BackendOptionError(f"{key} must be true or false, got {value!r}")


def _number(options: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    value = options.get(key)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise BackendOptionError(f"{key} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise BackendOptionError(f"{key} must be between {low:g} and {high:g}, got {value!r}")
    return number


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
