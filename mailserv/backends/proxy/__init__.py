"""The proxy backend: the mailboxes of an upstream IMAP server, served through mailserv.

- ``options.py``: ``--backend-option`` parsing (``upstream=tls:HOST:993``, ``ca=``, ...).
- ``wire.py``, ``client.py``, ``connect.py``: a compact IMAP client on Twisted (response
  parser, one command at a time, IDLE, timeouts) and connection set-up with verified TLS.
- ``backend.py``: the plugin, the backend, and the checker that logs users in upstream.
- ``user.py``: one user's pool of upstream connections and shared state.
- ``account.py``, ``mailbox.py``, ``mirror.py``: the contract, over a selected upstream
  mailbox whose state is mirrored locally; ``search.py`` translates SEARCH; ``names.py``
  mailbox names; ``cache.py`` message bytes.
"""

from mailserv.backends.proxy.backend import ProxyBackend, ProxyBackendFactory

factory = ProxyBackendFactory()

__all__ = ["ProxyBackend", "ProxyBackendFactory", "factory"]
