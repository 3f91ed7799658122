"""Sieve scripts (RFC 5228): compiled once from sievelib's parse tree, run per message.

sievelib (a well-kept parser of RFC 5228 and its extensions) checks the grammar and which
commands and tags each ``require`` allows; :func:`compile_script` then walks its tree into
the small immutable nodes below, refusing what we do not run (an extension not in
:data:`EXTENSIONS`, a ``require`` that is not at the top, nesting too deep), and
:func:`run` evaluates them against a :class:`MessageFacts`.  Evaluation is pure (no I/O):
it returns the :class:`Result` (where the message goes, with which flags, what to send),
which :mod:`mailserv.delivery.sieve` carries out.

Extensions: fileinto, envelope, imap4flags (RFC 5232; without variables), vacation
(RFC 5230), reject (RFC 5429), copy (RFC 3894), mailbox (RFC 5490: ``fileinto :create``
only) and the comparators i;octet and i;ascii-casemap.  Sieve has no loops, so a run
is bounded by the script's size (:data:`MAX_SCRIPT`) and the header data it looks at
(:data:`MAX_HEADER_BLOCK`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses
from typing import Any

from sievelib.commands import Command
from sievelib.parser import Parser

__all__ = [
    "EXTENSIONS",
    "MAX_SCRIPT",
    "MessageFacts",
    "Result",
    "Script",
    "SieveError",
    "SieveRuntimeError",
    "compile_script",
    "run",
]

MAX_SCRIPT = 64 * 1024
"""Octets in one script."""
MAX_DEPTH = 24
"""Nesting of blocks and tests."""
MAX_HEADER_BLOCK = 256 * 1024
"""Octets of a message's header a script looks at; what follows is not seen."""
MAX_ACTIONS = 64
"""fileinto, redirect, vacation... actions one run may take."""
MAX_REDIRECTS = 8
EXTENSIONS = (
    "fileinto",
    "envelope",
    "imap4flags",
    "vacation",
    "reject",
    "copy",
    "mailbox",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
)
"""What ``require`` may name (and ManageSieve's SIEVE capability lists)."""
SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_ATOM_SPECIALS = set('(){ %*"\\]') | {chr(c) for c in range(32)} | {"\x7f"}


class SieveError(Exception):
    """A script we cannot use; the text says where and why (for ManageSieve's NO)."""


class SieveRuntimeError(Exception):
    """A run that cannot finish (RFC 5228 2.10.6): the message is kept in INBOX."""


# -- the compiled script ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Glob:
    """A ``:matches`` key split at its ``*``s: fixed-length pieces (``?`` is any one
    character) that must come in order, the first at the start and the last at the end."""

    pieces: tuple[tuple[re.Pattern[str], int], ...]
    """Each piece as a pattern without repetition, and its length in characters."""
    starred: bool

    @classmethod
    def of(cls, key: str) -> Glob:
        pieces: list[list[str]] = [[]]
        chars = iter(key)
        for char in chars:
            if char == "*":
                pieces.append([])
            elif char == "?":
                pieces[-1].append(".")
            else:
                pieces[-1].append(re.escape(next(chars, "") if char == "\\" else char))
        compiled = tuple((re.compile("".join(p), re.DOTALL), len(p)) for p in pieces)
        return cls(compiled, len(pieces) > 1)

    def match(self, text: str) -> bool:
        (first, _), *middle = self.pieces
        if not self.starred:
            return first.fullmatch(text) is not None
        found = first.match(text)
        if found is None:
            return False
        at = found.end()
        last, length = middle.pop()
        for piece, _ in middle:
            found = piece.search(text, at)
            if found is None:
                return False
            at = found.end()
        return len(text) - length >= at and last.fullmatch(text, len(text) - length) is not None


@dataclass(frozen=True, slots=True)
class Matcher:
    """A match type with its comparator and keys, ready to test values."""

    kind: str
    """``:is``, ``:contains`` or ``:matches``."""
    fold: bool
    """i;ascii-casemap (else i;octet)."""
    keys: tuple[str, ...]
    globs: tuple[Glob, ...] = ()
    """``:matches``: the keys as patterns."""

    def any(self, values: Iterable[str]) -> bool:
        for value in values:
            text = _fold(value) if self.fold else value
            if self.kind == ":is" and text in self.keys:
                return True
            if self.kind == ":contains" and any(key in text for key in self.keys):
                return True
            if self.kind == ":matches" and any(glob.match(text) for glob in self.globs):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Test:
    """``name`` with its fields: header/address/envelope (``names``, ``part``, ``matcher``),
    exists (``names``), size (``over``, ``limit``), hasflag (``matcher``), true/false, and
    not/allof/anyof (``tests``)."""

    name: str
    names: tuple[str, ...] = ()
    part: str = ":all"
    matcher: Matcher | None = None
    over: bool = False
    limit: int = 0
    tests: tuple[Test, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """``name`` (keep, fileinto, discard, redirect, reject, vacation, setflag, addflag,
    removeflag, stop) with its arguments by name (strings, tuples of strings, ints, flags)."""

    name: str
    args: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)


