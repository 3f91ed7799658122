"""Messages parsed once, when they enter the store: envelope, body structure, part offsets.

``parse_message(raw)`` returns a :class:`MessageInfo`; backends keep it next to the message
so FETCH and SEARCH never re-parse.  ``section_bytes`` cuts BODY[section] out of the raw bytes.
"""

from mailserv.message.info import MessageInfo, Part

__all__ = ["MessageInfo", "Part"]
