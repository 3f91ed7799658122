"""ESORT (RFC 5267 section 4.2): ``SORT RETURN (MIN MAX COUNT ALL) ...`` answered with an
ESEARCH response (RFC 4731 syntax, :mod:`mailserv.imap.esearch`) instead of ``* SORT``:
MIN and MAX are the first and the last message in the sort order, ALL every match in that
order.  The SORT command (:mod:`mailserv.imap.extensions.sort`) reads the options."""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension("ESORT", capabilities=(Capability(b"ESORT"),))
