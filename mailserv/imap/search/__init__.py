"""SEARCH: parse the criteria into a key tree, and evaluate it when the backend does not.

``parse_search`` turns the command's tokens into a ``SearchProgram``; a backend may answer it
itself (``IMailbox.search``), else ``evaluate`` runs it over the session's ``MessageMeta``.
"""

from mailserv.imap.search.evaluate import SearchContext, evaluate, needs_content
from mailserv.imap.search.keys import (
    RECENT,
    All,
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    InSet,
    ModSeqAtLeast,
    Not,
    Or,
    SearchKey,
    SearchProgram,
    SizeCompare,
    StringField,
    UidIn,
    bind,
    sequence_uids,
    walk,
)
from mailserv.imap.search.parse import SUPPORTED_CHARSETS, BadCharset, parse_search

__all__ = [
    "RECENT",
    "SUPPORTED_CHARSETS",
    "All",
    "And",
    "BadCharset",
    "Contains",
    "DateCompare",
    "DateField",
    "DateOp",
    "HasFlag",
    "InSet",
    "ModSeqAtLeast",
    "Not",
    "Or",
    "SearchContext",
    "SearchKey",
    "SearchProgram",
    "SizeCompare",
    "StringField",
    "UidIn",
    "bind",
    "evaluate",
    "needs_content",
    "parse_search",
    "sequence_uids",
    "walk",
]
