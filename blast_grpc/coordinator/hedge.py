"""When a first-of-N race starts its copies: all at once (``race``) or only when it is slow (``hedged``).

::

    race:    copy 1, copy 2, ..., copy N submitted together
    hedged:  copy 1 ── still running after q-quantile of recent latencies? ──▶ copies 2..N
                   └── fails first? ──▶ copies 2..N at once (a failed copy never wins)

``settings.first_of_n_mode`` picks the mode. A hedged race costs one copy's model calls
unless its first copy is slower than ``settings.hedge_quantile`` of the latencies this
engine saw recently (the last ``WINDOW`` copies that succeeded, measured from a copy's
creation to its answer), so most of the tail gain of N copies comes at a fraction of
their calls (issue 13). Until ``settings.hedge_min_samples`` latencies are known the
quantile means nothing: a hedged race then runs its first copy alone (its latency is a
sample of one copy's, which a race's winner, the fastest of N, is not).

The ``Hedger`` is the one owner of the timers of the hedged races it holds back; a timer
is a loop callback (no task), cancelled when its race ends. Starting a copy (creating
its record and submitting it) is the ``Launcher``'s, handed in as ``start_copy``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from .._proto.blast.v1 import blast_pb2 as pb
from ..config import Config
from .tasks import TaskRecord

WINDOW = 200  # recent successful copies whose latencies the quantile is taken over


def _seconds(start: Timestamp | None, end: Timestamp | None) -> float | None:
    if start is None or end is None:
        return None
    return (end.ToNanoseconds() - start.ToNanoseconds()) / 1e9


class Hedger:
    def __init__(self, config: Config) -> None:
        s = config.settings
        self.hedged = s.first_of_n_mode == "hedged"
        self.quantile = s.hedge_quantile
        self.min_samples = s.hedge_min_samples
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        # Races whose copies 2..N are held back: the timer (None while learning) and what starts them.
        self._held: dict[str, tuple[asyncio.TimerHandle | None, Callable[[], None]]] = {}

    def delay(self) -> float | None:
        """How long a hedged race's first copy runs alone (None: too few samples to tell)."""
        if len(self.latencies) < self.min_samples:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(int(self.quantile * len(ordered)), len(ordered) - 1)]

    def start(self, race: TaskRecord, start_copy: Callable[[int], None]) -> None:
        """Start ``race``'s copies (1..race.copies) now, or copy 1 now and the rest when it is slow."""
        if not self.hedged:
            for k in range(1, race.copies + 1):
                start_copy(k)
            return

        def rest() -> None:
            held = self._held.pop(race.task_id, None)
            if held is None or race.done:
                return
            if held[0] is not None:
                held[0].cancel()
            for k in range(2, race.copies + 1):
                start_copy(k)

        wait = self.delay()
        timer = asyncio.get_running_loop().call_later(wait, rest) if wait is not None else None
        self._held[race.task_id] = (timer, rest)
        start_copy(1)

    def copy_done(self, copy: TaskRecord) -> None:
        """A copy ended (``TaskStore.copy_ended``: called before the race judges it): learn its latency; a failed first
        copy of a held-back race starts the others now, so the race is not lost for want of them."""
        if copy.state == pb.TASK_STATE_COMPLETED and copy.success:
            took = _seconds(copy.created_at, copy.finished_at)
            if took is not None:
                self.latencies.append(took)
            return
        race = copy.parent
        held = self._held.get(race.task_id) if race is not None else None
        if held is not None and copy.state != pb.TASK_STATE_CANCELLED:
            held[1]()

    def race_done(self, race: TaskRecord) -> None:
        """A task ended (an ``on_finished`` observer): if it is a held-back race, drop its timer."""
        held = self._held.pop(race.task_id, None)
        if held is not None and held[0] is not None:
            held[0].cancel()

    def close(self) -> None:
        for timer, _ in self._held.values():
            if timer is not None:
                timer.cancel()
        self._held.clear()
