"""The maildir backend: each user's mail in a Maildir++ tree that Dovecot can share.

- ``names``: mailbox names and their ``.a.b`` directories (modified UTF-7, no escapes).
- ``filenames``: ``<base>:2,<flags>`` names and flag letters; ``keywords``: ``dovecot-keywords``.
- ``uidlist``: ``dovecot-uidlist`` version 3; ``dotlock``: Dovecot-style ``.lock`` files;
  ``uidvalidity``: ``dovecot-uidvalidity``.
- ``index``: the per-mailbox SQLite index (sizes, dates, modseqs, parsed messages).
- ``disk``: a mailbox's file work (blocking; runs as one task at a time);
  ``mailbox``: the shared in-memory view and the ``IMailbox`` methods;
  ``account``: the folder hierarchy, subscriptions, special-use folders.
- ``watch``: inotify (polling where missing) for changes by other programs;
  ``io``: the thread pool the file work runs in.
- ``options`` and ``backend``: the plugin, its ``--backend-option`` keys, user roots.
"""

from mailserv.backends.maildir.account import MaildirAccount
from mailserv.backends.maildir.backend import MaildirBackend, MaildirBackendFactory
from mailserv.backends.maildir.mailbox import MaildirMailbox
from mailserv.backends.maildir.options import MaildirSettings

factory = MaildirBackendFactory()

__all__ = [
    "MaildirAccount",
    "MaildirBackend",
    "MaildirBackendFactory",
    "MaildirMailbox",
    "MaildirSettings",
    "factory",
]
