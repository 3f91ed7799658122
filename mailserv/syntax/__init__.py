"""IMAP syntax shared by the server, the proxy's upstream client and ``message/``.

Nothing here knows about sessions, mailboxes or backends: tokens and the lexer that builds them,
encoders for response and command values, sequence sets, modified UTF-7 and date-time.
"""
