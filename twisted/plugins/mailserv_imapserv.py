"""Makes ``twistd imapserv`` exist.  No ``__init__.py`` beside it: twisted.plugins is Twisted's.

Imports nothing from mailserv, so ``twistd --help`` stays fast and works even when the
server's own dependencies are broken; ``mailserv.tap`` is loaded when the command is used.
"""

from twisted.application.service import ServiceMaker

serviceMaker = ServiceMaker(
    "mailserv IMAP server",
    "mailserv.tap",
    "An IMAP4rev1 server with pluggable mail stores (see --help-backends).",
    "imapserv",
)
