"""SEARCH's IMAP syntax: ``parse_search`` turns the command's tokens into a
:class:`mailserv.search.SearchProgram`, which a backend may answer itself
(``ISearchableMailbox``) or :mod:`mailserv.search.evaluate` runs over the messages."""
