"""The IMAP4rev1 protocol engine: parse → dispatch → respond."""
