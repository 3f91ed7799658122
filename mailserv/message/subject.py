"""The base subject of RFC 5256 section 2.1, which SORT SUBJECT and THREAD compare.

:func:`base_subject` applies the extraction steps in their order: (1) whitespace runs become
one space (the text given is already unfolded and RFC 2047-decoded), (2) ``(fwd)`` and
whitespace trailers go, (3) ``Re:``/``Fw:``/``Fwd:`` leaders (with ``[blob]`` prefixes and
``Re[2]:`` style counters) go, (4) a leading ``[blob]`` goes when text remains after it,
(5) repeat 3-4, (6) a ``[fwd: ...]`` wrapper is unwrapped and the whole begins again.  It also
tells whether the subject marks a reply or forward (a leader, a ``(fwd)`` trailer or a
``[fwd: ...]`` wrapper was removed), which the REFERENCES subject merge needs.
"""

from __future__ import annotations

import re

_WSP_RUN = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ \t]*"
_LEADER = re.compile(r"(?:" + _BLOB + r")*(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:", re.I)
_BLOB_PREFIX = re.compile(_BLOB)
_FWD_TRAILER = "(fwd)"


def base_subject(subject: str) -> tuple[str, bool]:
    """``(base subject, is a reply or forward)`` of a decoded Subject value."""
    text = _WSP_RUN.sub(" ", subject)
    reply = False
    while True:
        # (2) trailers: "(fwd)" and whitespace, as often as they occur
        while True:
            stripped = text.rstrip(" ")
            if stripped[-5:].lower() == _FWD_TRAILER:
                text = stripped[:-5]
                reply = True
            elif stripped != text:
                text = stripped
            else:
                break
        # (3)-(5) leaders and blobs
        while True:
            changed = False
            while True:  # (3) every subj-leader: a leading space or [blob]* re/fw/fwd [blob] ':'
                if text.startswith(" "):
                    text = text.lstrip(" ")
                    changed = True
                    continue
                match = _LEADER.match(text)
                if match is None:
                    break
                text = text[match.end() :]
                reply = changed = True
            match = _BLOB_PREFIX.match(text)  # (4) a blob, unless it is all that is left
            if match is not None and match.end() < len(text):
                text = text[match.end() :]
                changed = True
            if not changed:
                break
        # (6) "[fwd:" ... "]" is unwrapped, and the steps start again from (2)
        if len(text) >= 6 and text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return text, reply


def sort_key(text: str) -> str:
    """``text`` as the i;ascii-casemap collation compares it: ASCII letters upper-cased,
    every other character kept (so code point order is the UTF-8 octet order it asks for)."""
    if text.isascii():
        return text.upper()
    return text.translate(_ASCII_UPPER)


_ASCII_UPPER = {code: code - 32 for code in range(ord("a"), ord("z") + 1)}
