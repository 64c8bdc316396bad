"""``FairSlots``: the worker's chunk-call limit, shared fairly between extractions (pure asyncio)."""

from __future__ import annotations

import asyncio

import pytest

from blast_grpc.extraction.slots import FairSlots

pytestmark = pytest.mark.asyncio


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Calls:
    """Chunk calls that hold their slot until released by the test."""

    def __init__(self, slots: FairSlots) -> None:
        self.slots = slots
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def call(self, owner: str, name: str) -> None:
        self.gates[name] = asyncio.Event()
        async with self.slots.slot(owner):
            self.started.append(name)
            await self.gates[name].wait()


async def test_a_small_page_is_served_before_the_rest_of_a_huge_one() -> None:
    slots = FairSlots(2)
    calls = Calls(slots)
    async with asyncio.TaskGroup() as group:
        for i in range(6):
            group.create_task(calls.call("huge", f"h{i}"))
        await _settle()
        for i in range(2):
            group.create_task(calls.call("small", f"s{i}"))
        await _settle()
        assert calls.started == ["h0", "h1"] and slots.in_use == 2
        calls.gates["h0"].set()
        await _settle()
        assert calls.started[-1] == "s0"  # not h2: the small page has no call in flight
        calls.gates["h1"].set()
        await _settle()
        assert calls.started[-1] == "h2"  # one each now; the huge page waited longest
        for name in ["s0", "h2"]:
            calls.gates[name].set()
            await _settle()
        assert calls.started[:6] == ["h0", "h1", "s0", "h2", "s1", "h3"]
        for gate in calls.gates.values():
            gate.set()
        while len(calls.started) < 8:
            await _settle()
            for gate in calls.gates.values():
                gate.set()
    assert slots.in_use == 0 and slots.busy("huge") == 0


async def test_cancelled_waiters_and_holders_give_their_slots_back() -> None:
    slots = FairSlots(1)
    calls = Calls(slots)
    holder = asyncio.create_task(calls.call("a", "a0"))
    await _settle()
    waiters = [asyncio.create_task(calls.call("b", f"b{i}")) for i in range(3)]
    await _settle()
    waiters[0].cancel()  # cancelled while waiting
    await _settle()
    calls.gates["a0"].set()
    waiters[1].cancel()  # cancelled in the same turn as it is handed the slot (or just before)
    await asyncio.gather(holder, *waiters[:2], return_exceptions=True)
    await _settle()
    assert calls.started[-1] == "b2" and slots.in_use == 1
    calls.gates["b2"].set()
    await waiters[2]
    assert slots.in_use == 0
    with pytest.raises(ValueError):
        FairSlots(0)
