"""What the agent sees on real pages in real Chromium: elements, live state, text, frames, limits, hazards."""

from __future__ import annotations

import pytest

from blast_grpc.agent.observe import observe

from .conftest import Driver

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


async def test_fields_show_accessible_names_and_live_state(driver: Driver) -> None:
    obs = await driver.open("/form.html")
    assert obs.page[0] == "Fields"
    assert driver.line("Your name") == '<input type="text" name="name" value="LJG">Your name'
    assert driver.line("Email") == '<input type="email">Email'  # aria-label
    assert driver.line("Quantity") == '<input type="number" name="qty">Quantity'  # title
    assert driver.line("Search here") == '<input type="search" placeholder="Search here">Search here'
    assert driver.line("Large") == '<input type="radio" name="size" checked>Large'  # wrapping label
    assert driver.line("Small") == '<input type="radio" name="size">Small'
    assert driver.line("Fruit") == '<select name="fruit" selected="Apple">Fruit options: Apple, Pear'
    assert driver.line("Off") == "<button disabled>Off"
    # A label's text is the control's name, not a loose line of text as well.
    assert "Remember me" not in obs.page and "Your name" not in obs.page
    # The value shown is what is in the field now, not the HTML attribute.
    await driver.session.page.fill("#name", "Hello")
    await driver.session.page.check("input[name=remember]")
    await driver.session.page.select_option("select[name=fruits]", ["Apple", "Plum"])
    await driver.session.page.focus("input[name=pw]")
    await driver.observe()
    assert driver.line("Your name") == '<input type="text" name="name" value="Hello">Your name'
    assert driver.line("Remember me") == '<input type="checkbox" name="remember" checked>Remember me'
    assert driver.line("Fruits") == ('<select name="fruits" selected="Apple, Plum" multiple>Fruits options: '
                                     "Apple, Pear, Plum")
    assert driver.line("Secret") == '<input type="password" name="pw" focused>Secret'


async def test_elements_with_script_handlers_and_roles_are_listed_once_in_text_order(driver: Driver) -> None:
    obs = await driver.open("/listeners.html")
    page = obs.page
    assert page[0] == "[0] <div>START"  # a cover whose click handler is set from JavaScript
    assert page[1:6] == ["Pick one:", "[1] <span>alpha", ",", "[2] <span>beta", "."]
    assert driver.line("Section 2") == '<h3 role="tab" expanded="false">Section 2'
    assert driver.line("by property") == "<div>by property"  # onclick set as a property
    assert driver.line("by attribute") == "<div>by attribute"
    assert driver.line("focusable") == "<div>focusable"  # tabindex=0
    assert driver.line("pointer inner") == "<div>pointer inner"  # cursor:pointer starts here, not on its children
    assert driver.line("inside a link") == '<a href="/next.html">inside a link'  # not the span inside as well
    assert driver.line("Only button") == "<button>Only button"  # not the pointer wrapper around it
    assert driver.line("Root") == '<li role="treeitem" expanded="true">Root'
    at = page.index("plain text that is not clickable")
    assert page[at + 1] == "and a second line"  # a <br> ends a line
    assert len(obs.elements) == 11
    # The numbers are what actions use: clicking the span runs its handler.
    assert await driver.do("click", index=driver.index("beta")) == f"Clicked [{driver.index('beta')}]"
    await driver.observe()
    assert "picked beta" in driver.obs.page if driver.obs else False


async def test_a_covered_element_is_not_numbered(driver: Driver) -> None:
    obs = await driver.open("/overlay.html")
    names = [e.name for e in obs.elements.values()]
    assert names == ["Dismiss", "A slow page", "Half hidden", "On top"]  # half covered: still reachable
    assert "Under the veil" in obs.page  # its text is still there to read


async def test_frames_and_shadow_roots_are_read_in_place_with_unique_numbers(driver: Driver) -> None:
    obs = await driver.open("/frames.html")
    page = obs.page
    same, cross = f"{driver.base}/inner.html", driver.base.replace("127.0.0.1", "localhost") + "/inner.html?cross=1"
    assert page[0] == "before the frames"
    first = page.index(f"IFRAME {same}:")
    second = page.index(f"IFRAME {cross}:")
    assert page[first + 1] == "inside a frame" and page[first + 3] == "END IFRAME"
    assert page[second + 1] == "inside a frame" and page[second + 3] == "END IFRAME"
    assert page.index("after the frames") > second and "shadow text" in page
    buttons = [i for i, e in obs.elements.items() if e.name == "Frame button"]
    assert len(buttons) == 2 and len(set(obs.elements)) == len(obs.elements) == 3
    # Each number reaches the element in its own frame (and the shadow root's button too).
    for i in buttons:
        assert (await driver.do("click", index=i)).startswith(f"Clicked [{i}]")
    shadow = driver.index("Shadow button")
    assert (await driver.do("click", index=shadow)).startswith(f"Clicked [{shadow}]")
    await driver.observe()
    assert sum(e.name == "done" for e in driver.obs.elements.values()) == 2 if driver.obs else False
    assert driver.index("pressed") >= 0


