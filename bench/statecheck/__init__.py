"""A concurrent, model-based IMAP state checker: ``python -m bench.statecheck``.

``--clients`` clients (seeded random, ``--seed``) share a few mailboxes of one or a few users
over real sockets, each on its own raw IMAP connection, doing SELECT/EXAMINE, FETCH (flags,
headers, whole bodies, partials), STORE (system flags and new keywords), APPEND, COPY, MOVE,
EXPUNGE, UID EXPUNGE, STATUS, IDLE, NOOP, CLOSE, LOGOUT and reconnects.  Every connection
keeps what the server told it (:class:`Model`: message count, sequence number → UID, flags
per message, the FLAGS list, UIDVALIDITY, UIDNEXT) and checks every response against it and
against what any connection was told before (:class:`World`): no sequence number beyond the
known count, EXPUNGE renumbering, UIDs ascending and never reused, EXISTS never below the
known count, keywords in FETCH listed by an earlier FLAGS, nothing after BYE, LOGOUT answered
by BYE and the tagged OK only, tags matching, UIDNEXT never going back and above every UID
seen, UIDVALIDITY stable, message bodies immutable (partials and headers slices of them).
Every ``--round`` seconds the clients stop, each NOOPs, and a fresh connection EXAMINEs each
mailbox and fetches ``1:* (UID FLAGS)``: it must agree with every client's model.

Violations are counted with their context, not raised.  Prints the commands per kind,
commands/s and the violations (the first ``--show``); exits 1 when there was one.
The server is started like ``bench.run`` does (``--backend`` memory, maildir, sql-sqlite,
sql-postgresql, proxy; ``dovecot`` runs the checker against a private Dovecot alone, as a
reference); traffic goes only to 127.0.0.1.  A connection that saw a violation selects its
mailbox again, and until then what it learns stays out of the shared facts, so one fault is
not blamed on other clients.  ``--trace FILE`` writes every line sent and received.
"""

from __future__ import annotations

from bench.statecheck.clients import (
    MAILBOXES,
    SYSTEM_FLAGS,
    Client,
    Pause,
    Settings,
    reference_check,
)
from bench.statecheck.connection import READ_LIMIT, RESPONSE_TIMEOUT, Closed, Connection
from bench.statecheck.model import RECENT, Entry, Model, compare
from bench.statecheck.run import (
    Report,
    against_dovecot,
    backend_spec,
    check,
    prepare,
    run_check,
    settings_from,
)
from bench.statecheck.wire import clip, compact, flag_names, parse_simple, seq_numbers, uid_set
from bench.statecheck.world import KEEP_VIOLATIONS, MailboxFacts, Snapshot, Violation, World

__all__ = [
    "KEEP_VIOLATIONS",
    "MAILBOXES",
    "READ_LIMIT",
    "RECENT",
    "RESPONSE_TIMEOUT",
    "SYSTEM_FLAGS",
    "Client",
    "Closed",
    "Connection",
    "Entry",
    "MailboxFacts",
    "Model",
    "Pause",
    "Report",
    "Settings",
    "Snapshot",
    "Violation",
    "World",
    "against_dovecot",
    "backend_spec",
    "check",
    "clip",
    "compact",
    "compare",
    "flag_names",
    "parse_simple",
    "prepare",
    "reference_check",
    "run_check",
    "seq_numbers",
    "settings_from",
    "uid_set",
]
