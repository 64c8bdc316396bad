"""Every browser tool against real Chromium on small local pages (no engine; the agent's ``PageActions``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blast_grpc.agent.tools import browser_tools

from .conftest import NO_HANG_S, Driver

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


@pytest.mark.parametrize(("name", "text", "stored"), [
    ("Your name", "Hello", "Hello"),
    ("Secret", "hunter2", "hunter2"),
    ("Email", "a@b.example", "a@b.example"),
    ("Quantity", "42", "42"),
    ("Search here", "gorillas", "gorillas"),
    ("Homepage", "http://x.example/", "http://x.example/"),
    ("Phone", "+1 555 0100", "+1 555 0100"),
    ("Day", "11/29/2026", "2026-11-29"),
    ("Hour", "2:05 PM", "14:05"),
    ("When", "2026-11-29 14:05", "2026-11-29T14:05"),
    ("Month", "2026-11", "2026-11"),
    ("Week", "2026-W48", "2026-W48"),
    ("Colour", "#1E90FF", "#1e90ff"),
    ("Level", "7", "7"),
    ("Notes", "two\nlines", "two\nlines"),
    ("Editor", "new text", "new text"),
])
async def test_type_works_for_every_field_kind_and_reads_the_value_back(driver: Driver, name: str, text: str,
                                                                        stored: str) -> None:
    await driver.open("/form.html")
    index = driver.index(name)
    result = await driver.do("type", index=index, text=text)
    assert result.startswith(f"Typed into [{index}]"), result
    page = driver.session.page
    value = await page.locator(f'[data-blast-idx="{index}"]').evaluate(
        "(el) => el.isContentEditable ? el.innerText : el.value")
    assert value == stored
    # A person leaving the field fires change; inputs and textareas report it on the page.
    if name != "Editor":
        assert "change:" in await page.inner_text("#events")


async def test_type_reports_what_the_field_really_holds(driver: Driver) -> None:
    await driver.open("/form.html")
    limited = driver.index("Limited")
    result = await driver.do("type", index=limited, text="abcdef")  # maxlength=3
    assert result == f"Error: type into [{limited}]: after typing, the text field holds 'abc', not 'abcdef'"
    day = driver.index("Day")
    assert "is not a date value; write it like 2026-11-29" in await driver.do("type", index=day, text="someday")
    box = driver.index("Remember me")
    assert await driver.do("type", index=box, text="x") == (
        f"Error: type into [{box}]: this is a checkbox field: use click instead of type")


async def test_select_option_one_or_several(driver: Driver) -> None:
    await driver.open("/form.html")
    fruit, fruits = driver.index("Fruit"), driver.index("Fruits")
    assert await driver.do("select_option", index=fruit, value="pear") == f"Selected 'Pear' in [{fruit}]"
    assert await driver.do("select_option", index=fruits, values=["Apple", "Plum"]) == (
        f"Selected 'Apple', 'Plum' in [{fruits}]")
    assert "takes one option, not 2" in await driver.do("select_option", index=fruit, values=["Apple", "Pear"])
    assert "no option \"Kiwi\"; the options are: Apple, Pear" in await driver.do(
        "select_option", index=fruit, value="Kiwi")
    await driver.observe()
    assert driver.line("Fruits").startswith('<select name="fruits" selected="Apple, Plum" multiple>')


async def test_click_on_a_covered_element_fails_fast_naming_the_cover(driver: Driver) -> None:
    await driver.open("/overlay.html")
    under = driver.session.page.locator("#under")
    await under.evaluate("(el) => el.setAttribute('data-blast-idx', '99')")
    driver.tools.seen = None  # an index the observation did not give (the element is covered)
    t0 = time.monotonic()
    result = await driver.do("click", index=99)
    assert time.monotonic() - t0 < NO_HANG_S
    assert result == ('Error: click: element [99] is covered by <div id="veil">A modal veil; '
                      "a click would not reach it")
    assert await driver.session.page.title() == "Overlay"  # nothing was clicked, the page was not stopped
    await driver.observe()
    assert await driver.do("click", index=driver.index("Dismiss")) == f"Clicked [{driver.index('Dismiss')}]"
    await driver.observe()
    assert await driver.do("click", index=driver.index("Under the veil")) == (
        f"Clicked [{driver.index('Under the veil')}]")
    assert await driver.session.page.title() == "clicked"
    # A button half under another one is clicked on its free half.
    await driver.observe()
    half = driver.index("Half hidden")
    assert await driver.do("click", index=half) == f"Clicked [{half}]"
    assert await driver.session.page.title() == "half"


async def test_a_click_on_a_link_that_does_not_load_returns_without_stopping_it(driver: Driver) -> None:
    await driver.open("/overlay.html")
    link = driver.index("A slow page")
    result = await driver.do("click", index=link)
    assert result == (f"Clicked [{link}]; it started loading {driver.base}/slow, which did not answer within 5s "
                      "(it is still loading)")
    assert driver.session.page.url == f"{driver.base}/overlay.html"  # not stopped, not replaced yet


async def test_an_element_rerendered_is_found_again_and_a_removed_one_is_named(driver: Driver) -> None:
    await driver.open("/rerender.html")
    save, vanish = driver.index("Save"), driver.index("Vanish")
    await driver.session.page.evaluate("rerender()")
    result = await driver.do("click", index=save)
    assert result.startswith(f"Clicked [{save}] (element [{save}] had been re-rendered"), result
    assert await driver.session.page.inner_text("#out") == "saved"
    assert await driver.do("click", index=vanish) == (
        f"Error: click: element [{vanish}] <button>Vanish is no longer on the page; look at the new observation")
    assert await driver.do("click", index=1234) == "Error: click: there is no element [1234] in the last observation"


async def test_send_keys_hover_scroll_to_text_and_drag_and_drop(driver: Driver) -> None:
    await driver.open("/widgets.html")
    keys = driver.index("Keys")
    assert await driver.do("send_keys", keys="a Control+a Escape", index=keys) == "Pressed a Control+a Escape"
    assert await driver.session.page.inner_text("#out") == "a,Ctrl+Control,Ctrl+a,Escape"
    assert "unknown key 'Hyper'" in await driver.do("send_keys", keys="Hyper")
    assert await driver.do("hover", index=driver.index("Menu")) == f"Hovering over [{driver.index('Menu')}]"
    obs = await driver.observe()
    assert driver.line("Hidden entry") == '<a href="#x">Hidden entry'
    assert "0px above" in obs.scroll
    assert await driver.do("scroll_to_text", text="far away paragraph") == "Scrolled to 'far away paragraph'"
    obs = await driver.observe()
    assert not obs.scroll.startswith("0px above")
    assert "does not appear on the page" in await driver.do("scroll_to_text", text="no such words")
    source, target = driver.index("drag me"), driver.index("drop here")
    assert await driver.do("drag_and_drop", source=source, target=target) == f"Dragged [{source}] onto [{target}]"
    assert await driver.session.page.inner_text("#dst") == "dropped"
    rows = driver.index("row 1 row 2 row 3 row 4 row 5 row 6 row 7 row 8")
    result = await driver.do("scroll", direction="down", index=rows)
    assert result.startswith(f"Scrolled [{rows}] down: ") and not result.endswith(": 0px above, 0px below")


async def test_tabs_opened_by_links_are_followed_switched_and_closed(driver: Driver) -> None:
    await driver.open("/tabs.html")
    first = driver.session.page
    result = await driver.do("click", index=driver.index("Open next in a new tab"))
    assert f"it opened a new tab, now current: {driver.base}/next.html" in result, result
    assert driver.session.page is not first and await driver.session.page.title() == "Next page"
    obs = await driver.observe()
    assert obs.tabs == [f"[0] Tab one {driver.base}/tabs.html", f"[1] Next page {driver.base}/next.html (current)"]
    assert f"TABS: {obs.tabs[0]} | {obs.tabs[1]}" in obs.render(1, 5, 1000)
    assert await driver.do("switch_tab", index=0) == f"Switched to tab [0]: {driver.base}/tabs.html"
    assert driver.session.page is first
    assert await driver.do("switch_tab", index=5) == "Error: switch_tab: there is no tab [5]; open tabs: 0..1"
    assert await driver.do("close_tab", index=1) == f"Closed tab [1]; the current tab is {driver.base}/tabs.html"
    assert await driver.do("close_tab", index=0) == "Error: close_tab: the last tab cannot be closed"
    await driver.observe()
    result = await driver.do("click", index=driver.index("Open by script"))
    assert f"now current: {driver.base}/next.html?from=script" in result, result


async def test_a_dialog_during_a_click_is_answered_and_the_page_goes_on(driver: Driver) -> None:
    await driver.open("/tabs.html")
    assert await driver.do("click", index=driver.index("Ask")) == f"Clicked [{driver.index('Ask')}]"
    assert driver.session.take_notes() == [
        'the page opened a JavaScript confirm dialog saying "Really?"; it was dismissed (Cancel)']
    assert await driver.session.page.title() == "no"


async def test_wait_is_bounded(driver: Driver) -> None:
    assert await driver.do("wait", seconds=0.2) == "Waited 0.2s"
    assert await driver.do("wait", seconds=-3) == "Waited 0s"
    assert "seconds must be a number" in await driver.do("wait", seconds="soon")


async def test_upload_file_only_from_the_upload_folder(driver: Driver, tmp_path: Path) -> None:
    assert "upload_file" not in [t["function"]["name"] for t in browser_tools(upload=False)]
    names = [t["function"]["name"] for t in browser_tools(upload=True)]
    assert names.index("upload_file") == names.index("extract_content") - 1  # the same place every step
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "cv.txt").write_text("my cv")
    (tmp_path / "private.txt").write_text("not for upload")
    with_upload = Driver(driver.session, driver.base, upload_dir=str(folder))
    await with_upload.open("/form.html")
    doc = with_upload.index("Document")
    assert await with_upload.do("upload_file", index=doc, filename="cv.txt") == f"Put cv.txt into [{doc}]"
    got = await with_upload.session.page.locator("input[type=file]").evaluate("(el) => el.files[0].name")
    assert got == "cv.txt"
    assert await with_upload.do("upload_file", index=doc, filename="../private.txt") == (
        "Error: upload_file: '../private.txt' is outside the upload folder")
    assert "there is no file 'nope.txt'; available: cv.txt" in await with_upload.do(
        "upload_file", index=doc, filename="nope.txt")
    name = with_upload.index("Your name")
    assert await with_upload.do("upload_file", index=name, filename="cv.txt") == (
        f"Error: upload_file: [{name}] is not a file input")
    assert "no upload folder is configured" in await driver.do("upload_file", index=doc, filename="cv.txt")


async def test_go_to_url_and_go_back(driver: Driver) -> None:
    await driver.open("/tabs.html")
    assert await driver.do("go_to_url", url=f"{driver.base}/next.html") == f"Opened {driver.base}/next.html"
    assert await driver.do("go_back") == f"Went back to {driver.base}/tabs.html"
    assert await driver.session.page.title() == "Tab one"



async def test_the_pointer_travels_to_a_click_target_so_hover_handlers_fire_on_the_way(driver: Driver) -> None:
    await driver.open("/motion.html")
    page = driver.session.page
    first = await page.locator("#menu li").first.bounding_box()
    assert first is not None
    await page.mouse.move(first["x"] + 10, first["y"] + 15)  # resting on "zero", as a START click leaves it
    assert await driver.do("click", index=driver.index("three")) == f"Clicked [{driver.index('three')}]"
    said = await page.locator("#out").text_content()
    assert said is not None and said.startswith("crossed zero,"), said
    # A jumping pointer goes straight from "zero" to "three"; a moving one passes the items between.
    assert said.endswith("one,two,three"), said


async def test_after_a_click_the_observation_waits_for_the_page_to_stop_moving(driver: Driver) -> None:
    await driver.open("/motion.html")
    assert "Submit" not in [e.name for e in driver.obs.elements.values()] if driver.obs else False  # under the picker
    assert await driver.do("click", index=driver.index("Close picker")) == f"Clicked [{driver.index('Close picker')}]"
    await driver.observe()  # at once: the click returned only after the fade had ended
    assert driver.line("Submit") == "<button>Submit"
    assert await driver.do("click", index=driver.index("Submit")) == f"Clicked [{driver.index('Submit')}]"
    assert await driver.session.page.locator("#out").text_content() == "submitted"


async def test_after_a_click_the_observation_waits_for_pictures_drawn_by_css(driver: Driver) -> None:
    await driver.open("/icons.html")
    assert await driver.do("click", index=driver.index("Show mail")) == f"Clicked [{driver.index('Show mail')}]"
    await driver.observe()  # the icon's picture arrives a moment after the click; until then it has no size
    assert driver.line("Delete") == "<span>Delete"
