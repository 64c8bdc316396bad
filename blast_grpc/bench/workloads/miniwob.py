"""Workload 7: the agent on MiniWoB++ and what a step costs in observation and prompt.

Three parts against one engine (real workers and Chromium) and one simulated model
at zero latency that runs the scripted ``miniwob`` policy and the shipped demo-site
scenarios:

1. **MiniWoB++** — every task type of ``blast_grpc.miniwob.TASK_TYPES``, ``episodes``
   each, ``concurrency`` at a time, on the unmodified pages of ``miniwob==1.1.0``:
   per task type the binary success (the page's reward > 0), the mean steps and the
   mean observation size in characters (what the model reads per step, from the
   simulated model's ``/sim/stats``); then observe time p50/p95 over every step
   (``timing_ms.observe`` of the step events). Target: p50 ≤ 15 ms.
2. **A page of 2,000 elements** (generated: buttons, links, inputs, checkboxes,
   selects with text between them), observed five times per task, by a second engine
   whose ``observation_max_elements``/``observation_max_chars`` let the whole page be
   listed. Target: p50 ≤ 60 ms. The same page under the default limits (the walk stops
   at 500 elements, with a note) is shown too.
3. **The demo site** (gorilla lookups and the order form, the shipped scenarios): the
   bytes of each LLM request per step and its *prefix share*, the part of the prompt
   (tools, then messages, canonical JSON) identical to the previous request of the same
   task — what a provider's prompt cache can reuse. Targets: ≤ 10 KB per request
   (mean) and ≥ 70% prefix share (median); the maximum and the minimum are shown too.
"""

from __future__ import annotations

import asyncio
import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from ...demo_site.server import DemoSite
from ...engine import Engine
from ...miniwob.episodes import TASK_TYPES, Episode, by_task, run_episodes
from ...miniwob.fetch import ensure_html
from ...sim.scenarios import SHIPPED_DIR
from ..context import BenchContext, constant
from ..results import Row, WorkloadResult
from ..servers import SCENARIOS_DIR
from ..stats import median, percentile
from ..trace import run_traced

NAME = "miniwob"
MODEL = "bench-miniwob"
OBSERVE_SMALL_MS = 15.0
OBSERVE_LARGE_MS = 60.0
REQUEST_KB = 10.0
PREFIX_SHARE = 0.70
FULL_ELEMENTS = 2500  # observation limits that let the 2,000-element page be read whole
FULL_CHARS = 400_000
QUICK_TYPES = ("click-button", "enter-text", "click-checkboxes", "click-tab-2", "use-autocomplete",
               "login-user-popup")
CONTINENTS = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")


@dataclass
class Params:
    task_types: list[str]
    episodes: int
    concurrency: int
    elements: int
    large_tasks: int
    demo_tasks: int

    @classmethod
    def for_mode(cls, quick: bool) -> Params:
        if quick:
            return cls(list(QUICK_TYPES), episodes=1, concurrency=3, elements=2000, large_tasks=1, demo_tasks=2)
        return cls(list(TASK_TYPES), episodes=3, concurrency=4, elements=2000, large_tasks=4, demo_tasks=8)


def write_large_page(root: Path, n: int) -> str:
    """A page of ``n`` interactive elements with text around them; returns its path under ``root``."""
    parts = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            parts.append(f"<p>Row {i}: <button>Action {i}</button></p>")
        elif kind == 1:
            parts.append(f'<p><a href="#item-{i}">Link {i}</a> goes nowhere.</p>')
        elif kind == 2:
            parts.append(f'<p><label>Field {i} <input name="f{i}" value="v{i}"></label></p>')
        elif kind == 3:
            parts.append(f'<p><label><input type="checkbox" name="c{i}"> Option {i}</label></p>')
        else:
            parts.append(f'<p><select name="s{i}"><option>One {i}</option><option>Two {i}</option></select></p>')
    path = f"observe/elements-{n}.html"
    (root / "observe").mkdir(parents=True, exist_ok=True)
    (root / path).write_text(f"<!DOCTYPE html><html><head><title>{n} elements</title></head><body>"
                             f"<h1>{html.escape(str(n))} elements</h1>{''.join(parts)}</body></html>\n",
                             encoding="utf-8")
    return path


