"""MiniWoB++ through the engine: real worker, real Chromium, real gRPC, the scripted ``miniwob`` policy.

Every task type of ``TASK_TYPES`` runs ``EPISODES`` episodes, ``CONCURRENCY`` at a
time, once per session (the ``episodes`` fixture); the tests then judge them: at
least 95% binary success over all episodes (reward shown by the page > 0) and no
task type below 4 of 5. The per-type table is printed (``pytest -s`` shows it) and
is part of every failure message, with each failed episode's result.

An episode has 10-20 s on the page's own clock from the START click, and the
reward is time-discounted; the policy acts at zero model latency with few steps,
so only a broken observation or action fails an episode, not a slow machine.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from blast_grpc import Client
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.miniwob.episodes import TASK_TYPES, Episode, by_task, run_episodes, success_table

# Whichever test first asks for ``episodes`` runs them all (about 75 s; more on a loaded machine).
pytestmark = [pytest.mark.asyncio, pytest.mark.browser, pytest.mark.timeout(600)]

EPISODES = 5
CONCURRENCY = 4
MIN_OVERALL = 0.95
MIN_PER_TYPE = 4


@pytest_asyncio.fixture(scope="session")
async def episodes(client: Client, miniwob_site: DemoSite) -> list[Episode]:
    return await run_episodes(client, miniwob_site.url, TASK_TYPES, EPISODES, CONCURRENCY)


def _report(episodes: list[Episode]) -> str:
    failed = "\n".join(e.describe() for e in episodes if not e.success)
    return f"\n{success_table(episodes)}\nfailed episodes:\n{failed or '(none)'}"


async def test_overall_success_rate(episodes: list[Episode]) -> None:
    print(_report(episodes))
    assert len(episodes) == EPISODES * len(TASK_TYPES)
    wins = sum(e.success for e in episodes)
    assert wins >= MIN_OVERALL * len(episodes), _report(episodes)


@pytest.mark.parametrize("task", TASK_TYPES)
async def test_every_task_type_mostly_succeeds(episodes: list[Episode], task: str) -> None:
    runs = by_task(episodes)[task]
    assert sum(e.success for e in runs) >= MIN_PER_TYPE, _report(runs)
    # The reward the policy reports is the page's own: a success has a reward in (0, 1].
    assert all(0 < e.reward <= 1 for e in runs if e.success and e.reward is not None)