async def test_fifty_thousand_elements_are_cut_with_a_note(driver: Driver) -> None:
    obs = await driver.open("/big.html")
    assert len(obs.elements) == 500
    assert any("truncated after 500 elements" in n for n in obs.notes), obs.notes
    assert obs.scroll.endswith("(viewport 1280x720)") and "0px above" in obs.scroll
    rendered = obs.render(1, 10, 6000)
    assert len(rendered) < 7000 and "more characters; scroll or use extract_content" in rendered


async def test_a_page_that_breaks_injected_scripts_gives_a_note_and_its_text(driver: Driver) -> None:
    obs = await driver.open("/throws.html")
    assert obs.title == "Throws"
    assert any("could not be read" in n and "no boxes for you" in n for n in obs.notes), obs.notes
    assert "Some words to read." in obs.page  # not a blank page


async def test_infinite_scroll_stays_bounded_and_scrolling_reads_more(driver: Driver) -> None:
    obs = await driver.open("/infinite.html")
    assert obs.page[0] == "item 0" and "item 30" not in obs.page
    for _ in range(3):
        result = await driver.do("scroll", direction="down")
        assert result.startswith("Scrolled down: ") and "px above" in result
    obs = await driver.observe()
    assert "item 60" in obs.page  # the page loaded more as it was scrolled
    assert len(obs.render(1, 10, 6000)) < 7000


async def test_a_navigation_during_the_read_is_not_an_empty_page(driver: Driver) -> None:
    await driver.open("/tabs.html")
    page = driver.session.page
    await page.evaluate("setTimeout(() => { location.href = '/next.html'; }, 0)")
    obs = await observe(page, 10)
    # Either the old page or the new one, never a blank read: a lost context is retried once.
    assert obs.title in ("Tab one", "Next page") and obs.page, obs


async def test_an_element_in_a_frame_removed_since_the_observation_is_named(driver: Driver) -> None:
    await driver.open("/frames.html")
    button = next(i for i, e in driver.obs.elements.items() if e.name == "Frame button") if driver.obs else -1
    await driver.session.page.evaluate("document.querySelector('iframe').remove()")
    result = await driver.do("click", index=button)
    assert result == (f"Error: click: element [{button}] <button>Frame button was in a frame that is gone; "
                      "look at the new observation")
    obs = await driver.observe()  # and the page reads fine without it
    assert sum(line.startswith("IFRAME ") for line in obs.page) == 1 and "after the frames" in obs.page


async def test_an_open_section_keeps_its_text_and_a_selected_tab_is_not_checked(driver: Driver) -> None:
    obs = await driver.open("/motion.html")
    # aria-selected is the current tab: "selected", not a ticked box.
    assert driver.line("Section #1", "h3") == '<h3 role="tab" selected expanded="true">Section #1'
    assert driver.line("Section #2", "h3") == '<h3 role="tab" expanded="false">Section #2'
    # The panel is listed (it has a listener) under its label, and its own text stays on the page.
    assert driver.line("Section #1", "div") == '<div role="tabpanel">Section #1'
    panel = obs.page.index(f"[{driver.index('Section #1', 'div')}] <div role=\"tabpanel\">Section #1")
    assert obs.page[panel + 1:panel + 3] == ["Words of the first section.", "Its second line."]


async def test_observing_an_unchanged_page_again_writes_nothing_into_it(driver: Driver) -> None:
    # Each attribute write invalidates style: a second look at the same page must not rewrite its marks.
    await driver.open("/form.html")
    page = driver.session.page
    await page.evaluate("""() => {
      window.__writes = [];
      new MutationObserver((ms) => window.__writes.push(...ms.map(m => m.attributeName)))
        .observe(document, {attributes: true, subtree: true});
    }""")
    again = await driver.observe()
    assert await page.evaluate("new Promise(r => setTimeout(() => r(window.__writes), 0))") == []
    assert again.elements == driver.obs.elements if driver.obs else False
    # A removed element's number goes away and only the elements after it are renumbered.
    await page.evaluate("document.querySelector('button').remove()")
    await driver.observe()
    writes = await page.evaluate("new Promise(r => setTimeout(() => r(window.__writes), 0))")
    assert writes and set(writes) == {"data-blast-idx"}
    assert await page.locator("[data-blast-idx]").count() == len(driver.obs.elements) if driver.obs else False
