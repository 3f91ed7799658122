"""``--workers N``: N processes serving the same listening sockets.

The master (``twistd imapserv --workers N``) binds every listener, never accepts on them,
and runs N children (``python -m mailserv.workers``), each handed the listening sockets as
inherited file descriptors: the kernel spreads new connections over the children, each a
whole server (backend, portal, sessions) of its own.  A child that dies is restarted and
logged; on SIGTERM every child says BYE to its sessions and stops its backend before the
master exits.  Children stop by themselves when the master goes away (their stdin closes).
The connection limits and the failed-login throttle are the master's, for all children
together (``limits``): each child asks over a socket pair it inherits.

Only backends whose state crosses processes can run this way: they provide
``IMultiProcessBackend`` (maildir: files and inotify; PostgreSQL: LISTEN/NOTIFY; the proxy:
the upstream's own state).  Others are refused with a clear message.  Without
``--workers``, such a backend gets a child per core, any other one process.
"""
