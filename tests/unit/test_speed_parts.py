"""Issue 13's pure parts: the plan's announcement, the spread of prepared contexts, the hedge delay."""

from __future__ import annotations

from blast_grpc.agent.subtasks import announced_subtasks
from blast_grpc.config import load_config
from blast_grpc.coordinator.hedge import Hedger
from blast_grpc.coordinator.prewarm import spread


def test_announcements_and_their_spread_over_workers() -> None:
    assert announced_subtasks("1. Open it.\nSUBTASKS: 8") == 8
    assert announced_subtasks("SUBTASKS: 2\n1. then\n SUBTASKS: 5 ") == 5  # the last line that says so
    assert announced_subtasks("Launch subtasks for every item.") == 0
    assert announced_subtasks("SUBTASKS: 100000") == 64
    # Least loaded first, as the scheduler places new tasks; ties go to the first worker.
    assert spread({"w1": 1, "w2": 0}, 8) == {"w1": 4, "w2": 4}
    assert spread({"w1": 3, "w2": 0}, 2) == {"w1": 0, "w2": 2}
    assert spread({}, 3) == {}


def test_the_hedge_delay_is_a_quantile_of_recent_latencies_once_there_are_enough() -> None:
    config = load_config(overrides={"settings": {"first_of_n_mode": "hedged", "hedge_quantile": 0.8,
                                                 "hedge_min_samples": 5}})
    h = Hedger(config)
    h.latencies.extend([1.0, 2.0, 3.0, 4.0])
    assert h.delay() is None  # too few: race every copy
    h.latencies.extend([5.0] + [0.5] * 5)
    assert h.delay() == 4.0  # 10 samples: index 8 of the sorted ones
