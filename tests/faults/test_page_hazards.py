"""Hostile pages: the step that meets one times out or is handled, the agent goes on, the task completes.

Each task opens a hazard of the demo site (``blast_grpc.demo_site.hazards``) and then the
index page, and answers with what it was told on the way (scenarios
``hazard-then-continue`` / ``click-hazard-then-continue``). What the worker did about the
hazard is in the step events: the tool result of the action during which it happened,
or the ``observation_notes`` of the next step's detail.
"""

from __future__ import annotations

import json
import time

import pytest

from blast_grpc import Client
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite

from .conftest import NO_HANG_S, StrictEngine, collect, final, steps

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

NEXT = 'Reached "Gorilla Records"'  # the index page's title: the agent got past the hazard


def hazard(site: DemoSite, path: str) -> str:
    return f"Brave the hazard at {site.url}{path} and then name the page at {site.url}index.html"


def press(site: DemoSite, path: str, label: str) -> str:
    return f'At {site.url}{path} press "{label}" and then name the page at {site.url}index.html'


def completed(events: list[pb.TaskEvent]) -> str:
    done = final(events)
    assert done.HasField("completed") and done.completed.success, [str(e) for e in events[-4:]]
    assert NEXT in done.completed.result, done.completed.result
    return done.completed.result


def reports(events: list[pb.TaskEvent]) -> list[tuple[str, dict[str, object]]]:
    """Every note the engine gave the model: (note, the detail object it came with)."""
    out: list[tuple[str, dict[str, object]]] = []
    for s in steps(events):
        for line in filter(None, s.detail.splitlines()):
            d = json.loads(line)
            for key in ("notes", "observation_notes"):
                out += [(str(n), d) for n in d.get(key, [])]
    return out


async def test_a_page_that_never_loads_times_out_and_the_agent_goes_on(strict: StrictEngine,
                                                                      site: DemoSite) -> None:
    t0 = time.monotonic()
    events = await collect(strict.client, hazard(site, "_slow?seconds=300"))
    assert time.monotonic() - t0 < NO_HANG_S
    completed(events)
    first = steps(events)[0]
    assert first.result.startswith("Error: go_to_url timed out after 3s"), first.result
    assert "loading was stopped" in first.result


async def test_an_endless_redirect_fails_the_step_not_the_task(client: Client, site: DemoSite) -> None:
    site.clear_access_log()
    events = await collect(client, hazard(site, "_redirect_loop"))
    completed(events)
    first = steps(events)[0]
    assert first.result.startswith("Error: go_to_url failed") and "ERR_TOO_MANY_REDIRECTS" in first.result
    assert sum(p.startswith("/_redirect_loop") for p in site.access_log()) >= 10  # really followed, then gave up


@pytest.mark.parametrize(("kind", "returned", "answer"), [
    ("alert", "undefined", "accepted (OK)"),
    ("confirm", "false", "dismissed (Cancel)"),
    ("prompt", "null", "dismissed (Cancel)"),
])
async def test_a_dialog_while_the_page_loads_is_answered_and_reported(client: Client, site: DemoSite, kind: str,
                                                                      returned: str, answer: str) -> None:
    site.clear_access_log()
    events = await collect(client, hazard(site, f"_dialog.html?kind={kind}&when=load"))
    result = completed(events)
    first = steps(events)[0]
    assert first.result.startswith("Opened ") and f"Note: the page opened a JavaScript {kind} dialog" in first.result
    assert answer in first.result and "The hazard said:" in result  # the model was told, and went on
    # The page itself got the answer: the dialog did not block it.
    assert f"/_dialog_result?kind={kind}&value={returned}" in site.access_log()


async def test_a_dialog_opened_by_a_click_is_dismissed_and_reported(client: Client, site: DemoSite) -> None:
    site.clear_access_log()
    events = await collect(client, press(site, "_dialog.html?kind=confirm&when=click", "Open the confirm dialog"))
    completed(events)
    click = next(s for s in steps(events) if s.action.startswith("click("))
    assert 'JavaScript confirm dialog saying "Really proceed?"; it was dismissed (Cancel)' in click.result
    assert "/_dialog_result?kind=confirm&value=false" in site.access_log()


async def test_opening_a_download_is_refused_with_a_clear_result(client: Client, site: DemoSite) -> None:
    events = await collect(client, hazard(site, "_download?name=report.csv"))
    completed(events)
    first = steps(events)[0]
    assert first.result == (f"Error: {site.url}_download?name=report.csv is a file download, not a page; "
                            "downloads are refused (the file was not saved)")


async def test_a_download_link_is_refused_and_reported(client: Client, site: DemoSite) -> None:
    site.clear_access_log()
    events = await collect(client, press(site, "_download.html", "Download the report"))
    completed(events)
    notes = [n for n, _ in reports(events) if "download" in n]
    assert notes and 'download of "report.csv"' in notes[0] and "downloads are refused" in notes[0], reports(events)
    assert "/_download?name=report.csv" in site.access_log()  # the browser asked, and the file was refused


async def test_a_window_opened_while_the_page_loads_is_not_opened_and_is_reported(client: Client,
                                                                                   site: DemoSite) -> None:
    site.clear_access_log()
    events = await collect(client, hazard(site, "_popup.html?when=load"))
    completed(events)
    popup = f"{site.url}_popup_target.html?via=load"
    acted = next(s for s in steps(events) if s.action.startswith("go_to_url("))
    assert f"Note: the page tried to open a new window at {popup} on its own; it was not opened" in acted.result, (
        acted.result)
    assert not any(p.startswith("/_popup_target.html") for p in site.access_log())  # no second page ever loaded


@pytest.mark.parametrize(("how", "label"), [("link", "Open the target in a new window"),
                                            ("script", "Open a window from script")])
async def test_a_new_tab_opened_by_a_click_becomes_the_current_tab(client: Client, site: DemoSite, how: str,
                                                                    label: str) -> None:
    site.clear_access_log()
    events = await collect(client, press(site, "_popup.html", label))
    completed(events)
    click = next(s for s in steps(events) if s.action.startswith("click("))
    assert "Note: a new tab [1] was opened; it is now the current tab" in click.result, click.result
    assert f"/_popup_target.html?via={how}" in site.access_log()  # the tab really loaded the target
    assert click.url == f"{site.url}_popup_target.html?via={how}"  # after the click, the new tab is the current one