@dataclass(frozen=True, slots=True)
class If:
    """if/elsif/else: the first branch whose test holds (None: else) runs."""

    branches: tuple[tuple[Test | None, Block], ...]


Statement = Action | If
Block = tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class Script:
    body: Block
    uses: frozenset[str]
    """Actions it may take (``redirect`` is refused at upload without a relay)."""


# -- compiling ----------------------------------------------------------------------------


def compile_script(source: bytes) -> Script:
    """Parse and check ``source``; SieveError with a line number when it cannot run."""
    if len(source) > MAX_SCRIPT:
        raise SieveError(f"script too large: {len(source)} octets (the limit is {MAX_SCRIPT})")
    try:
        source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SieveError("script is not UTF-8") from exc
    parser = Parser()
    try:
        parsed = parser.parse(source)
    except RecursionError as exc:
        raise SieveError("script nested too deeply") from exc
    if not parsed:
        raise SieveError(str(parser.error))
    compiler = _Compiler()
    body = compiler.block(parser.result, 0, top=True)
    return Script(body, frozenset(compiler.uses))


class _Compiler:
    def __init__(self) -> None:
        self.uses: set[str] = set()

    def block(self, commands: Sequence[Command], depth: int, top: bool = False) -> Block:
        if depth > MAX_DEPTH:
            raise SieveError(f"blocks nested more than {MAX_DEPTH} deep")
        out: list[Statement] = []
        leading = top
        for command in commands:
            name = command.name
            if name == "require":
                if not leading:
                    raise SieveError("require must come before any other command")
                for capability in _strings(command.arguments["capabilities"]):
                    if capability not in EXTENSIONS:
                        raise SieveError(f"unsupported extension {capability!r}")
                continue
            leading = False
            if name == "if":
                out.append(If(((self.test(command.arguments["test"], depth + 1),
                                self.block(command.children, depth + 1)),)))  # fmt: skip
            elif name in ("elsif", "else"):
                previous = out[-1]
                assert isinstance(previous, If)  # sievelib checks must_follow
                test = self.test(command.arguments["test"], depth + 1) if name == "elsif" else None
                out[-1] = If((*previous.branches, (test, self.block(command.children, depth + 1))))
            else:
                out.append(self.action(command))
        return tuple(out)

    def action(self, command: Command) -> Action:
        name = command.name
        args, extra = command.arguments, command.extra_arguments
        self.uses.add(name)
        if name in ("keep", "fileinto"):
            values: dict[str, Any] = {"copy": "copy" in args, "create": "create" in args}
            if "flags" in args:
                values["flags"] = _flags(_strings(extra["flags"]))
            if name == "fileinto":
                values["mailbox"] = _string(args["mailbox"])
            return Action(name, tuple(values.items()))
        if name in ("discard", "stop"):
            return Action(name)
        if name == "redirect":
            return Action(name, (("address", _string(args["address"])), ("copy", "copy" in args)))
        if name == "reject":
            return Action(name, (("reason", _string(args["text"])),))
        if name in ("setflag", "addflag", "removeflag"):
            if "variable-name" in args:
                raise SieveError(f"{name}: variables are not supported")
            return Action(name, (("flags", _flags(_strings(args["list-of-flags"]))),))
        if name == "vacation":
            return self.vacation(command)
        raise SieveError(f"unsupported command {name!r}")

    def vacation(self, command: Command) -> Action:
        args, extra = command.arguments, command.extra_arguments
        if "mime" in args or "seconds" in args:
            raise SieveError("vacation: :mime and :seconds are not supported")
        days = _number(extra["days"]) if "days" in args else 7
        values: dict[str, Any] = {
            "reason": _string(args["reason"]),
            "days": max(1, min(days, 90)),
            "subject": _string(extra["subject"]) if "subject" in args else None,
            "from": _string(extra["from"]) if "from" in args else None,
            "addresses": tuple(_strings(extra["addresses"])) if "addresses" in args else (),
            "handle": _string(extra["handle"]) if "handle" in args else None,
        }
        return Action("vacation", tuple(values.items()))

    def test(self, command: Command, depth: int) -> Test:
        if depth > MAX_DEPTH:
            raise SieveError(f"tests nested more than {MAX_DEPTH} deep")
        name, args = command.name, command.arguments
        if name in ("true", "false"):
            return Test(name)
        if name == "not":
            return Test(name, tests=(self.test(args["test"], depth + 1),))
        if name in ("allof", "anyof"):
            return Test(name, tests=tuple(self.test(t, depth + 1) for t in args["tests"]))
        if name == "exists":
            return Test(name, names=tuple(_strings(args["header-names"])))
        if name == "size":
            return Test(
                name, over=args["comparator"].lower() == ":over", limit=_number(args["limit"])
            )
        if name in ("header", "address", "envelope"):
            key = "header-names" if name == "header" else "header-list"
            names = tuple(n.lower() for n in _strings(args[key]))
            if name == "envelope" and any(n not in ("from", "to") for n in names):
                raise SieveError('envelope: only "from" and "to" can be tested')
            part = args.get("address-part", ":all").lower()
            return Test(name, names=names, part=part, matcher=_matcher(command))
        if name == "hasflag":
            if "variable-list" in args:
                raise SieveError("hasflag: variables are not supported")
            return Test(name, matcher=_matcher(command, "list-of-flags"))
        raise SieveError(f"unsupported test {name!r}")


