"""The schema, one for SQLite and PostgreSQL, and its numbered migrations.

``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to ``n``; a new schema change
is a new entry at the end, never an edit of an old one.  An empty database is brought to the
latest version when the server first starts; an older one only by ``mailserv db upgrade``,
so frontends of one shared database never migrate it behind an operator's back.

Layout, in short: ``messages`` holds each distinct message once (keyed by the SHA-256 of its
bytes, with the case-folded search fields: a narrow row, so SEARCH scans little),
``message_info`` its parsed ``MessageInfo`` (what FETCH reads) and ``message_data`` its bytes;
``mail`` places a message in a mailbox under a UID, with flags, internal date, save date
and modseq; ``mailboxes`` carries the MAILBOXID and the counters (UIDNEXT, HIGHESTMODSEQ,
messages, unseen, size) that every write updates under the mailbox row's lock;
``expunged`` remembers removed UIDs for QRESYNC's VANISHED, ``modseq_log`` the UID ranges
each write changed (CHANGEDSINCE); ``message_text`` the decoded texts SEARCH BODY/TEXT look
in, and the word index beside it (``fulltext.py``); on PostgreSQL, ``pg_trgm`` indexes of
those texts and of the search fields of ``messages`` (schema 14); ``message_info.heads``
the ENVELOPE, BODY and BODYSTRUCTURE FETCH sends, kept apart from the record (schema 15).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailserv.backends.sql.tx import Tx

VERSION_TABLE = "mailserv_schema"
MIGRATION_LOCK = 0x6D61696C  # pg_advisory_xact_lock key ("mail") for concurrent first starts


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: Sequence[str] = ()
    function: Callable[[Tx], None] | None = None


_V1 = (
    f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)",
    """CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password TEXT NOT NULL,
        created {bigint} NOT NULL
    )""",
    """CREATE TABLE accounts (
        id {serial},
        name TEXT NOT NULL UNIQUE,
        next_uidvalidity {bigint} NOT NULL
    )""",
    """CREATE TABLE mailboxes (
        id {serial},
        account_id {bigint} NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        selectable INTEGER NOT NULL,
        special_use TEXT,
        uidvalidity {bigint} NOT NULL,
        uidnext {bigint} NOT NULL,
        highestmodseq {bigint} NOT NULL,
        recent_mark {bigint} NOT NULL,
        messages {bigint} NOT NULL,
        unseen {bigint} NOT NULL,
        size {bigint} NOT NULL,
        UNIQUE (account_id, name)
    )""",
    """CREATE TABLE messages (
        id {serial},
        digest {blob} NOT NULL UNIQUE,
        refs {bigint} NOT NULL,
        size {bigint} NOT NULL,
        sent_day INTEGER,
        subject TEXT NOT NULL,
        from_addr TEXT NOT NULL,
        to_addr TEXT NOT NULL,
        cc_addr TEXT NOT NULL,
        bcc_addr TEXT NOT NULL
    )""",
    """CREATE TABLE message_info (
        message_id {bigint} PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        info {blob} NOT NULL
    )""",
    """CREATE TABLE message_data (
        message_id {bigint} PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        raw {blob} NOT NULL
    )""",
    """CREATE TABLE mail (
        mailbox_id {bigint} NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        uid {bigint} NOT NULL,
        message_id {bigint} NOT NULL REFERENCES messages (id),
        modseq {bigint} NOT NULL,
        flags TEXT NOT NULL,
        internaldate {bigint} NOT NULL,
        tz INTEGER NOT NULL,
        internal_day INTEGER NOT NULL,
        size {bigint} NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ){without_rowid}""",
    "CREATE INDEX mail_modseq ON mail (mailbox_id, modseq)",
    "CREATE INDEX mail_message ON mail (message_id)",
    """CREATE TABLE expunged (
        mailbox_id {bigint} NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        uid {bigint} NOT NULL,
        modseq {bigint} NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ){without_rowid}""",
    "CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq)",
    """CREATE TABLE subscriptions (
        account_id {bigint} NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        PRIMARY KEY (account_id, name)
    )""",
    f"INSERT INTO {VERSION_TABLE} (version) VALUES (0)",
)

DAY_INDEXED = "size >= 0"
"""The condition of the partial index ``mail_day`` (migration 6): true of every row, but only
a query that says so in these words may use the index, so no other query's plan changes (a
plain index led by ``mailbox_id`` was taken over the flag indexes).  Not a test of
``internal_day``: SQLite would take it for the range to read, not the day searched."""

REPARSE_BATCH = 200
"""Messages parsed again per query by migration 2."""


def _reparse_messages(tx: Tx) -> None:
    """Migration 2: every message parsed again, its search columns and info rewritten.

    The address columns gain the normalised addresses SEARCH FROM/TO/CC/BCC look in (see
    :func:`mailserv.message.addresses.search_field`), and ``message_info`` the new record
    format.  Batches by id, so memory stays flat however large the store.
    """
    from mailserv.message import store
    from mailserv.message.parse import parse_message

    last = 0
    while True:
        rows = tx.all(
            "SELECT d.message_id, d.raw FROM message_data d WHERE d.message_id > ?"
            " ORDER BY d.message_id LIMIT ?",
            (last, REPARSE_BATCH),
        )
        if not rows:
            return
        updates, infos = [], []
        for message_id, raw in rows:
            info = parse_message(bytes(raw))
            updates.append(
                (
                    info.subject.casefold(),
                    info.from_.casefold(),
                    info.to.casefold(),
                    info.cc.casefold(),
                    info.bcc.casefold(),
                    int(message_id),
                )
            )
            infos.append((store.dumps(info), int(message_id)))
        tx.many(
            "UPDATE messages SET subject = ?, from_addr = ?, to_addr = ?, cc_addr = ?,"
            " bcc_addr = ? WHERE id = ?",
            updates,
        )
        tx.many("UPDATE message_info SET info = ? WHERE message_id = ?", infos)
        last = int(rows[-1][0])


def _create_text_index(tx: Tx) -> None:
    """Migration 3: see :mod:`mailserv.backends.sql.fulltext` (fast: the texts of existing
    messages are not decoded here but by the server's backfill)."""
    from mailserv.backends.sql import fulltext

    fulltext.create(tx)


def _create_flag_indexes(tx: Tx) -> None:
    """Migration 4: partial indexes of the unseen, flagged and deleted messages (see
    :data:`mailserv.backends.sql.rows.FLAG_INDEXES_4`)."""
    from mailserv.backends.sql.rows import FLAG_INDEXES_4, flag_test

    for flag, name in FLAG_INDEXES_4.items():
        test = flag_test(tx.dialect.find, flag, present=flag != "\\Seen")
        tx.execute(f"CREATE INDEX {name} ON mail (mailbox_id, uid) WHERE {test}")
    refresh_statistics(tx)


def _create_word_index(tx: Tx) -> None:
    """Migration 5: see :mod:`mailserv.backends.sql.fulltext` (fast: the words of existing
    texts are indexed by the server's backfill)."""
    from mailserv.backends.sql import fulltext

    fulltext.create_words(tx)


def _add_mailbox_ids(tx: Tx) -> None:
    """Migration 7: ``mailboxes.mailboxid``, the RFC 8474 MAILBOXID, kept by RENAME (the
    row stays) and new with a new row; every existing row gets one here (there are few)."""
    from mailserv.backends.kit import new_mailbox_id

    tx.execute("ALTER TABLE mailboxes ADD COLUMN mailboxid TEXT")
    ids = [int(row[0]) for row in tx.all("SELECT id FROM mailboxes")]
    tx.many("UPDATE mailboxes SET mailboxid = ? WHERE id = ?", [(new_mailbox_id(), i) for i in ids])


HOT_FILLFACTOR = 50
"""PostgreSQL: the percentage of each ``mail`` page that inserts fill (schema 12).  ``STORE
1:*`` writes a new version of every row of a page in one transaction, and the update is
page-local (HOT: no index entry, little WAL) only while the page has room for it: half a
page for the rows, half for their next versions.  The versions a committed STORE left are
pruned when the page is next written."""


def _page_local_flag_updates(tx: Tx) -> None:
    """Migration 12: ``modseq_log``, ``mail.marks``, and on PostgreSQL no index covers a
    column a STORE of \\Seen or keywords writes (``flags``, ``modseq``), so its updates are
    HOT, and pages keep room for them.

    The log holds, per write of mail rows (APPEND, STORE, COPY), the modseq and the UID
    ranges it wrote, so CHANGEDSINCE reads those ranges rather than every row of the
    mailbox; ``mailboxes.log_from``: the log holds every write above that modseq (older
    entries are pruned, see ``messages.LOG_KEEP``; existing mailboxes start at their
    HIGHESTMODSEQ).  ``mail.marks`` holds \\Flagged and \\Deleted as bits (see
    ``rows.MARKS``), written only when one of them changes, and the partial indexes of the
    flagged and deleted messages test it instead of ``flags`` (FLAGGED and EXPUNGE read
    those rows alone, and a STORE of other flags leaves them be).  ``mailboxes.unseen_uids``:
    the mailbox's unseen UIDs as runs, what SEARCH UNSEEN reads (see the module ``unseen``).
    PostgreSQL: the modseq index and the unseen index go, and the table is rewritten at
    :data:`HOT_FILLFACTOR` (CLUSTER: in key order, under an exclusive lock for the time it
    takes).  SQLite keeps those two: it rewrites a row in its B-tree in place, and the
    indexes cost a STORE little there."""
    from mailserv.backends.sql.rows import MARK_INDEXES, mark_test, marks_sql

    tx.execute(
        tx.dialect.ddl(
            """CREATE TABLE modseq_log (
                mailbox_id {bigint} NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
                modseq {bigint} NOT NULL,
                low {bigint} NOT NULL,
                high {bigint} NOT NULL,
                PRIMARY KEY (mailbox_id, modseq, low)
            ){without_rowid}"""
        )
    )
    tx.execute(
        tx.dialect.ddl("ALTER TABLE mailboxes ADD COLUMN log_from {bigint} NOT NULL DEFAULT 0")
    )
    tx.execute("UPDATE mailboxes SET log_from = highestmodseq")
    _keep_unseen_uids(tx)
    tx.execute("ALTER TABLE mail ADD COLUMN marks INTEGER NOT NULL DEFAULT 0")
    marks = marks_sql(tx.dialect.find)
    tx.execute(f"UPDATE mail SET marks = {marks} WHERE {marks} <> 0")
    for flag, name in MARK_INDEXES.items():
        tx.execute(f"DROP INDEX {name}")
        tx.execute(f"CREATE INDEX {name} ON mail (mailbox_id, uid) WHERE {mark_test(flag, True)}")
    if not tx.dialect.is_postgres:
        return
    tx.execute("DROP INDEX mail_modseq")
    tx.execute("DROP INDEX mail_unseen")
    tx.execute(f"ALTER TABLE mail SET (fillfactor = {HOT_FILLFACTOR})")
    tx.execute("CLUSTER mail USING mail_pkey")
    tx.execute("ANALYZE mail")


def _keep_unseen_uids(tx: Tx) -> None:
    """Migration 12: ``mailboxes.unseen_uids``, filled in from the rows of every mailbox
    with unseen messages (new mailboxes start with none)."""
    from mailserv.backends.sql import unseen
    from mailserv.backends.sql.rows import flag_test

    tx.execute("ALTER TABLE mailboxes ADD COLUMN unseen_uids TEXT DEFAULT ''")
    if tx.dialect.is_postgres:  # compressed in the row, not in the TOAST table (one write)
        tx.execute("ALTER TABLE mailboxes ALTER COLUMN unseen_uids SET STORAGE MAIN")
    for (box_id,) in tx.all("SELECT id FROM mailboxes WHERE unseen > 0"):
        rows = tx.all(
            "SELECT uid FROM mail WHERE mailbox_id = ? AND "
            + flag_test(tx.dialect.find, "\\Seen", present=False)
            + " ORDER BY uid",
            (box_id,),
        )
        runs = unseen.runs_of(int(uid) for (uid,) in rows)
        tx.execute("UPDATE mailboxes SET unseen_uids = ? WHERE id = ?", (unseen.dump(runs), box_id))


def _keep_sort_keys(tx: Tx) -> None:
    """Migration 13: see :mod:`mailserv.backends.sql.sortkeys`."""
    from mailserv.backends.sql import sortkeys

    sortkeys.fill(tx)


def _index_search_fields(tx: Tx) -> None:
    """Migration 14: see :func:`mailserv.backends.sql.fulltext.create_field_index`."""
    from mailserv.backends.sql import fulltext

    if fulltext.create_field_index(tx):
        tx.execute("ANALYZE messages")


def _cover_flagged(tx: Tx) -> None:
    """Migration 16, SQLite: the index of the flagged messages holds ``marks`` too, so SEARCH
    FLAGGED reads the index alone.  Without it SQLite's plan looked up each flagged row in
    the table to test ``marks`` again, or (a UID range in the query) read every row of the
    mailbox by its key: 2 ms at 20k messages.  PostgreSQL reads the partial index alone
    already (its predicate implies the test)."""
    from mailserv.backends.sql.rows import MARK_INDEXES, mark_test

    if tx.dialect.is_postgres:
        return
    flagged = "\\Flagged"
    name, test = MARK_INDEXES[flagged], mark_test(flagged, True)
    tx.execute(f"DROP INDEX {name}")
    tx.execute(f"CREATE INDEX {name} ON mail (mailbox_id, uid, marks) WHERE {test}")
    tx.execute(f"ANALYZE {name}")


HEADS_BATCH = 500
"""Messages whose heads migration 15 fills per query."""


def _keep_heads(tx: Tx) -> None:
    """Migration 15: ``message_info.heads`` (see :mod:`mailserv.message.heads`), filled
    for every stored message in batches by id, from its record (a record of a layout this
    version does not read: from the message, parsed again), so memory stays flat however
    large the store.  A message a frontend of an older version stores after this stays
    NULL there: its FETCH reads the record, as before."""
    from mailserv.message import heads, store
    from mailserv.message.parse import parse_message

    tx.execute(tx.dialect.ddl("ALTER TABLE message_info ADD COLUMN heads {blob}"))
    last = 0
    while True:
        rows = tx.all(
            "SELECT i.message_id, i.info FROM message_info i WHERE i.message_id > ?"
            " ORDER BY i.message_id LIMIT ?",
            (last, HEADS_BATCH),
        )
        if not rows:
            return
        filled = []
        for message_id, blob in rows:
            try:
                found = store.heads_of(bytes(blob))
            except store.UnknownFormat:
                raw = tx.scalar(
                    "SELECT raw FROM message_data WHERE message_id = ?", (int(message_id),)
                )
                if raw is None:
                    continue
                info = parse_message(bytes(raw))
                found = store.Heads(info.envelope, info.body, info.bodystructure, info.top())
            filled.append((heads.dump(found), int(message_id)))
        tx.many("UPDATE message_info SET heads = ? WHERE message_id = ?", filled)
        last = int(rows[-1][0])


ANALYSIS_LIMIT = 2000
"""Rows SQLite's ANALYZE looks at per index (an estimate is enough for the planner)."""


def refresh_statistics(tx: Tx) -> int:
    """Row counts the query planner weighs indexes with (at server start, after migration 4
    and after the store has grown by a good part, see ``SqlBackend.grew``): without them
    SQLite reads the primary key rather than a partial flag index, and PostgreSQL, whose
    autovacuum comes round only after a while, tests SEARCH TEXT's ``LIKE`` on every text
    of a mailbox it believes nearly empty rather than using the trigram index (and the same
    of SEARCH FROM or SUBJECT, whose ``LIKE`` tests ``messages``).  The number of messages
    in mailboxes now."""
    if tx.dialect.is_postgres:
        tx.execute("ANALYZE mail")
        tx.execute("ANALYZE messages")
        tx.execute("ANALYZE message_text")
    else:
        tx.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
        tx.execute("ANALYZE mail")
    return int(tx.execute("SELECT count(*) FROM mail").fetchone()[0])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "accounts, mailboxes, content-addressed messages, expunge log, users", _V1),
    Migration(
        2,
        "address search columns hold normalised addresses (messages parsed again)",
        function=_reparse_messages,
    ),
    Migration(
        3,
        "message_text: decoded texts for SEARCH BODY/TEXT, indexed (FTS5 trigram, pg_trgm);"
        " existing messages are filled in by the server, in the background",
        function=_create_text_index,
    ),
    Migration(
        4,
        "partial indexes of the unseen, flagged and deleted messages of each mailbox",
        function=_create_flag_indexes,
    ),
    Migration(
        5,
        "SQLite: a word index for SEARCH BODY/TEXT of whole-word needles (FTS5 unicode61);"
        " existing texts are indexed by the server, in the background (PostgreSQL: nothing)",
        function=_create_word_index,
    ),
    Migration(
        6,
        "an index of each mailbox's messages by the day of their internal date"
        " (SEARCH SINCE, BEFORE and ON of a few days in a big mailbox)",
        (f"CREATE INDEX mail_day ON mail (mailbox_id, internal_day, uid) WHERE {DAY_INDEXED}",),
    ),
    Migration(
        7,
        "mailboxes.mailboxid: each mailbox's RFC 8474 MAILBOXID (existing mailboxes get one)",
        function=_add_mailbox_ids,
    ),
    Migration(
        8,
        "mail.savedate: when a message was stored in its mailbox (RFC 8514 SAVEDATE);"
        " messages stored before read their internal date",
        ("ALTER TABLE mail ADD COLUMN savedate {bigint}",),
    ),
    Migration(
        9,
        "app passwords of the users table's users (app_passwords), and users.imap_login:"
        " app-passwords when the main password is refused over IMAP",
        (
            """CREATE TABLE app_passwords (
                name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
                id TEXT NOT NULL,
                label TEXT NOT NULL,
                password TEXT NOT NULL,
                created {bigint} NOT NULL,
                last_used {bigint} NOT NULL,
                PRIMARY KEY (name, id)
            )""",
            "ALTER TABLE users ADD COLUMN imap_login TEXT",
        ),
    ),
    Migration(
        10,
        "users.quota_storage_kib and users.quota_messages: a user's own quota limits"
        " (NULL: the configuration's)",
        (
            "ALTER TABLE users ADD COLUMN quota_storage_kib {bigint}",
            "ALTER TABLE users ADD COLUMN quota_messages {bigint}",
        ),
    ),
    Migration(
        11,
        "acl: each mailbox's access control list (RFC 4314), one row per identifier",
        (
            """CREATE TABLE acl (
                mailbox_id {bigint} NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
                identifier TEXT NOT NULL,
                rights TEXT NOT NULL,
                PRIMARY KEY (mailbox_id, identifier)
            )""",
            "CREATE INDEX acl_identifier ON acl (identifier)",
        ),
    ),
    Migration(
        12,
        "modseq_log: the UID ranges each write of mail rows changed (CHANGEDSINCE reads"
        " them); mail.marks: the flagged and deleted flags as bits, the indexes of the"
        " flagged and deleted messages on it; mailboxes.unseen_uids: the unseen messages"
        " (SEARCH UNSEEN reads them); PostgreSQL: STORE's updates stay on their"
        " page (HOT): no index on mail.flags or mail.modseq, mail rewritten with room on"
        " each page",
        function=_page_local_flag_updates,
    ),
    Migration(
        13,
        "message_keys: each message's SORT and THREAD keys (sent date, base subject,"
        " first addresses, display names, Message-ID, references) as columns, read in one"
        " query per SORT or THREAD; existing messages' keys derived from their stored info",
        function=_keep_sort_keys,
    ),
    Migration(
        14,
        "PostgreSQL: pg_trgm and a trigram index of the case-folded FROM/TO/CC/BCC/SUBJECT"
        " columns (SEARCH of those fields reads it rather than every message of the mailbox),"
        " and the texts' trigram indexes where schema 3 could not make them; without the"
        " extension (no privilege, no contrib package) nothing but a warning: searches scan"
        " (SQLite: nothing)",
        function=_index_search_fields,
    ),
    Migration(
        15,
        "message_info.heads: each message's ENVELOPE, BODY and BODYSTRUCTURE bytes and"
        " offsets kept apart from its record (FETCH reads them without decoding it);"
        " existing messages' heads filled from their records",
        function=_keep_heads,
    ),
    Migration(
        16,
        "SQLite: the index of the flagged messages covers their marks (SEARCH FLAGGED reads"
        " the index alone, not every row of the mailbox)",
        function=_cover_flagged,
    ),
)
LATEST = MIGRATIONS[-1].version