def _observe_ms(detail: str) -> float | None:
    try:
        value = json.loads(detail or "{}").get("timing_ms", {}).get("observe")
    except json.JSONDecodeError:
        return None
    return float(value) if isinstance(value, (int, float)) else None


async def _observe_large(eng: Engine, url: str, tasks: int, sim_url: str) -> tuple[list[float], list[float]]:
    """Observe times of ``tasks`` runs of five looks at ``url``, and the observations' sizes in characters."""
    await _sim_stats(sim_url, reset=True)
    traces = [await run_traced(eng.client, f"Look at the page at {url} five times", initial_url=url)
              for _ in range(tasks)]
    times = [ms for t in traces for _, ev in t.events if ev.HasField("step")
             if (ms := _observe_ms(ev.step.detail)) is not None]
    chars = _prompt_samples(await _sim_stats(sim_url), "bench-observe")["observation_chars"]
    return times, chars


async def _sim_stats(base_url: str, reset: bool = False) -> dict[str, Any]:
    root = base_url.removesuffix("/v1")
    async with httpx.AsyncClient(timeout=30) as http:
        stats = (await http.get(f"{root}/sim/stats")).json()
        if reset:
            (await http.post(f"{root}/sim/reset")).raise_for_status()
    return dict(stats)


def _prompt_samples(stats: dict[str, Any], prefix: str = "") -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {"request_bytes": [], "prefix_share": [], "observation_chars": []}
    for scenario, samples in (stats.get("prompts") or {}).items():
        if scenario.startswith(prefix):
            for key in merged:
                merged[key] += samples.get(key, [])
    return merged


def _task_rows(res: WorkloadResult, episodes: list[Episode], stats: dict[str, Any]) -> None:
    prompts = stats.get("prompts") or {}
    for task, eps in by_task(episodes).items():
        wins = sum(e.success for e in eps)
        chars = prompts.get(f"miniwob/{task}", {}).get("observation_chars", [])
        failed = [e.result or e.error for e in eps if not e.success]
        note = f"observation {sum(chars) / len(chars):.0f} chars; {sum(e.steps for e in eps) / len(eps):.1f} steps" \
            if chars else ""
        if failed:
            note += f"; failed: {failed[0][:120]}"
        res.rows.append(Row(NAME, f"success: {task}", {"episodes": len(eps)}, wins / len(eps), 1.0, "share",
                            better="higher", note=note))
    wins = sum(e.success for e in episodes)
    share = wins / len(episodes) if episodes else None
    res.rows.append(Row(NAME, "MiniWoB++ binary success, all task types", {"episodes": len(episodes),
                                                                             "types": len(by_task(episodes))},
                        share, 1.0, "share", better="higher", target="≥ 95%",
                        met=None if share is None else share >= 0.95))
    steps = [e.steps for e in episodes]
    res.rows.append(Row(NAME, "MiniWoB++ steps per episode, mean", {}, sum(steps) / len(steps) if steps else None,
                        None, "steps"))
    chars = _prompt_samples(stats, "miniwob/")["observation_chars"]
    res.rows.append(Row(NAME, "MiniWoB++ observation size, mean", {"observations": len(chars)},
                        sum(chars) / len(chars) if chars else None, None, "chars"))


def _observe_rows(res: WorkloadResult, label: str, params: dict[str, Any], samples: list[float],
                  target_ms: float | None) -> None:
    p50 = median(samples) if samples else None
    res.rows.append(Row(NAME, f"observe, {label}, p50", {**params, "steps": len(samples)}, p50, None, "ms",
                        target=None if target_ms is None else f"≤ {target_ms:g} ms",
                        met=None if p50 is None or target_ms is None else p50 <= target_ms))
    res.rows.append(Row(NAME, f"observe, {label}, p95", {**params, "steps": len(samples)},
                        percentile(samples, 95) if samples else None, None, "ms"))


