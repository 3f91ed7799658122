"""Messages parsed once, when they enter the store: envelope, body structure, part offsets.

``parse_message(raw)`` returns a :class:`MessageInfo`; backends keep it next to the message
so FETCH and SEARCH never re-parse.  ``section_bytes`` cuts BODY[section] out of the raw bytes.
"""

from mailserv.message.info import MessageInfo, Part
from mailserv.message.parse import parse_message
from mailserv.message.sections import section_bytes

__all__ = ["MessageInfo", "Part", "parse_message", "section_bytes"]