def _matcher(command: Command, keys: str = "key-list") -> Matcher:
    kind = command.arguments.get("match-type", ":is").lower()
    if kind not in (":is", ":contains", ":matches"):
        raise SieveError(f"{command.name}: match type {kind} is not supported")
    comparator = "i;ascii-casemap"
    if "comparator" in command.arguments:
        comparator = _string(command.extra_arguments["comparator"])
    fold = comparator == "i;ascii-casemap"
    values = tuple(_fold(v) if fold else v for v in _strings(command.arguments[keys]))
    globs = tuple(Glob.of(v) for v in values) if kind == ":matches" else ()
    return Matcher(kind, fold, values, globs)


def _string(raw: str) -> str:
    """A quoted string (escapes undone) or a ``text:`` multi-line one (dots unstuffed)."""
    if raw.startswith('"'):
        return re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
    lines = raw.split("\n")[1:-1]  # "text:" and its comment; the final "."
    lines = [line.rstrip("\r") for line in lines]
    return "\r\n".join(line[1:] if line.startswith("..") else line for line in lines) + "\r\n"


def _strings(raw: str | list[str]) -> list[str]:
    return [_string(v) for v in raw] if isinstance(raw, list) else [_string(raw)]


def _number(raw: str) -> int:
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1:].upper(), 1)
    return int(raw.rstrip("KMGkmg")) * scale


def _flags(values: Iterable[str]) -> tuple[str, ...]:
    """Space-separated flag lists as flags: system flags in their usual case, keywords that
    are IMAP atoms; others (``\\Recent``, bad keywords) dropped as RFC 5232 3 allows."""
    out: dict[str, str] = {}
    for value in values:
        for flag in value.split():
            if flag.startswith("\\"):
                known = SYSTEM_FLAGS.get(flag.lower())
                if known:
                    out[known.lower()] = known
            elif not any(c in _ATOM_SPECIALS or ord(c) > 126 for c in flag):
                out.setdefault(flag.lower(), flag)
    return tuple(out.values())


def _fold(text: str) -> str:
    """i;ascii-casemap: ASCII letters folded, nothing else."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


# -- running ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageFacts:
    """What tests look at: the header (parsed once, bounded), size and envelope."""

    headers: tuple[tuple[str, str], ...]
    """(lower-case name, unfolded raw value), in order."""
    size: int
    sender: str
    recipient: str
    _decoded: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, message: bytes, sender: str, recipient: str) -> MessageFacts:
        end = message.find(b"\r\n\r\n")
        block = message[: end if 0 <= end < MAX_HEADER_BLOCK else MAX_HEADER_BLOCK]
        text = block.decode("utf-8", "replace").replace("\r\n", "\n")
        headers: list[tuple[str, str]] = []
        for line in text.split("\n"):
            if line[:1] in (" ", "\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        return cls(tuple(headers), len(message), sender, recipient)

    def raw(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def decoded(self, name: str) -> list[str]:
        """Values with RFC 2047 encoded words decoded (RFC 5228 2.7.2)."""
        known = self._decoded.get(name)
        if known is not None:
            return known
        out = self._decoded[name] = []
        for value in self.raw(name):
            try:
                out.append(str(make_header(decode_header(value))) if "=?" in value else value)
            except (ValueError, LookupError):
                out.append(value)
        return out


@dataclass
class Result:
    """What one run decided."""

    folders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Folder → flags to store the message with (INBOX for keep), first first."""
    create: set[str] = field(default_factory=set)
    """Folders of ``fileinto :create``."""
    redirects: list[str] = field(default_factory=list)
    reject: str | None = None
    vacation: Action | None = None
    discarded: bool = False