def _prompt_rows(res: WorkloadResult, samples: dict[str, list[float]], tasks: int) -> None:
    sizes = [b / 1000 for b in samples["request_bytes"]]
    shares = samples["prefix_share"]
    mean_kb = sum(sizes) / len(sizes) if sizes else None
    params = {"tasks": tasks, "requests": len(sizes)}
    res.rows.append(Row(NAME, "LLM request per step (demo site), mean", params, mean_kb, None, "KB",
                        target=f"≤ {REQUEST_KB:g} KB", met=None if mean_kb is None else mean_kb <= REQUEST_KB))
    res.rows.append(Row(NAME, "LLM request per step (demo site), max", params, max(sizes) if sizes else None, None,
                        "KB"))
    mid = median(shares) if shares else None
    res.rows.append(Row(NAME, "prefix share of the previous step's request (demo site), median",
                        {**params, "pairs": len(shares)}, mid, None, "share", better="higher",
                        target=f"≥ {PREFIX_SHARE:.0%}", met=None if mid is None else mid >= PREFIX_SHARE))
    res.rows.append(Row(NAME, "prefix share of the previous step's request (demo site), min",
                        {**params, "pairs": len(shares)}, min(shares) if shares else None, None, "share",
                        better="higher"))


async def run(ctx: BenchContext) -> WorkloadResult:
    p = Params.for_mode(ctx.quick)
    res = WorkloadResult(NAME)
    res.series["params"] = asdict(p)
    large = write_large_page(ctx.pages.root, p.elements)
    latency = {MODEL: constant(0), "bench-mini": constant(0)}
    with ctx.sim(NAME, latency, scenario_dirs=[SCENARIOS_DIR, SHIPPED_DIR], policies=["miniwob"]) as sim, \
            DemoSite(pages_dir=ensure_html()) as miniwob_site, DemoSite() as demo_site:
        async with ctx.engine(sim, model=MODEL, max_steps=25) as eng:
            # 1. MiniWoB++ episodes
            episodes = await run_episodes(eng.client, miniwob_site.url, p.task_types, p.episodes, p.concurrency)
            stats = await _sim_stats(sim.base_url, reset=True)
            _task_rows(res, episodes, stats)
            small = [ms for e in episodes for ms in e.observe_ms]
            _observe_rows(res, "MiniWoB++ pages", {"types": len(p.task_types)}, small, OBSERVE_SMALL_MS)
            # 2. the page of 2,000 elements, read as far as the default limits go
            big_default, _ = await _observe_large(eng, ctx.url(large), p.large_tasks, sim.base_url)
            await _sim_stats(sim.base_url, reset=True)
            # 3. prompt size and prefix share on the demo site (distinct tasks: one conversation each)
            tasks = [f"On {demo_site.url}index.html find the largest gorilla in {CONTINENTS[i % len(CONTINENTS)]}"
                     for i in range(min(p.demo_tasks, len(CONTINENTS)))]
            tasks += [f'Place an order for item "teapot" in size {size} at {demo_site.url}form.html and report the '
                      "confirmation code" for size in ("small", "large")[:max(0, p.demo_tasks - len(tasks))]]
            done = await asyncio.gather(*(eng.client.run(t) for t in tasks))
            demo = _prompt_samples(await _sim_stats(sim.base_url))
            _prompt_rows(res, demo, len(tasks))
        # 2b. the same page read whole: an engine whose limits list all 2,000 elements and their text
        async with ctx.engine(sim, model=MODEL, observation_max_elements=FULL_ELEMENTS,
                              observation_max_chars=FULL_CHARS) as whole:
            big, chars = await _observe_large(whole, ctx.url(large), p.large_tasks, sim.base_url)
    _observe_rows(res, f"page of {p.elements} elements, all listed", {"tasks": p.large_tasks}, big,
                  OBSERVE_LARGE_MS)
    res.rows.append(Row(NAME, f"observation size, page of {p.elements} elements, all listed",
                        {"observations": len(chars)}, sum(chars) / len(chars) if chars else None, None, "chars"))
    _observe_rows(res, f"page of {p.elements} elements, default limits (first 500 listed)",
                  {"tasks": p.large_tasks}, big_default, None)
    failed = [t for t, d in zip(tasks, done, strict=True) if not d.success]
    if failed:
        res.notes.append(f"{len(failed)} demo-site tasks did not succeed: {failed[0]}")
    res.series.update({"episodes": [asdict(e) for e in episodes], "observe_ms_small": small, "observe_ms_large": big,
                       "observe_ms_large_default_limits": big_default, "demo_prompts": demo})
    return res
