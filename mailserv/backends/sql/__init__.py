"""The SQL backend: SQLite for one machine, PostgreSQL for any number of frontends.

``--backend sql --backend-option url=sqlite:///var/mail/mail.db`` or
``url=postgresql://user@host/db``; see ``SqlBackendFactory.options`` for the rest.

- ``dialect.py``: URLs, and what differs between the two databases.
- ``db.py``: transactions, run in adbapi threads (server) or inline (CLI, tests); ``tx.py``
  one transaction's statements; ``quick.py`` / ``pgquick.py``: small transactions on the
  reactor's thread (SQLite: in process; PostgreSQL: over libpq's non-blocking pipeline mode).
- ``schema.py``: the one schema and its numbered migrations.
- ``hierarchy.py``: the SQL of accounts and mailboxes.
- ``messages.py`` / ``reads.py``: the SQL that changes a mailbox's messages / that reads
  them; ``changes.py``: a STORE's flag changes as the engine reads them.
- ``search.py``, ``fulltext.py``: SEARCH keys translated to SQL; the TEXT/BODY index.
- ``notify.py``: PostgreSQL LISTEN, read by the reactor (``pgsocket.py``: such a socket).
- ``backend.py``, ``account.py``, ``mailbox.py``: the contract objects.
"""

from mailserv.backends.sql.account import SqlAccount
from mailserv.backends.sql.backend import SqlBackend, SqlBackendFactory, inline_database
from mailserv.backends.sql.mailbox import SqlMailbox

factory = SqlBackendFactory()

__all__ = [
    "SqlAccount",
    "SqlBackend",
    "SqlBackendFactory",
    "SqlMailbox",
    "factory",
    "inline_database",
]
