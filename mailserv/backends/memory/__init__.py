"""The memory backend: mail kept in process memory, and the model for backend plugins.

Read it to learn the contract of :mod:`mailserv.interfaces` by example: ``backend.py`` is the
``IBackendFactory`` plugin and the ``IBackend``; ``account.py`` the ``IAccount`` (the
hierarchy rules come from the kit, :mod:`mailserv.backends.kit`); ``mailbox.py`` the
``IMailbox`` (listeners and modseqs from the kit).  Every I/O method of the contract is
declared ``Awaitable``, so each is ``async def`` here although nothing has to wait.
Listener events are plain calls made after the change they describe, with the ``origin``
of the call that caused it.  ``mailserv/plugins/builtin.py`` registers ``factory`` below.
"""

from mailserv.backends.memory.account import MemoryAccount
from mailserv.backends.memory.backend import MemoryBackend, MemoryBackendFactory
from mailserv.backends.memory.mailbox import MemoryMailbox

factory = MemoryBackendFactory()

__all__ = ["MemoryAccount", "MemoryBackend", "MemoryBackendFactory", "MemoryMailbox", "factory"]
