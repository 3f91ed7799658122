"""Parsing many message files at once, when an index is built: helper processes share it.

Building the index of a large folder (first use of an existing Dovecot Maildir, or an index
that was lost) means parsing every message, which is CPU work that holds the interpreter
lock: done in this process, even in a thread, it would slow every session down.  Helper
processes (a clean ``python -c`` interpreter each, importing only the message parser: no
fork of a threaded server) take it all, one share per core; a helper reads its file list
from stdin and writes back each message's size, mtime, serialised ``MessageInfo`` and
search row (``marshal``: plain tuples, nothing that runs code).  Small batches, or helpers
that fail, mean parsing here.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

from twisted.logger import Logger

from mailserv.backends.maildir import textrow
from mailserv.backends.maildir.textrow import TextRow

_log = Logger()

BULK_MIN = 400
"""Fewer files than this are parsed in this process (starting a helper costs ~0.2 s)."""
MAX_HELPERS = 3
HELPER_TIMEOUT = 600.0

Parsed = tuple[str, str, int, float, bytes, TextRow]
"""(base, relative path, size with CRLF, mtime, serialised MessageInfo, search row)."""


def helpers_for(count: int) -> int:
    """How many helper processes are worth starting for ``count`` files."""
    if count < BULK_MIN:
        return 0
    return max(1, min(MAX_HELPERS, os.cpu_count() or 1))


_HELPER = """
import importlib.util, marshal, os, re, sys
from mailserv.message.parse import parse_message
from mailserv.message.store import dumps

# textrow by its path: importing the maildir package would import the whole server.
spec = importlib.util.spec_from_file_location("textrow", sys.argv[2])
textrow = importlib.util.module_from_spec(spec)
spec.loader.exec_module(textrow)

bare_lf = re.compile(rb"(?<!\\r)\\n")
out = []
for base, rel in marshal.loads(sys.stdin.buffer.read()):
    try:
        with open(os.path.join(sys.argv[1], rel), "rb") as f:
            data = f.read()
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        continue
    if data.count(b"\\n") != data.count(b"\\r\\n"):
        data = bare_lf.sub(b"\\r\\n", data)
    info = parse_message(data)
    out.append((base, rel, len(data), mtime, dumps(info), textrow.text_row(data, info)))
sys.stdout.buffer.write(marshal.dumps(out))
"""
"""A helper's program: as ``parse_here`` in ``disk``, minus what only the server needs."""


def parse_shared(
    directory: str,
    files: Sequence[tuple[str, str]],
    here: Callable[[Sequence[tuple[str, str]]], None],
) -> list[Parsed]:
    """Parse ``files`` with helpers and return their results; ``here`` is given what this
    process must parse itself (too few files for helpers, or a helper's share when it
    failed) and does its own thing with it."""
    helpers = helpers_for(len(files))
    if not helpers:
        here(files)
        return []
    shares = [list(files[start::helpers]) for start in range(helpers)]
    started = [(_start(directory, share), share) for share in shares]
    results: list[Parsed] = []
    for proc, share in started:
        found = _finish(proc)
        if found is None:
            here(share)
        else:
            results += found
    return results


def _start(directory: str, share: list[tuple[str, str]]) -> subprocess.Popen[bytes] | None:
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HELPER, directory, textrow.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(marshal.dumps(share))
        proc.stdin.close()
    except OSError as exc:
        _log.warn("Cannot start a parse helper ({error}); parsing here", error=exc)
        return None
    return proc


def _finish(proc: subprocess.Popen[bytes] | None) -> list[Parsed] | None:
    if proc is None:
        return None
    assert proc.stdout is not None
    try:
        output = proc.stdout.read()
        proc.stdout.close()
        if proc.wait(HELPER_TIMEOUT) != 0:
            raise RuntimeError(f"exit status {proc.returncode}")
        found: list[Parsed] = marshal.loads(output)
        return found
    except (OSError, subprocess.TimeoutExpired, RuntimeError, ValueError, EOFError) as exc:
        proc.kill()
        proc.wait()
        _log.warn("Parse helper failed ({error}); parsing here", error=exc)
        return None
