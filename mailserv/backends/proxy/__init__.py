"""The proxy backend: the mailboxes of an upstream IMAP server, served through mailserv.

- ``options.py``: ``--backend-option`` parsing (``upstream=tls:HOST:993``, ``ca=``, ...).
- ``wire.py``, ``client.py``, ``connect.py``: a compact IMAP client on Twisted (response
  parser, one command at a time, IDLE, timeouts) and connection set-up with verified TLS.
- ``backend.py``: the plugin, the backend, and the checker that logs users in upstream.
- ``user.py``: one user's shared upstream side: ``pool.py`` (logged-in connections),
  ``registry.py`` (open mailboxes by name), ``namelock.py`` (no SELECT or STATUS of a
  name upstream while it is renamed or deleted), questions about unselected mailboxes.
- ``account.py``, ``mailbox.py``, ``mirror.py``: the contract, over a selected upstream
  mailbox whose state is mirrored locally; ``channel.py`` keeps it selected (untagged
  responses, IDLE, reconnect), ``downloads.py`` fetches and parses message bytes;
  ``search.py`` translates SEARCH; ``names.py`` mailbox names; ``cache.py`` message bytes
  and parsed messages.
"""

from mailserv.backends.proxy.backend import ProxyBackend, ProxyBackendFactory

factory = ProxyBackendFactory()

__all__ = ["ProxyBackend", "ProxyBackendFactory", "factory"]
