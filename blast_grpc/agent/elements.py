"""Finding element [N] of the last observation again, and checking that a click would reach it.

Element N carries ``data-blast-idx="N"`` in the document (frame) it was found in
(``observe.py``). Before an action the element there is compared with the
observation's fingerprint (tag, role, name); when the number is gone (the page
re-rendered it) or now marks something else, the one element of the same tag, role
and name is looked up and numbered N again. When none or several match, the action
fails with a message saying so: the model gets a fresh observation next step.

``reach`` scrolls the element into view and hit-tests its centre and other inner points
for up to about a second (an animation may be finishing): the click goes to the first
point that reaches the element (a button half under another is clicked on its free
half); if something else is on top everywhere it names that element, so a click on a
covered element fails fast instead of waiting for the action timeout.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page, Position

from .dom_script import FINGERPRINT_SCRIPT, REFIND_SCRIPT
from .observe import ElementRef, Observation


class ElementGone(LookupError):
    """Element [N] cannot be acted on; the message is for the model."""


_REACH_SCRIPT = r"""
async (el, waitMs) => {
  if (el.disabled || el.getAttribute('aria-disabled') === 'true') return 'disabled';
  const r0 = el.getBoundingClientRect();
  if (r0.bottom <= 0 || r0.right <= 0 || r0.top >= innerHeight || r0.left >= innerWidth)
    el.scrollIntoView({block: 'center', inline: 'center', behavior: 'instant'});
  const within = (h) => { for (let n = h; n; n = n.parentNode || n.host) if (n === el) return true; return false; };
  const hit = (x, y) => {
    let h = document.elementFromPoint(x, y);
    while (h && h.shadowRoot) { const i = h.shadowRoot.elementFromPoint(x, y); if (!i || i === h) break; h = i; }
    return h;
  };
  const describe = (h) => {
    let s = '<' + h.tagName.toLowerCase() + (h.id ? ' id="' + h.id + '"' : '')
      + (typeof h.className === 'string' && h.className.trim() ? ' class="' + h.className.trim().slice(0, 40) + '"' : '')
      + '>';
    const t = (h.innerText || '').replace(/\s+/g, ' ').trim();
    return s + (t.length > 60 ? t.slice(0, 59) + '…' : t);
  };
  // The centre first, then other inner points: a person clicks the part that is not covered.
  const test = () => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) return 'not visible (it has no size)';
    let first = null;
    for (const [fx, fy] of [[0.5, 0.5], [0.25, 0.5], [0.75, 0.5], [0.5, 0.25], [0.5, 0.75], [0.15, 0.15],
                            [0.85, 0.85], [0.15, 0.85], [0.85, 0.15]]) {
      const x = Math.min(Math.max(r.left + r.width * fx, 0), innerWidth - 1);
      const y = Math.min(Math.max(r.top + r.height * fy, 0), innerHeight - 1);
      const h = hit(x, y);
      if (!h || within(h) || (h.tagName === 'LABEL' && h.control === el)) return [x - r.left, y - r.top];
      first = first || h;
    }
    return 'covered by ' + describe(first);
  };
  const until = performance.now() + waitMs;
  for (;;) {
    const got = test();
    if (typeof got !== 'string' || performance.now() >= until) return got;
    await new Promise(res => setTimeout(res, 50));
  }
}
"""


def _same(ref: ElementRef, got: list[str]) -> bool:
    tag, role, name = got
    if tag != ref.tag or role != ref.role:
        return False
    a, b = ref.name.rstrip("…"), name.rstrip("…")
    return not a or not b or a.startswith(b) or b.startswith(a)


def _label(ref: ElementRef) -> str:
    return f"<{ref.tag}{f' role={ref.role}' if ref.role else ''}>{ref.name}"


async def locate(page: Page, seen: Observation | None, index: int) -> tuple[Locator, str]:
    """Element ``index`` of ``seen`` as a locator, and a note if it had to be found again."""
    if seen is None:  # no observation to check against (a caller outside the agent loop)
        return page.locator(f'[data-blast-idx="{index}"]').first, ""
    ref = seen.elements.get(index)
    if ref is None:
        raise ElementGone(f"there is no element [{index}] in the last observation")
    frame = ref.frame or page.main_frame
    if frame.is_detached():
        raise ElementGone(f"element [{index}] {_label(ref)} was in a frame that is gone; look at the new observation")
    loc = frame.locator(f'[data-blast-idx="{index}"]')
    if await loc.count() == 1:
        got: Any = await loc.first.evaluate(FINGERPRINT_SCRIPT)
        if _same(ref, got):
            return loc.first, ""
        await loc.first.evaluate("(el) => el.removeAttribute('data-blast-idx')")
    found = await frame.evaluate(REFIND_SCRIPT, [ref.tag, ref.role, ref.name, index])
    if found == -1:
        raise ElementGone(f"element [{index}] {_label(ref)} is no longer on the page; look at the new observation")
    if found == -2:
        raise ElementGone(f"element [{index}] {_label(ref)} changed and several elements now match it; "
                          "look at the new observation")
    return frame.locator(f'[data-blast-idx="{index}"]').first, (
        f"element [{index}] had been re-rendered since the observation; it was found again by its tag and name")


async def reach(el: Locator, index: int, wait_s: float = 1.0) -> Position:
    """Where (relative to the element's box) a pointer reaches the element: its centre or, when that is
    covered, another inner point; ``ElementGone`` naming the cover if none does within ``wait_s``."""
    try:
        why = await el.evaluate(_REACH_SCRIPT, int(wait_s * 1000), timeout=(wait_s + 4) * 1000)
    except PlaywrightError as exc:
        if "not attached" in str(exc) or "Timeout" in str(exc):
            raise ElementGone(f"element [{index}] disappeared before it could be used") from exc
        raise
    if why == "disabled":
        raise ElementGone(f"element [{index}] is disabled")
    if isinstance(why, str):
        raise ElementGone(f"element [{index}] is {why}; a click would not reach it")
    return Position(x=float(why[0]), y=float(why[1]))
