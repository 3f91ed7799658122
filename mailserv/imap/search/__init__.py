"""SEARCH: parse the criteria into a key tree, and evaluate it when the backend does not.

``parse_search`` turns the command's tokens into a :class:`mailserv.search.SearchProgram`
(the query type lives there: backends get it too); a backend may answer it itself
(``IMailbox.search``), else ``evaluate`` runs it over the session's ``MessageMeta``.
"""

from mailserv.imap.search.evaluate import SearchContext, evaluate, needs_content
from mailserv.imap.search.keys import CONTENT_FIELDS, bind, sequence_uids
from mailserv.imap.search.parse import (
    SUPPORTED_CHARSETS,
    BadCharset,
    KeyReader,
    SearchKeyReader,
    parse_search,
)

__all__ = [
    "CONTENT_FIELDS",
    "SUPPORTED_CHARSETS",
    "BadCharset",
    "KeyReader",
    "SearchContext",
    "SearchKeyReader",
    "bind",
    "evaluate",
    "needs_content",
    "parse_search",
    "sequence_uids",
]
