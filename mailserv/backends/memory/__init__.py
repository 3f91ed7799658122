"""The memory backend: mail kept in process memory, and the model for backend plugins.

Read this package to learn the contract of :mod:`mailserv.interfaces` by example:

- ``backend.py``: the ``IBackendFactory`` plugin (validates options) and the ``IBackend``.
- ``account.py``: ``IAccount``: the names, with the RFC 3501 rules taken from the kit.
- ``mailbox.py``: ``IMailbox``: UIDs, flags, recent claiming; modseqs and listeners from the kit.

Every I/O method of the contract is declared ``Awaitable``, so here each is ``async def``,
although nothing has to wait (no ``await`` inside: the result is there at once).  A backend
that does I/O awaits in them, or returns a Deferred.  Listener events are plain calls made
after the state change they describe, carrying the ``origin`` of the call that caused it.
Names, flags and attributes are the constants of :mod:`mailserv.interfaces` (``INBOX``,
``DELIMITER``, ``SEEN``, ``RECENT``, ``NOSELECT``, ...).

Register a backend with twisted.plugin by putting a module in ``mailserv/plugins/`` that
imports its factory instance, as is done for ``factory`` below.
"""

from mailserv.backends.memory.account import MemoryAccount
from mailserv.backends.memory.backend import MemoryBackend, MemoryBackendFactory
from mailserv.backends.memory.mailbox import MemoryMailbox

factory = MemoryBackendFactory()

__all__ = ["MemoryAccount", "MemoryBackend", "MemoryBackendFactory", "MemoryMailbox", "factory"]
