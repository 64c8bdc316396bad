"""``FairSlots``: the worker's chunk-call limit, shared fairly between the extractions running.

One worker has ``max_parallel_chunk_calls`` slots for all its tasks. A plain semaphore
would serve waiters first come, first served: a 50-chunk page queues 50 calls, and a
second task's 3 chunks wait behind all of them. Here every extraction (an *owner*) waits
in its own queue; a freed slot goes to the waiting owner with the fewest calls in flight
(ties: the one that has waited longest), so a small page is served as soon as a slot is
free, and a huge page still uses every slot nobody else wants.

Only the event loop touches it (no locks). A waiter cancelled after it was handed a slot
passes the slot on, so cancellation never leaks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import AsyncIterator, Hashable


class FairSlots:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.in_use = 0
        self._busy: dict[Hashable, int] = {}  # calls in flight per owner
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._since: dict[Hashable, int] = {}  # order in which owners started waiting (ties)
        self._order = itertools.count()

    def busy(self, owner: Hashable) -> int:
        return self._busy.get(owner, 0)

    @contextlib.asynccontextmanager
    async def slot(self, owner: Hashable) -> AsyncIterator[None]:
        """Hold one slot for ``owner`` for the body of the ``async with``."""
        await self._acquire(owner)
        try:
            yield
        finally:
            self._release(owner)

    async def _acquire(self, owner: Hashable) -> None:
        if self.in_use < self.limit and not self._waiting:
            self._take(owner)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(owner, deque())
        self._since.setdefault(owner, next(self._order))
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot just as we were cancelled
                self._release(owner)
            else:
                self._forget(owner, fut)
            raise

    def _take(self, owner: Hashable) -> None:
        self.in_use += 1
        self._busy[owner] = self._busy.get(owner, 0) + 1

    def _forget(self, owner: Hashable, fut: asyncio.Future[None]) -> None:
        queue = self._waiting.get(owner)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(fut)
            if not queue:
                del self._waiting[owner]
                self._since.pop(owner, None)

    def _release(self, owner: Hashable) -> None:
        self.in_use -= 1
        left = self._busy[owner] - 1
        if left:
            self._busy[owner] = left
        else:
            del self._busy[owner]
        while self._waiting and self.in_use < self.limit:
            nxt = min(self._waiting, key=lambda o: (self._busy.get(o, 0), self._since[o]))
            fut = self._waiting[nxt].popleft()
            if not self._waiting[nxt]:
                del self._waiting[nxt]
                self._since.pop(nxt, None)
            if not fut.done():
                self._take(nxt)
                fut.set_result(None)
