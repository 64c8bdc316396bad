"""The cost limits' token buckets (``coordinator/budget.py``) on a clock the test moves."""

from __future__ import annotations

import pytest

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.config import config_from_dict
from blast_grpc.coordinator import budget as budget_mod
from blast_grpc.coordinator.budget import Budget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(budget_mod.time, "monotonic", c)
    return c


def _budget(**constraints: float) -> Budget:
    prices = {"m": {"input_per_1m": 1.0, "output_per_1m": 4.0}}
    return Budget(config_from_dict({"constraints": constraints, "settings": {"model_prices": prices}}))


def test_prices_come_from_settings_and_an_unpriced_model_is_free() -> None:
    b = _budget()
    assert b.price(pb.Usage(model="m", prompt_tokens=500_000, completion_tokens=250_000)) == pytest.approx(1.5)
    assert b.price(pb.Usage(model="openai:m", prompt_tokens=1_000_000)) == pytest.approx(1.0)  # BLAST's prefix
    assert b.price(pb.Usage(model="unknown", prompt_tokens=10**9)) == 0.0


def test_no_limit_never_waits(clock: Clock) -> None:
    b = _budget()
    b.charge(1e6)
    assert b.wait() == (0.0, "") and b.spent == 1e6


def test_an_overdraft_waits_until_it_is_paid_back_at_the_limits_rate(clock: Clock) -> None:
    b = _budget(max_cost_per_minute=1.0)
    b.charge(0.5)
    assert b.wait()[0] == 0.0  # half the bucket is left
    b.charge(1.0)  # 0.5 overdrawn; refills at 1/60 per second
    wait_s, limit = b.wait()
    assert limit == "constraints.max_cost_per_minute" and wait_s == pytest.approx(30.0, abs=0.02)
    clock.now += 15
    assert b.wait()[0] == pytest.approx(15.0, abs=0.02)
    clock.now += 15.1
    assert b.wait()[0] == 0.0


def test_the_limit_that_holds_longest_is_named(clock: Clock) -> None:
    b = _budget(max_cost_per_minute=1.0, max_cost_per_hour=2.0)
    b.charge(3.0)  # minute: 2 over at 1/60 per s = 120 s; hour: 1 over at 2/3600 per s = 1800 s
    wait_s, limit = b.wait()
    assert limit == "constraints.max_cost_per_hour" and wait_s == pytest.approx(1800.0, abs=0.1)


def test_a_full_bucket_does_not_grow_past_its_limit(clock: Clock) -> None:
    b = _budget(max_cost_per_minute=1.0)
    clock.now += 3600  # an idle hour saves nothing beyond one limit
    b.charge(1.2)
    assert b.wait()[0] == pytest.approx(12.0, abs=0.02)
