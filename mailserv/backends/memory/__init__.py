"""The memory backend: mail kept in process memory, and the model for backend plugins.

Read this package to learn the contract of :mod:`mailserv.interfaces` by example:

- ``backend.py``: the ``IBackendFactory`` plugin (validates options) and the ``IBackend``.
- ``account.py``: ``IAccount``, the mailbox hierarchy and the RFC 3501 DELETE/RENAME rules.
- ``mailbox.py``: ``IMailbox``, UIDs, modseqs, flags, recent claiming and listener events.

Every method here is a plain synchronous method, because nothing has to wait.  A backend
that does I/O may write any contract method as ``async def`` (or return a Deferred): the
engine awaits whatever comes back.  Listener events must still follow the state change
they describe and carry the ``origin`` of the call that caused it.

Register a backend with twisted.plugin by putting a module in ``mailserv/plugins/`` that
imports its factory instance, as is done for ``factory`` below.
"""

from mailserv.backends.memory.account import MemoryAccount
from mailserv.backends.memory.backend import MemoryBackend, MemoryBackendFactory
from mailserv.backends.memory.mailbox import MemoryMailbox

factory = MemoryBackendFactory()

__all__ = ["MemoryAccount", "MemoryBackend", "MemoryBackendFactory", "MemoryMailbox", "factory"]
