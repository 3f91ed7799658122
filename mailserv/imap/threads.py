"""THREAD's algorithms (RFC 5256 sections 3 and 4): ORDEREDSUBJECT and REFERENCES.

Both take the matching messages in mailbox order as :class:`Message` (number to answer
with, the SORT fields stored with it) and return the ``(...)(...)`` thread lists.  They are
generators that yield every few thousand steps (see :mod:`mailserv.imap.sorting`); nothing
recurses, so a reply chain as long as the mailbox is fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from mailserv.imap.sorting import CHUNK, Work, gathered, released, sorted_slices

STEP = 256
"""Messages or nodes handled between two yields where each costs some microseconds (a
reference followed, a dummy's chain walked, a list written): 4,096 of them made turns of
15-70 ms in a THREAD of 100k."""


class Message(NamedTuple):
    """A tuple: made for every message of a THREAD (a tenth of the time a frozen dataclass
    takes to make)."""

    number: int
    """Its sequence number or UID, as the answer lists it."""
    date: float
    """The sent date (the internal date when there is none), as a timestamp."""
    message_id: str
    references: tuple[str, ...]
    subject: str
    """The base subject (compared as stored)."""
    reply: bool


class _Node:
    """A message (``index`` into the input) or a dummy (``index`` -1) in the thread tree."""

    __slots__ = ("index", "parent", "children")

    def __init__(self, index: int = -1) -> None:
        self.index = index
        self.parent: _Node | None = None
        self.children: list[_Node] = []


def ordered_subject(messages: Sequence[Message]) -> Work[bytes]:
    """ORDEREDSUBJECT: messages grouped by base subject, each group in date order under its
    first message, the groups ordered by the date of their first message."""
    keyed = yield from gathered(
        messages, lambda part, at: ((m.subject, m.date, i) for i, m in enumerate(part, at))
    )
    rows = yield from sorted_slices(keyed)
    groups: list[list[int]] = []
    last: str | None = None
    for count, (subject, _, index) in enumerate(rows):
        if subject == last:
            groups[-1].append(index)
        else:
            groups.append([index])
            last = subject
        if not count % CHUNK:
            yield
    firsts = yield from gathered(
        groups,
        lambda part, at: ((messages[g[0]].date, g[0], i) for i, g in enumerate(part, at)),
    )
    firsts = yield from sorted_slices(firsts)  # first indexes differ: positions never compared
    out = []
    for count, (_, _, position) in enumerate(firsts):
        first, *rest = (messages[index].number for index in groups[position])
        if not rest:
            out.append(b"(%d)" % first)
        elif len(rest) == 1:
            out.append(b"(%d %d)" % (first, rest[0]))
        else:
            out.append(b"(%d " % first + b"".join(b"(%d)" % n for n in rest) + b")")
        if not count % STEP:
            yield
    yield from released(keyed, rows, groups, firsts)
    return b"".join(out)


def references(messages: Sequence[Message]) -> Work[bytes]:
    """REFERENCES (RFC 5256 section 3): parent/child links from the references, dummies
    for missing parents, pruned; threads with the same base subject merged; siblings in
    sent-date order."""
    nodes = yield from _link(messages)
    # (2) the messages without a parent are the threads so far
    roots = yield from gathered(nodes, lambda part, _: (n for n in part if n.parent is None))
    roots = yield from _prune(roots)
    roots = yield from _sort_siblings(roots, messages)  # (4), dummies by their first child
    roots = yield from _merge_subjects(roots, messages)
    roots = yield from _sort_all(roots, messages)  # (6)
    answer = yield from _format(roots, messages)
    roots.clear()
    yield from _unlinked(nodes)
    return answer


def _unlinked(nodes: list[_Node]) -> Work[None]:
    """Free the tree a chunk at a time: a child's link to its parent makes a cycle, which
    would be left to the collector's full passes (and those the nodes all at once)."""
    for start in range(0, len(nodes), CHUNK):
        for node in nodes[start : start + CHUNK]:
            node.parent = None
        yield
    yield from released(nodes)


def _link(messages: Sequence[Message]) -> Work[list[_Node]]:
    """Step 1: the nodes of every message and every referenced id, linked."""
    by_id: dict[str, _Node] = {}
    nodes: list[_Node] = []
    for index, message in enumerate(messages):
        node = by_id.get(message.message_id) if message.message_id else None
        if node is not None and node.index < 0:
            node.index = index  # a dummy made for an earlier reference: this is it
        else:  # no id, or the id of an earlier message: an id of its own
            node = _Node(index)
            nodes.append(node)
            if message.message_id and message.message_id not in by_id:
                by_id[message.message_id] = node
        # (A) link the references in order, never changing a parent, never making a loop
        previous: _Node | None = None
        for ref in message.references:
            current = by_id.get(ref)
            if current is None:
                current = by_id[ref] = _Node()
                nodes.append(current)
            if previous is not None and current.parent is None and not _above(current, previous):
                _attach(current, previous)
            previous = current
        # (B) the last reference is the parent (a truncated References may have said else)
        if node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
        if previous is not None and not _above(node, previous):
            _attach(node, previous)
        if not index % STEP:
            yield
    return nodes


def _above(node: _Node, other: _Node) -> bool:
    """Whether ``node`` is ``other`` or one of its ancestors (a link would loop)."""
    step: _Node | None = other
    while step is not None:
        if step is node:
            return True
        step = step.parent
    return False


def _attach(child: _Node, parent: _Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _prune(roots: list[_Node]) -> Work[list[_Node]]:
    """Step 3: dummies without children go; a dummy's children take its place, except at
    the top when there are several of them."""
    order = yield from _bottom_up(roots)  # children are final before their parent is
    for count, node in enumerate(order):
        if any(child.index < 0 for child in node.children):
            node.children = _spliced(node.children, node)
        if not count % STEP:
            yield
    return _spliced(roots, None)


def _bottom_up(roots: list[_Node]) -> Work[list[_Node]]:
    """Every node under ``roots``, each after all of its descendants (no recursion)."""
    order: list[_Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
        if not len(order) % CHUNK:
            yield
    order.reverse()
    return order


def _spliced(children: list[_Node], parent: _Node | None) -> list[_Node]:
    out: list[_Node] = []
    for child in children:
        if child.index >= 0:
            out.append(child)
        elif len(child.children) == 1 or (parent is not None and child.children):
            for grandchild in child.children:
                grandchild.parent = parent
                out.append(grandchild)
        elif child.children:
            out.append(child)
    return out


def _date_key(node: _Node, messages: Sequence[Message]) -> tuple[float, int]:
    """A node's place among its siblings: sent date, then mailbox order; a dummy's is its
    first child's."""
    while node.index < 0 and node.children:
        node = node.children[0]
    return messages[node.index].date, node.index


def _sort_siblings(siblings: list[_Node], messages: Sequence[Message]) -> Work[list[_Node]]:
    for count, node in enumerate(siblings):
        if node.index < 0:
            node.children.sort(key=lambda child: _date_key(child, messages))
        if not count % STEP:
            yield
    return (yield from _by_date(siblings, messages))


def _by_date(nodes: list[_Node], messages: Sequence[Message]) -> Work[list[_Node]]:
    """``nodes`` sorted by :func:`_date_key`, in slices (the threads of 100k messages)."""
    rows = []
    for count, node in enumerate(nodes):
        rows.append((*_date_key(node, messages), node))  # keys are unique: nodes never compared
        if not count % STEP:
            yield
    ordered = yield from sorted_slices(rows)
    out = yield from gathered(ordered, lambda part, _: (row[2] for row in part))
    yield from released(rows, ordered)
    return out


def _subject(node: _Node, messages: Sequence[Message]) -> str:
    index = node.index if node.index >= 0 else node.children[0].index
    return messages[index].subject if index >= 0 else ""


def _merge_subjects(roots: list[_Node], messages: Sequence[Message]) -> Work[list[_Node]]:
    """Step 5: threads whose subjects agree become one."""
    table: dict[str, _Node] = {}
    for count, node in enumerate(roots):  # (B) one thread per subject: a dummy's, else...
        if not count % STEP:
            yield
        subject = _subject(node, messages)
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (
            held.index >= 0
            and (node.index < 0 or (messages[held.index].reply and not messages[node.index].reply))
        ):
            table[subject] = node
    out: list[_Node] = []
    replaced: dict[_Node, _Node] = {}  # a thread later in the list, now under a dummy
    for count, node in enumerate(roots):  # (C) the others join it
        if not count % STEP:
            yield
        node = replaced.get(node, node)
        subject = _subject(node, messages)
        held = table.get(subject) if subject else None
        if held is None or held is node:
            out.append(node)
            continue
        if held.index < 0 and node.index < 0:
            for child in node.children:
                _attach(child, held)
        elif held.index < 0 or (messages[node.index].reply and not messages[held.index].reply):
            _attach(node, held)
        else:
            dummy = _Node()
            _attach(held, dummy)
            _attach(node, dummy)
            table[subject] = replaced[held] = dummy
    return (yield from gathered(out, lambda part, _: (replaced.get(n, n) for n in part)))


def _sort_all(roots: list[_Node], messages: Sequence[Message]) -> Work[list[_Node]]:
    """Step 6: every set of siblings by sent date, the deepest first; the roots so sorted."""
    order = yield from _bottom_up(roots)
    for count, node in enumerate(order):
        if len(node.children) > 1:
            node.children.sort(key=lambda child: _date_key(child, messages))
        if not count % STEP:
            yield
    return (yield from _by_date(roots, messages))


def _format(roots: list[_Node], messages: Sequence[Message]) -> Work[bytes]:
    """``(1 2 (3)(4 5))...``: a node's only child follows it, several are lists of their own;
    a dummy is a list of its children's lists."""
    out: list[bytes] = []
    pieces: list[bytes] = []  # ``out`` joined now and then: one join of 300k was 20 ms
    stack: list[_Node | bytes] = list(reversed(roots))
    count = 0
    while stack:
        count += 1
        if not count % STEP:
            pieces.append(b"".join(out))
            out.clear()
            yield
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        # item opens a thread list: "(" members ")"
        out.append(b"(")
        stack.append(b")")
        node: _Node = item
        while True:
            if node.index >= 0:
                out.append(b"%d" % messages[node.index].number)
            if len(node.children) == 1 and node.index >= 0:
                out.append(b" ")
                node = node.children[0]
                continue
            if node.children:
                if node.index >= 0:
                    out.append(b" ")
                stack.extend(reversed(node.children))
            break
    pieces.append(b"".join(out))
    return b"".join(pieces)