class SchemaError(Exception):
    """The database's schema cannot be used by this version of mailserv."""


def current_version(tx: Tx) -> int | None:
    """The schema version, or None for a database mailserv never touched."""
    if tx.dialect.is_postgres:
        exists = tx.scalar("SELECT to_regclass(?) IS NOT NULL", (VERSION_TABLE,))
    else:
        exists = tx.scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            (VERSION_TABLE,),
        )
    if not exists:
        return None
    return int(tx.scalar(f"SELECT version FROM {VERSION_TABLE}"))


def _lock(tx: Tx) -> None:
    """Serialise schema changes among frontends (SQLite: BEGIN IMMEDIATE already did)."""
    if tx.dialect.is_postgres:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))


def _apply(tx: Tx, start: int | None, target: int) -> list[int]:
    applied = []
    for migration in MIGRATIONS:
        if (start or 0) < migration.version <= target:
            for statement in migration.statements:
                tx.execute(tx.dialect.ddl(statement))
            if migration.function is not None:
                migration.function(tx)
            tx.execute(f"UPDATE {VERSION_TABLE} SET version = ?", (migration.version,))
            applied.append(migration.version)
    return applied


def prepare(tx: Tx) -> int:
    """At server start: create the schema in an empty database, else check its version.

    Write transaction.  SchemaError when the database is older (``mailserv db upgrade``)
    or newer (a newer mailserv wrote it) than this code.
    """
    _lock(tx)
    version = current_version(tx)
    if version is None:
        _apply(tx, None, LATEST)
        return LATEST
    if version < LATEST:
        raise SchemaError(
            f"the database schema is version {version}, this mailserv needs {LATEST}: "
            "run `mailserv db upgrade` first"
        )
    if version > LATEST:
        raise SchemaError(
            f"the database schema is version {version}, newer than this mailserv knows "
            f"({LATEST}): upgrade mailserv"
        )
    return version


def upgrade(tx: Tx) -> list[int]:
    """Apply every pending migration (write transaction); the versions applied."""
    _lock(tx)
    version = current_version(tx)
    if version is not None and version > LATEST:
        raise SchemaError(f"the database schema is version {version}, newer than {LATEST}")
    return _apply(tx, version, LATEST)
