"""What every backend needs and need not write again: import these in your own backend.

- :mod:`~mailserv.backends.kit.names`: RFC 3501's hierarchy rules over a set of names
  (CREATE with parents, DELETE leaving ``\\Noselect``, RENAME with inferiors, RENAME INBOX).
- :mod:`~mailserv.backends.kit.listeners`: the listener set of a mailbox and its event fan-out.
- :mod:`~mailserv.backends.kit.modlog`: HIGHESTMODSEQ and the expunge log behind
  ``changes_since``.
- :mod:`~mailserv.backends.kit.options`: declare ``--backend-option`` keys once, get them
  parsed and typed, with ``BackendOptionError`` naming the bad key.

The memory backend (:mod:`mailserv.backends.memory`) is built from these and nothing else.
"""

from mailserv.backends.kit.listeners import ListenerSet
from mailserv.backends.kit.modlog import ModseqLog
from mailserv.backends.kit.names import Hierarchy, ancestors, check_name, inferiors
from mailserv.backends.kit.options import Bool, Choice, Int, Number, OptionSchema, Path, Text

__all__ = [
    "Bool",
    "Choice",
    "Hierarchy",
    "Int",
    "ListenerSet",
    "ModseqLog",
    "Number",
    "OptionSchema",
    "Path",
    "Text",
    "ancestors",
    "check_name",
    "inferiors",
]
