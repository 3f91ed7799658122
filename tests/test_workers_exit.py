"""A ``--workers`` child ends once its reactor has stopped, even when a thread outlives it
(an idle pool worker would keep the interpreter waiting at exit forever)."""

from __future__ import annotations

import subprocess
import sys
import time

CHILD = """
import threading
from twisted.logger import globalLogBeginner, textFileLogObserver
import sys
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
from mailserv.workers.child import leave_lingering_threads
threading.Thread(target=threading.Event().wait, name="stuck-pool-worker").start()
leave_lingering_threads(grace=0.2)
print("not reached: the child waited for the thread", flush=True)
"""


def test_a_child_leaves_a_thread_that_outlives_its_reactor() -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "not reached" not in done.stdout
    assert "stuck-pool-worker" in done.stderr
    assert "Threads still running after the reactor stopped" in done.stderr
    assert time.monotonic() - start < 30


def test_a_child_without_lingering_threads_goes_on() -> None:
    code = (
        "from mailserv.workers.child import leave_lingering_threads\n"
        "leave_lingering_threads(grace=0.2)\nprint('went on')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout == "went on\n", done.stderr
