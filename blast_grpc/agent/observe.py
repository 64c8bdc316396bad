"""What the agent sees: URL, title, numbered interactive elements and visible text.

The page script tags each visible interactive element with ``data-blast-idx`` so
an action can find "element [3]" again; the numbers are valid until the next
observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from playwright.async_api import Page

MAX_ELEMENTS = 200

_SCRIPT = """
(maxElements) => {
  const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, '
            + '[role=button], [role=link], [onclick]';
  for (const e of document.querySelectorAll('[data-blast-idx]')) e.removeAttribute('data-blast-idx');
  const lines = [];
  let i = 0;
  for (const el of document.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    if (st.display === 'none' || st.visibility === 'hidden' || (r.width === 0 && r.height === 0)) continue;
    el.setAttribute('data-blast-idx', String(i));
    const tag = el.tagName.toLowerCase();
    const attrs = [];
    for (const a of ['href', 'type', 'name', 'placeholder', 'value', 'aria-label', 'role']) {
      const v = el.getAttribute(a);
      if (v) attrs.push(a + '="' + v.slice(0, 100).replace(/"/g, "'") + '"');
    }
    let label = (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 100);
    if (tag === 'select') label = ' options: ' + Array.from(el.options).map(o => o.text.trim()).join(', ');
    lines.push('[' + i + '] <' + tag + (attrs.length ? ' ' + attrs.join(' ') : '') + '>' + label);
    i++;
    if (i >= maxElements) break;
  }
  return {elements: lines, text: document.body ? document.body.innerText : ''};
}
"""


@dataclass
class Observation:
    url: str
    title: str
    elements: list[str]
    text: str

    def render(self, step: int, max_steps: int, max_chars: int) -> str:
        """The observation message the model reads (the format the simulated model parses)."""
        text = self.text.strip()
        if len(text) > max_chars:
            text = text[:max_chars] + f"\n[... {len(self.text) - max_chars} more characters; use extract_content]"
        return "\n".join(
            [
                "OBSERVATION",
                f"URL: {self.url}",
                f"TITLE: {self.title}",
                "ELEMENTS:",
                *self.elements,
                "TEXT:",
                text,
                f"STEP: {step}/{max_steps}",
            ]
        )


async def observe(page: Page) -> Observation:
    """Read the page. A page that is mid-navigation is observed as blank rather than failing."""
    try:
        data = await page.evaluate(_SCRIPT, MAX_ELEMENTS)
        title = await page.title()
    except Exception:  # navigation destroyed the context mid-read: show what we know
        data, title = {"elements": [], "text": ""}, ""
    return Observation(url=page.url, title=title, elements=list(data["elements"]), text=str(data["text"]))


async def page_text(page: Page) -> str:
    """The page's whole visible text, for extract_content."""
    try:
        return str(await page.evaluate("() => document.body ? document.body.innerText : ''"))
    except Exception:
        return ""
