"""The numbers of a big SEARCH: UIDs to sequence numbers over the view's runs of UIDs
(``SelectedView.seqs_of`` / ``shown``), and ESEARCH's ALL from an ascending result, give
what the plain one-by-one ways give, on views with few gaps and with many."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mailserv.backends.memory import factory as memory
from mailserv.imap import esearch
from mailserv.imap.counting import LIMIT, PIECE, CountingText
from mailserv.imap.view import SelectedView
from mailserv.slicing import TimeSlices, Turns
from mailserv.testing import resolve

pytestmark = pytest.mark.one_backend  # no server: the engine's own arithmetic


def _numbered(view: Sequence[int], uids: Sequence[int]) -> list[int]:
    out = []
    for uid in uids:
        i = bisect_left(view, uid)
        if i < len(view) and view[i] == uid:
            out.append(i + 1)
    return out


def _plain_set(numbers: Sequence[int]) -> bytes:
    parts, start = [], 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            a, b = numbers[start], numbers[i - 1]
            parts.append(b"%d" % a if a == b else b"%d:%d" % (a, b))
            start = i
    return b",".join(parts)


class CountedSlices(TimeSlices):
    """Counts its pauses."""

    pauses = 0

    async def pause(self) -> None:
        self.pauses += 1
        await super().pause()


def test_sequence_numbers_over_runs_of_uids() -> None:
    rng = random.Random(11)
    box = resolve(resolve(memory.build({}, ".", Clock()).account("alice")).open("INBOX"))
    clock = Clock()
    services = SimpleNamespace(clock=clock, turns=Turns(clock))
    session = SimpleNamespace(enabled=set(), idling=False, services=services)
    view = SelectedView(session, box, False, [], [])  # type: ignore[arg-type]
    for _ in range(400):
        size = rng.choice([0, 1, 5, 60, 3000])
        kept = rng.choice([0.3, 0.97, 0.999, 1.0])  # a UID of the range stays in the view
        mine = [u for u in range(1, size * 2) if rng.random() < kept][:size]
        wanted = rng.choice([0.05, 0.5, 1.0])
        found = sorted(u for u in range(size * 2 + 3) if rng.random() < wanted)
        view.load(mine, [], 0)
        numbers = view.seqs_of(found)
        assert numbers == _numbered(mine, found)
        assert view.shown(found) == [mine[n - 1] for n in numbers]
    view.close()


def test_all_of_an_ascending_result() -> None:
    rng = random.Random(12)
    slices = TimeSlices(Clock(), length=3600.0)  # never used up: no reactor here
    for _ in range(300):
        density = rng.choice([0.1, 0.6, 0.95, 1.0])
        numbers = [n for n in range(1, rng.randrange(2, 2000)) if rng.random() < density] or [7]
        assert resolve(esearch.ordered_set(slices, numbers, ascending=True)) == _plain_set(numbers)
        assert resolve(esearch.ordered_set(slices, numbers)) == _plain_set(numbers)
        listed = resolve(esearch.number_list(slices, numbers))
        assert listed == " ".join(map(str, numbers)).encode()


def test_a_long_number_list_is_made_in_pieces_with_pauses() -> None:
    """Several pieces of ``STEP`` numbers (the last one short), big numbers and gaps: the
    same bytes as the plain join, with a pause after each piece."""
    rng = random.Random(13)
    numbers = sorted(rng.sample(range(1, 2**32), 3 * esearch.STEP + 17))
    clock = Clock()
    slices = CountedSlices(clock, length=0)
    done = Deferred.fromCoroutine(esearch.number_list(slices, numbers))
    while not done.called:
        clock.advance(0)
    assert slices.pauses == 4
    assert done.result == " ".join(map(str, numbers)).encode()
    assert resolve(esearch.number_list(TimeSlices(clock, length=3600.0), [5])) == b"5"


def test_runs_cut_from_the_counting_text() -> None:
    """A SEARCH answer's runs of consecutive numbers are cut from ``1 2 3 ...``: the same
    bytes as the plain join for whole runs (the text growing as they get longer), runs
    across the powers of ten, pieces with gaps, and numbers above the text's limit."""
    rng = random.Random(14)
    slices = TimeSlices(Clock(), length=3600.0)
    counting = CountingText()
    cases: list[list[int]] = [[1], [9, 10, 11], [99, 100], list(range(1, 20001))]
    cases += [list(range(a, b)) for a, b in ((995, 1006), (99990, 100010), (3, 70000))]
    cases.append([n for n in range(1, 3 * esearch.STEP) if n % 1000])  # runs with gaps
    cases.append([LIMIT - 2, LIMIT - 1, LIMIT, LIMIT + 1])
    for _ in range(100):
        first = rng.randrange(1, 300000)
        cases.append(list(range(first, first + rng.randrange(1, 9000))))
    for numbers in cases:
        listed = resolve(esearch.number_list(slices, numbers, counting))
        assert listed == " ".join(map(str, numbers)).encode(), numbers[:3]
    assert resolve(counting.run(slices, 0, 5)) is None


def test_the_counting_text_grows_a_piece_at_a_time() -> None:
    clock = Clock()
    slices = CountedSlices(clock, length=0)
    wanted = 5 * PIECE
    done = Deferred.fromCoroutine(CountingText().run(slices, 1, wanted))
    while not done.called:
        clock.advance(0)
    assert slices.pauses == 5
    assert done.result == " ".join(map(str, range(1, wanted + 1))).encode()
