"""The web dashboard in a real browser: Playwright drives the engine's Chromium against a real engine.

One engine for the module, started with the dashboard on (``web_port: 0``), step
thumbnails on, an API key, first-of-N allowed and people in the loop (``ask_human``); the coordinator starts the dashboard
process itself. Every test logs in through the form, works the page like a person and
checks the engine's own record over gRPC. Screenshots of the pages go to
``test-output/dashboard/`` in the repository (git-ignored) for a reviewer.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import grpc
import httpx
import psutil
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import Browser, Page, expect

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import ROOT, Sim, engine_overrides
from .conftest import apoll

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

KEY = "sk-dashboard-test-0123456789"
SHOTS = ROOT / "test-output" / "dashboard"
LONG_MS = 90_000  # generous: what the page shows, not how fast


@dataclass
class Dash:
    url: str
    api: Client


@pytest_asyncio.fixture(scope="module")
async def dash(sim: Sim) -> AsyncIterator[Dash]:
    constraints = {"allow_parallelism": {"task": True, "data": True, "first_of_n": True}, "first_of_n_num_copies": 3,
                   "require_human_in_loop": True}
    overrides = engine_overrides(sim, constraints, dashboard=True, web_port=0, dashboard_screenshots=True,
                                 api_keys=[KEY], max_steps=40)
    async with Engine.create(overrides=overrides) as eng:
        assert eng.dashboard_url, "the coordinator did not report its dashboard"
        async with Client(eng.address, api_key=KEY) as api:
            yield Dash(eng.dashboard_url, api)


@pytest_asyncio.fixture
async def page(chromium: Browser, dash: Dash) -> AsyncIterator[Page]:
    """A fresh browser context, logged in through the form."""
    ctx = await chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        p = await ctx.new_page()
        await p.goto(dash.url + "/")
        await p.fill("input[name=key]", KEY)
        await p.click("form[action='/login'] button")
        await p.wait_for_url(dash.url + "/")
        yield p
    finally:
        await ctx.close()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def submit(page: Page, dash: Dash, description: str, copies: int = 1) -> str:
    """Submit through the page's form; returns the new task's id (the page opens its tree).

    One copy unless told: first-of-N is on in this engine, so its default races three."""
    await page.goto(dash.url + "/")
    await page.fill("textarea[name=description]", description)
    await page.fill("input[name=num_copies]", str(copies))
    await page.click("#submit-form button[type=submit]")
    await page.wait_for_url(re.compile(r"/tasks/[^/]+$"))
    return page.url.rsplit("/", 1)[1]


async def test_the_dashboard_needs_a_key_and_the_login_sets_an_httponly_session(dash: Dash,
                                                                                chromium: Browser) -> None:
    async with httpx.AsyncClient(base_url=dash.url) as h:
        assert (await h.get("/fragments/tasks")).status_code == 401
        r = await h.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
        bearer = {"authorization": f"Bearer {KEY}"}
        assert (await h.get("/fragments/tasks", headers=bearer)).status_code == 200
        assert (await h.get("/healthz")).status_code == 200
        forged = await h.post("/tasks", data={"description": "x"}, headers={**bearer, "origin": "http://evil.test"})
        assert forged.status_code == 403
    ctx = await chromium.new_context()
    try:
        p = await ctx.new_page()
        await p.goto(dash.url + "/tasks/task_nope")
        assert "/login" in p.url
        await p.fill("input[name=key]", "sk-wrong")
        await p.click("form[action='/login'] button")
        await expect(p.locator(".error")).to_contain_text("not one of the API keys")
        assert not [c for c in await ctx.cookies() if c["name"] == "blast_dashboard"]
        await p.fill("input[name=key]", KEY)
        await p.click("form[action='/login'] button")
        await p.wait_for_url(dash.url + "/tasks/task_nope")  # back where the login began
        await expect(p.locator(".error")).to_contain_text("task_nope")  # an unknown task: the engine's 404
        cookie = next(c for c in await ctx.cookies() if c["name"] == "blast_dashboard")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]
        await p.click("form.logout button")
        await p.goto(dash.url + "/")
        assert "/login" in p.url
    finally:
        await ctx.close()


async def test_a_submitted_task_shows_its_steps_live_with_thumbnails(page: Page, dash: Dash, site: DemoSite) -> None:
    root = await submit(page, dash, f"Slowly tour Europe from {site.url}index.html")
    steps = page.locator(f"#steps-{root} > li.step")
    await expect(steps.first).to_be_visible(timeout=LONG_MS)
    first_seen = await steps.count()
    # Seen while the task ran: this page got the rest of the steps from the stream, without a reload.
    await expect(page.locator(f"#state-{root}")).to_have_text("completed", timeout=LONG_MS)
    task = await dash.api.get_task(root)
    assert task.state == pb.TASK_STATE_COMPLETED
    await expect(steps).to_have_count(task.steps)
    assert first_seen < task.steps
    await expect(page.locator(f"#result-{root}")).to_contain_text(GORILLAS["Europe"].name)
    # Every step has its thought, action and URL, and a real JPEG thumbnail the browser decoded.
    last = steps.last
    await expect(last.locator(".action")).to_contain_text("done")
    await expect(steps.nth(1).locator(".url")).to_contain_text(site.url)
    widths = await page.eval_on_selector_all(f"#steps-{root} img.thumb", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == task.steps and all(w == 320 for w in widths), widths
    await shot(page, "task-steps")


async def test_the_tree_shows_subtasks_and_opens_one(page: Page, dash: Dash, site: DemoSite) -> None:
    root = await submit(page, dash, f"On {site.url}index.html find the largest gorilla in each continent")
    children = page.locator(f"#children-{root} > .node")
    await expect(children).to_have_count(len(GORILLAS), timeout=LONG_MS)
    await expect(page.locator(f"#state-{root}")).to_have_text("completed", timeout=LONG_MS)
    for g in GORILLAS.values():
        await expect(page.locator(f"#result-{root}")).to_contain_text(g.name)
    task = await dash.api.get_task(root)
    ids = [await children.nth(i).get_attribute("data-task") for i in range(len(GORILLAS))]
    assert ids == list(task.subtask_ids)
    # each subtask's steps are in its own node
    for sub in ids:
        await expect(page.locator(f"#steps-{sub} > li.step").first).to_be_visible()
    await shot(page, "task-tree")
    await children.first.locator("a.node-link").first.click()
    await page.wait_for_url(dash.url + f"/tasks/{ids[0]}")
    sub = await dash.api.get_task(ids[0])
    await expect(page.locator(f"#steps-{ids[0]} > li.step")).to_have_count(sub.steps, timeout=LONG_MS)
    await expect(page.locator(f"#state-{ids[0]}")).to_have_text("completed")
    await expect(page.locator("a", has_text="parent task")).to_have_attribute("href", f"/tasks/{root}")
    await shot(page, "subtask")


async def test_cancel_a_subtree_from_the_tree(page: Page, dash: Dash, site: DemoSite) -> None:
    root = await submit(page, dash, f"Hand a dawdle at {site.url}index.html to a subtask")
    child = page.locator(f"#children-{root} > .node").first
    await expect(child).to_be_visible(timeout=LONG_MS)
    sub = await child.get_attribute("data-task")
    await expect(page.locator(f"#steps-{sub} > li.step").first).to_be_visible(timeout=LONG_MS)
    await page.click(f"#cancel-{sub} button")
    await expect(page.locator(f"#state-{sub}")).to_have_text("cancelled", timeout=LONG_MS)
    # only the subtree: the parent learns its subtask's end and finishes on its own
    await expect(page.locator(f"#state-{root}")).to_have_text("completed (no success)", timeout=LONG_MS)
    await expect(page.locator(f"#result-{root}")).to_contain_text("cancelled")
    cancelled = await dash.api.get_task(str(sub))
    assert cancelled.state == pb.TASK_STATE_CANCELLED and cancelled.error == "cancelled from the dashboard"
    assert (await dash.api.get_task(root)).state == pb.TASK_STATE_COMPLETED
    await shot(page, "cancelled-subtree")


async def test_cancel_a_task_from_the_list(page: Page, dash: Dash, site: DemoSite) -> None:
    task = await dash.api.submit(f"Dawdle at {site.url}index.html")  # three racing copies: the engine's default
    row = page.locator(f"tr.task-row[data-task='{task.task_id}']")
    await expect(row).to_be_visible(timeout=LONG_MS)  # the list refreshes itself
    await row.locator("button.cancel").click()
    ended = await apoll(lambda: dash.api.get_task(task.task_id), lambda t: t.state == pb.TASK_STATE_CANCELLED,
                        timeout=60)
    assert ended.state == pb.TASK_STATE_CANCELLED and ended.error == "cancelled from the dashboard"
    await expect(row.locator(".badge")).to_have_text("cancelled", timeout=LONG_MS)
    await shot(page, "task-list")


async def test_first_of_n_from_the_form_races_copies(page: Page, dash: Dash, site: DemoSite) -> None:
    root = await submit(page, dash, f"Race to find the largest gorilla in Europe on {site.url}index.html", copies=3)
    copies = page.locator(f"#children-{root} > .node .copy")
    await expect(copies).to_have_text(["copy 1", "copy 2", "copy 3"], timeout=LONG_MS)
    await expect(page.locator(f"#state-{root}")).to_have_text("completed", timeout=LONG_MS)
    await expect(page.locator(f"#result-{root}")).to_contain_text("(copy 2)")
    task = await dash.api.get_task(root)
    assert len(task.subtask_ids) == 3 and task.winner_task_id == task.subtask_ids[1]


async def test_bad_submissions_get_a_400_naming_the_field(dash: Dash) -> None:
    bearer = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=dash.url, headers=bearer) as h:
        for form, says in [({"description": "x", "num_copies": "many"}, "num_copies"),
                           ({"description": "x", "num_copies": "9"}, "constraints.first_of_n_num_copies"),
                           ({"description": "  "}, "spec.description is required")]:
            r = await h.post("/tasks", data=form)
            assert r.status_code == 400 and says in r.text, (form, r.status_code, r.text[:300])
        assert (await h.get("/healthz")).status_code == 200  # still serving
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dash.api.stub.SubmitTask(pb.SubmitTaskRequest(spec=pb.TaskSpec(description="x", num_copies=-1)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "spec.num_copies is -1" in str(err.value.details())


async def test_the_metrics_panel_plots_the_engine(page: Page, dash: Dash, site: DemoSite) -> None:
    plots = page.locator("#metrics figure.plot")
    await expect(plots).to_have_count(6, timeout=LONG_MS)
    await dash.api.run(f"Slowly tour Asia from {site.url}index.html")
    m = await dash.api.metrics()
    assert m.steps > 0 and m.step_seconds > 0
    latency = page.locator("#metrics figure[data-plot=latency] b")
    await expect(latency).to_have_text(re.compile(r"^[0-9.e+-]+ s$"), timeout=LONG_MS)
    value = float((await latency.inner_text()).split()[0])
    assert value > 0
    await expect(page.locator("#metrics figure[data-plot=running] polyline")).to_have_count(1)
    await shot(page, "metrics")


async def test_answer_an_ask_human_question_in_the_answer_box(page: Page, dash: Dash, site: DemoSite) -> None:
    root = await submit(page, dash, f"Ask a person which continent to look up at {site.url}index.html")
    box = page.locator(f"#human-{root} .answer-box")
    await expect(box.locator(".question")).to_contain_text("Which continent should I look up", timeout=LONG_MS)
    await expect(page.locator(f"#state-{root}")).to_have_text("waiting for a person")
    assert (await dash.api.get_task(root)).state == pb.TASK_STATE_WAITING_FOR_HUMAN
    # the page the task left open, from GetTaskScreenshot, decoded by the browser
    live = box.locator(".live-page img")
    await expect(live).to_be_visible(timeout=LONG_MS)
    assert await live.evaluate("img => img.naturalWidth") > 0
    await shot(page, "ask-human")
    await box.locator("input[name=answer]").fill("Asia")
    await box.locator("button[type=submit]").click()
    await expect(page.locator(f"#state-{root}")).to_have_text("completed", timeout=LONG_MS)
    await expect(page.locator(f"#result-{root}")).to_contain_text(f"The person chose Asia: its largest gorilla is "
                                                                   f"{GORILLAS['Asia'].name}")
    await expect(page.locator(f"#human-{root}")).to_be_empty()


async def test_pause_look_at_the_page_and_instruct(page: Page, dash: Dash, site: DemoSite) -> None:
    root = await submit(page, dash, f"Wander around {site.url}index.html until told")
    await expect(page.locator(f"#steps-{root} > li.step").first).to_be_visible(timeout=LONG_MS)
    await page.click(f"#node-{root} button.look")
    await expect(page.locator(f"#live-{root} figcaption")).to_contain_text(f"{site.url}index.html",
                                                                           timeout=LONG_MS)
    await page.click(f"#pause-{root} button")
    box = page.locator(f"#human-{root} .answer-box[data-kind=paused]")
    await expect(box.locator(".question")).to_contain_text("Paused on", timeout=LONG_MS)
    await box.locator("input[name=answer]").fill("Read Oceania")
    await box.locator("button[type=submit]").click()
    await expect(page.locator(f"#state-{root}")).to_have_text("completed", timeout=LONG_MS)
    await expect(page.locator(f"#result-{root}")).to_contain_text(GORILLAS["Oceania"].name)
    task = await dash.api.get_task(root)  # the engine's record agrees with the page
    assert task.state == pb.TASK_STATE_COMPLETED and GORILLAS["Oceania"].name in task.result


async def test_human_controls_refuse_what_does_not_fit(dash: Dash) -> None:
    """Answering a task that asks nothing, or with nothing: the engine's reason, with its status."""
    bearer = {"authorization": f"Bearer {KEY}"}
    done = await dash.api.run("Say hello")
    async with httpx.AsyncClient(base_url=dash.url, headers=bearer) as h:
        r = await h.post(f"/tasks/{done.task_id}/respond", data={"answer": "hi"})
        assert r.status_code == 409 and "error" in r.text, (r.status_code, r.text)
        r = await h.post(f"/tasks/{done.task_id}/respond", data={"answer": ""})
        assert r.status_code == 400 and "answer is required" in r.text, (r.status_code, r.text)
        r = await h.get("/tasks/task_nope/screenshot")
        assert r.status_code == 404 and "task_nope" in r.text


async def test_a_busy_web_port_stops_the_start_naming_the_setting(sim: Sim, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(engine_overrides(sim, workers=1, dashboard=True, web_port=port)))
        run = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "blast_grpc", "serve", "--config",
                                                       str(config)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in run.stderr and f"settings.web_port={port} free?" in run.stderr


async def test_the_dashboard_process_stops_with_its_engine(sim: Sim) -> None:
    eng = await Engine.create(overrides=engine_overrides(sim, workers=1, dashboard=True, web_port=0))
    try:
        children = psutil.Process(eng.proc.pid).children(recursive=True)
        dashboards = [p for p in children if "gateway.dashboard" in " ".join(p.cmdline())]
        assert len(dashboards) == 1, [p.cmdline() for p in children]
        async with httpx.AsyncClient() as h:  # no keys: open
            assert (await h.get(f"{eng.dashboard_url}/fragments/tasks")).status_code == 200
    finally:
        await eng.stop()
    gone, alive = await asyncio.to_thread(psutil.wait_procs, dashboards, 30)
    assert gone and not alive
