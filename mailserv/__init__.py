"""mailserv: an IMAP4rev1 server built on Twisted, serving mail from pluggable backends."""

__version__ = "0.1.0"
