"""STATUS=SIZE (RFC 8438): STATUS's ``SIZE``, the octets of all messages of the mailbox, from
the backend's kept counts (``MailboxStatus.size``)."""

from mailserv.imap.registry import Capability, Extension, StatusItem

EXTENSION = Extension(
    "STATUS=SIZE",
    capabilities=(Capability(b"STATUS=SIZE"),),
    status_items=(StatusItem("SIZE", lambda counts: counts.size),),
)
