"""Typing into any kind of field as a person would, then reading the value back.

``fill_field`` handles every ``input`` type a person types into, ``textarea`` and
``contenteditable``:

* text-like inputs (text, password, email, search, url, tel, number) and textareas are
  cleared and typed key by key, so the page's key and input handlers run as for a person
  (a ``maxlength`` or a number field's filter applies); very long texts are filled at once;
* date, time, datetime-local, month, week, color and range are set the way their
  pickers set them (Playwright's ``fill``): the text is first put into the field's
  format (``11/29/2026`` -> ``2026-11-29``, ``2:05 PM`` -> ``14:05``);
* contenteditable elements get their text replaced.

Afterwards a ``change`` event is fired (a person leaving the field) and the value is
read back: when it is not what was asked for, the model gets an error with the value
the field now holds. Kinds that are not typed into (checkbox, radio, file, select,
buttons) get an error naming the right tool.
"""

from __future__ import annotations

import re
from datetime import datetime

from playwright.async_api import Locator

TEXT_KINDS = frozenset({"text", "password", "email", "search", "url", "tel", "number"})
PICKER_KINDS = frozenset({"date", "time", "datetime-local", "month", "week", "color", "range"})
OTHER_TOOL = {"checkbox": "click", "radio": "click", "file": "upload_file", "submit": "click", "button": "click",
              "reset": "click", "image": "click", "select": "select_option"}
KEY_BY_KEY_MAX = 300  # longer texts are filled at once (typing them key by key would take long)

_KIND = """(el) => el.isContentEditable && !['INPUT', 'TEXTAREA'].includes(el.tagName) ? 'contenteditable'
  : el.tagName === 'TEXTAREA' ? 'textarea' : el.tagName === 'SELECT' ? 'select'
  : el.tagName === 'INPUT' ? (el.type || 'text') : 'other:' + el.tagName.toLowerCase()"""
_VALUE = "(el) => el.isContentEditable && !['INPUT', 'TEXTAREA'].includes(el.tagName) ? el.innerText : el.value"
_CHANGE = "(el) => el.dispatchEvent(new Event('change', {bubbles: true}))"

_FORMATS = {
    "date": ("%Y-%m-%d", ["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%B %d, %Y", "%b %d, %Y", "%d %B %Y"]),
    "time": ("%H:%M", ["%H:%M", "%H:%M:%S", "%I:%M %p", "%I:%M%p", "%I %p"]),
    "datetime-local": ("%Y-%m-%dT%H:%M", ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M %p"]),
    "month": ("%Y-%m", ["%Y-%m", "%m/%Y", "%B %Y", "%b %Y"]),
}
_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)


class FillError(ValueError):
    """The text cannot go into this field (the message is for the model)."""


def normalize(kind: str, text: str) -> str:
    """``text`` in the format a ``kind`` field takes, or ``FillError`` naming that format."""
    t = text.strip()
    if kind in _FORMATS:
        out, accepted = _FORMATS[kind]
        for fmt in accepted:
            try:
                return datetime.strptime(t, fmt).strftime(out)
            except ValueError:
                continue
        example = datetime(2026, 11, 29, 14, 5).strftime(out)
        raise FillError(f"{t!r} is not a {kind} value; write it like {example}")
    if kind == "week":
        m = _WEEK.match(t)
        if not m or not 1 <= int(m.group(2)) <= 53:
            raise FillError(f"{t!r} is not a week; write it like 2026-W48")
        return f"{m.group(1)}-W{int(m.group(2)):02d}"
    if kind == "color":
        if not re.fullmatch(r"#?[0-9a-fA-F]{6}", t):
            raise FillError(f"{t!r} is not a colour; write it like #1e90ff")
        return ("#" + t.lstrip("#")).lower()
    return t if kind == "range" else text


def _matches(kind: str, wanted: str, got: str) -> bool:
    if kind in ("number", "range"):
        try:
            return float(wanted) == float(got)
        except ValueError:
            return False
    if kind == "contenteditable":
        return " ".join(wanted.split()) == " ".join(got.split())
    if kind == "time" and got.startswith(wanted):  # 14:05 reads back as 14:05:00 with a seconds step
        return True
    return wanted == got


async def fill_field(el: Locator, text: str, timeout_ms: float) -> str:
    """Type ``text`` into the field; returns its value read back (a password masked), raises ``FillError``
    on a mismatch."""
    kind = str(await el.evaluate(_KIND, timeout=timeout_ms))
    if kind in OTHER_TOOL:
        raise FillError(f"this is a {kind} field: use {OTHER_TOOL[kind]} instead of type")
    if kind.startswith("other:"):
        raise FillError(f"a <{kind[6:]}> is not a text field; type into an input, textarea or editable element")
    if await el.evaluate("(el) => el.disabled || el.readOnly", timeout=timeout_ms):
        raise FillError("the field is disabled or read-only")
    wanted = normalize(kind, text)
    if kind in TEXT_KINDS or kind == "textarea":
        await el.fill("", timeout=timeout_ms)
        if len(wanted) <= KEY_BY_KEY_MAX and "\n" not in wanted:
            await el.press_sequentially(wanted, timeout=timeout_ms)
        else:
            await el.fill(wanted, timeout=timeout_ms)
    else:  # pickers (set as their widgets set them) and contenteditable
        await el.fill(wanted, timeout=timeout_ms)
    await el.evaluate(_CHANGE, timeout=timeout_ms)
    got = str(await el.evaluate(_VALUE, timeout=timeout_ms))
    if kind != "password" and not _matches(kind, wanted, got):
        raise FillError(f"after typing, the {kind} field holds {got!r}, not {wanted!r}")
    if kind == "password":
        if got != wanted:
            raise FillError(f"after typing, the password field holds {len(got)} characters, not {len(wanted)}")
        return "•" * len(got)  # shown as a person sees it
    return got
