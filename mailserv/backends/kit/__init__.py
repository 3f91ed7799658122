"""What every backend needs and need not write again: import these in your own backend.

- :mod:`~mailserv.backends.kit.names`: RFC 3501's hierarchy rules over a set of names
  (CREATE with parents, DELETE leaving ``\\Noselect``, RENAME with inferiors, RENAME INBOX).
- :mod:`~mailserv.backends.kit.listeners`: the listener set of a mailbox and its event fan-out
  (``Listened`` gives a mailbox ``add_listener``/``remove_listener``).
- :mod:`~mailserv.backends.kit.lane`: a mailbox's changes one at a time, each in time slices
  that let other sessions in (``Lane``: hold it around every change of a big mailbox;
  ``TimeSlices`` from :mod:`mailserv.slicing`, re-exported, cuts long loops).
- :mod:`~mailserv.backends.kit.modlog`: HIGHESTMODSEQ and the expunge log behind
  ``changes_since``.
- :mod:`~mailserv.backends.kit.counts`: the counters behind ``status()`` and ``claim_recent``
  (and ``new_mailbox_id``, a MAILBOXID for a new mailbox).
- :mod:`~mailserv.backends.kit.changes`: what a STORE (``plan_store``, UNCHANGEDSINCE
  included) or an EXPUNGE (``expungeable``) changes.
- :mod:`~mailserv.backends.kit.flagsets`: UIDs by flag and by day of the internal date,
  kept as messages change, and SEARCH of flags and dates (UNSEEN, SINCE...) from them.
- :mod:`~mailserv.backends.kit.aclindex`: which mailboxes other users have entries in
  (``AclIndex``), so ``IAclAccount.shared_mailboxes`` costs what it returns.
- :mod:`~mailserv.backends.kit.textindex`: SEARCH BODY and TEXT of messages held in memory
  from an in-memory SQLite word index (``TextIndex``: tell it what comes and goes).
- :mod:`~mailserv.backends.kit.options`: declare ``--backend-option`` keys once, get them
  parsed and typed, with ``BackendOptionError`` naming the bad key.

The memory backend (:mod:`mailserv.backends.memory`) is built from these and nothing else.
"""

from mailserv.backends.kit.aclindex import AclIndex
from mailserv.backends.kit.changes import expungeable, plan_store
from mailserv.backends.kit.counts import Tally, new_mailbox_id
from mailserv.backends.kit.lane import Lane
from mailserv.backends.kit.listeners import Listened, ListenerSet
from mailserv.backends.kit.modlog import ModseqLog
from mailserv.backends.kit.names import Hierarchy, ancestors, check_name, inferiors
from mailserv.backends.kit.options import Bool, Choice, Int, Number, OptionSchema, Path, Text
from mailserv.slicing import TimeSlices

__all__ = [
    "AclIndex",
    "Bool",
    "Choice",
    "Hierarchy",
    "Int",
    "Lane",
    "Listened",
    "ListenerSet",
    "ModseqLog",
    "Number",
    "OptionSchema",
    "Path",
    "Tally",
    "Text",
    "TimeSlices",
    "ancestors",
    "check_name",
    "expungeable",
    "inferiors",
    "new_mailbox_id",
    "plan_store",
]