class _Run:
    def __init__(self, facts: MessageFacts) -> None:
        self.facts = facts
        self.result = Result()
        self.flags: tuple[str, ...] = ()
        self.implicit_keep = True
        self.explicit = False
        """A keep, fileinto or redirect ran (reject may not be combined with them)."""
        self.actions = 0

    def block(self, block: Block) -> bool:
        """Run ``block``; False when ``stop`` ran."""
        for statement in block:
            if isinstance(statement, If):
                for test, body in statement.branches:
                    if test is None or self.test(test):
                        if not self.block(body):
                            return False
                        break
            elif statement.name == "stop":
                return False
            else:
                self.action(statement)
        return True

    def action(self, action: Action) -> None:
        name, result = action.name, self.result
        if name in ("setflag", "addflag", "removeflag"):
            self.flags = _flag_edit(name, self.flags, action.get("flags"))
            return
        self.actions += 1
        if self.actions > MAX_ACTIONS:
            raise SieveRuntimeError(f"more than {MAX_ACTIONS} actions")
        if name == "discard":
            self.implicit_keep = False
            result.discarded = True
            return
        if name == "reject":
            if result.reject is not None:
                raise SieveRuntimeError("reject used twice")
            result.reject = action.get("reason")
            self.implicit_keep = False
        elif name == "vacation":
            if result.vacation is not None:
                raise SieveRuntimeError("vacation used twice")
            result.vacation = action
        elif name == "redirect":
            if len(result.redirects) >= MAX_REDIRECTS:
                raise SieveRuntimeError(f"more than {MAX_REDIRECTS} redirects")
            address = action.get("address")
            if address not in result.redirects:
                result.redirects.append(address)
            self.explicit = True
            if not action.get("copy"):
                self.implicit_keep = False
        else:  # keep, fileinto
            folder = action.get("mailbox", "INBOX") if name == "fileinto" else "INBOX"
            flags = action.get("flags", self.flags)
            result.folders.setdefault(folder, flags)
            if action.get("create"):
                result.create.add(folder)
            self.explicit = True
            if name == "keep" or not action.get("copy"):
                self.implicit_keep = False
        if result.reject is not None and (self.explicit or result.vacation is not None):
            raise SieveRuntimeError("reject cannot be combined with keep, fileinto, redirect "
                                    "or vacation")  # fmt: skip

    def test(self, test: Test) -> bool:
        name, facts = test.name, self.facts
        if name in ("true", "false"):
            return name == "true"
        if name == "not":
            return not self.test(test.tests[0])
        if name == "allof":
            return all(self.test(t) for t in test.tests)
        if name == "anyof":
            return any(self.test(t) for t in test.tests)
        if name == "exists":
            return all(facts.raw(n.lower()) for n in test.names)
        if name == "size":
            return facts.size > test.limit if test.over else facts.size < test.limit
        matcher = test.matcher
        assert matcher is not None
        if name == "hasflag":
            return matcher.any(self.flags)
        if name == "header":
            return matcher.any(v for n in test.names for v in facts.decoded(n))
        if name == "address":
            found = [a for n in test.names for _, a in getaddresses(facts.raw(n)) if a]
        else:  # envelope
            found = [facts.sender if n == "from" else facts.recipient for n in test.names]
        return matcher.any(_part(address, test.part) for address in found)


def _part(address: str, part: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    return {":localpart": local, ":domain": domain}.get(part, address)


def _flag_edit(name: str, current: tuple[str, ...], flags: tuple[str, ...]) -> tuple[str, ...]:
    if name == "setflag":
        return flags
    lower = {f.lower() for f in flags}
    if name == "removeflag":
        return tuple(f for f in current if f.lower() not in lower)
    have = {f.lower() for f in current}
    return current + tuple(f for f in flags if f.lower() not in have)


def run(script: Script, facts: MessageFacts) -> Result:
    """Evaluate ``script``; SieveRuntimeError when the run cannot finish."""
    state = _Run(facts)
    state.block(script.body)
    if state.implicit_keep:
        state.result.folders.setdefault("INBOX", state.flags)
    return state.result
