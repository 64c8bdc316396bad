"""A scripted policy for MiniWoB++ tasks: one small solver per task type.

It plays like a person reading the screen, from the observation alone: it reads the
instruction in the page text (MiniWoB shows it in ``#query``), picks elements by their
lines (tag, type, accessible name, live state) and acts with the engine's tools. It
never reads the page itself and knows no hidden answer, so a wrong observation or a
broken action makes it fail. Flow of every episode::

    START cover listed ──▶ click it            (thought "miniwob: start"; the page clock starts)
    instruction shown  ──▶ solver's calls      (several calls in one reply where a person
                                                would not need to look in between)
    "Last reward: X"   ──▶ done("reward X.XX", success=X>0)

The thoughts sent with each reply are the policy's memory (``miniwob: ...`` lines, read
back from the history): which tabs or sections were already opened, which step of a
form is done. A solver that cannot find what it needs finishes with
``done(success=false)`` and says what was missing — that is a finding about the
observation, not something to paper over here.

The engine lets the page come to rest after each action (a section sliding open, a date
picker fading out, images loading), so the policy acts on what it sees and does not wait
and look again; it waits only for what a person waits for too (a widget's delay before
its suggestions, the reward after the last click). A button whose middle lies under
another one (click-test-2, click-button-sequence) is clicked on its free part.
Autocomplete suggestions are clicked, as a person would: the pointer travels to them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .page import Line, PageView

Call = tuple[str, dict[str, Any]]
TASK_URL = re.compile(r"/miniwob/([\w-]+)\.html")
_REWARD = re.compile(r"Last reward:\s*(-?\d+(?:\.\d+)?)")
MEMORY = "miniwob: "
MAX_STEPS = 14  # an episode that needs more has gone wrong; stop instead of wandering
MAX_STARTS = 2


class GiveUp(Exception):
    """The solver cannot go on; the message says what it missed."""


@dataclass
class Turn:
    """What one decision may use: the page, the instruction, the memory and the last results."""

    page: PageView
    instruction: str
    memory: list[str]
    last_results: list[str]
    step: int
    calls: list[Call] = field(default_factory=list)
    note: str = ""

    # ---- reading -------------------------------------------------------------------------
    def ask(self, pattern: str) -> re.Match[str]:
        """The instruction's parts (a regex over the whitespace-collapsed page text)."""
        m = re.search(pattern, self.instruction)
        if m is None:
            raise GiveUp(f"the instruction does not match /{pattern}/: {self.instruction[:200]!r}")
        return m

    def remembers(self, note: str) -> bool:
        return note in self.memory

    def element(self, what: str, pred: Callable[[Line], bool]) -> Line:
        found = self.page.find(pred)
        if found is None:
            raise GiveUp(f"no element line for {what}")
        return found

    def named(self, name: str, *tags: str) -> Line:
        """The first element whose accessible name is ``name`` (exactly, else ignoring case)."""
        def ok(e: Line) -> bool:
            return not tags or e.tag in tags or e.role in tags

        exact = self.page.find(lambda e: ok(e) and e.name == name)
        return exact or self.element(f"{' or '.join(tags) or 'element'} named {name!r}",
                                     lambda e: ok(e) and e.name.lower() == name.lower())

    def button(self, name: str) -> Line:
        return self.named(name, "button")

    def inputs(self, *types: str) -> list[Line]:
        return list(self.page.each(lambda e: e.tag == "input" and e.type in types))

    def text_inputs(self) -> list[Line]:
        return self.inputs("text", "input", "search", "email", "")

    # ---- acting --------------------------------------------------------------------------
    def click(self, e: Line) -> None:
        self.calls.append(("click", {"index": e.index}))

    def type(self, e: Line, text: str) -> None:
        self.calls.append(("type", {"index": e.index, "text": text, "submit": False}))

    def select(self, e: Line, values: list[str]) -> None:
        if len(values) == 1:
            self.calls.append(("select_option", {"index": e.index, "value": values[0]}))
        else:
            self.calls.append(("select_option", {"index": e.index, "values": values}))

    def wait(self, seconds: float = 0.5) -> None:
        """Look again shortly: the page is still drawing (an animation, an image loading)."""
        self.calls.append(("wait", {"seconds": seconds}))

    def send_keys(self, keys: str, e: Line | None = None) -> None:
        args: dict[str, Any] = {"keys": keys}
        if e is not None:
            args["index"] = e.index
        self.calls.append(("send_keys", args))

    def remember(self, note: str) -> None:
        self.note = note


Solver = Callable[[Turn], None]
SOLVERS: dict[str, Solver] = {}


def solver(*names: str) -> Callable[[Solver], Solver]:
    def register(fn: Solver) -> Solver:
        for n in names:
            SOLVERS[n] = fn
        return fn
    return register


def _quoted(t: Turn, before: str, after: str = "") -> str:
    """The quoted part of the instruction between ``before`` and ``after``."""
    return t.ask(before + r'\s*"\s*(.+?)\s*"' + after).group(1)


# ---- click ---------------------------------------------------------------------------------
@solver("click-button")
def click_button(t: Turn) -> None:
    t.click(t.button(_quoted(t, r"Click on the", r"\s*button")))


@solver("click-link")
def click_link(t: Turn) -> None:
    word = _quoted(t, r"Click on the link")
    t.click(t.element(f"link {word!r}", lambda e: e.name == word and e.tag != "button"))


@solver("click-test")
def click_test(t: Turn) -> None:
    t.ask(r"Click the button")
    t.click(t.button("Click Me!"))


def _press_in_order(t: Turn, names: list[str]) -> None:
    """Activate the buttons ``names`` in order, one a step: a click, or, when the click could not
    reach the button (another one lies over its middle), the keyboard: focus it and press Enter."""
    notes = [n for n in t.memory if n.startswith("buttons: ")]
    if not notes:
        t.click(t.button(names[0]))
        t.remember("buttons: click 0")
        return
    verb, _, at = notes[-1].removeprefix("buttons: ").partition(" ")
    i = int(at)
    if t.last_results and t.last_results[-1].startswith("Error"):
        if verb != "click":
            raise GiveUp(f"button {names[i]!r} could be neither clicked nor pressed: {t.last_results[-1]}")
        t.send_keys("Enter", t.button(names[i]))
        t.remember(f"buttons: press {i}")
        return
    if i + 1 >= len(names):
        t.wait()  # every button is done: the reward is on its way
        return
    t.click(t.button(names[i + 1]))
    t.remember(f"buttons: click {i + 1}")


@solver("click-test-2")
def click_test_2(t: Turn) -> None:
    _press_in_order(t, [t.ask(r"Click button (\w+)").group(1)])


@solver("click-button-sequence")
def click_button_sequence(t: Turn) -> None:
    m = t.ask(r"Click button (\w+), then click button (\w+)")
    _press_in_order(t, [m.group(1), m.group(2)])


_WIDGETS: dict[str, Callable[[Line], bool]] = {
    "button": lambda e: e.tag == "button",
    "textarea": lambda e: e.tag == "textarea",
    "text": lambda e: e.tag == "input" and e.type in ("text", "input"),
    "checkbox": lambda e: e.tag == "input" and e.type == "checkbox",
    "radio": lambda e: e.tag == "input" and e.type == "radio",
}


@solver("click-widget")
def click_widget(t: Turn) -> None:
    kind = _quoted(t, r"Click on a", r"\s*widget")
    if kind not in _WIDGETS:
        raise GiveUp(f"unknown widget kind {kind!r}")
    t.click(t.element(f"a {kind} widget", _WIDGETS[kind]))


# ---- type and focus ------------------------------------------------------------------------
def _type_and_submit(t: Turn, text: str) -> None:
    box = t.text_inputs() or [t.element("a text field", lambda e: e.tag in ("input", "textarea"))]
    t.type(box[0], text)
    t.click(t.button("Submit"))


@solver("enter-text", "enter-text-dynamic")
def enter_text(t: Turn) -> None:
    _type_and_submit(t, _quoted(t, r"Enter", r"\s*into the text field"))


@solver("enter-text-2")
def enter_text_2(t: Turn) -> None:
    m = t.ask(r'Type\s*"\s*(.+?)\s*"\s*in all (upper|lower) case letters')
    _type_and_submit(t, m.group(1).upper() if m.group(2) == "upper" else m.group(1).lower())


@solver("enter-password")
def enter_password(t: Turn) -> None:
    password = _quoted(t, r"Enter the password")
    boxes = t.inputs("password")
    if len(boxes) < 2:
        raise GiveUp(f"expected two password fields, found {len(boxes)}")
    for box in boxes[:2]:
        t.type(box, password)
    t.click(t.button("Submit"))


def _credentials(t: Turn) -> tuple[str, str]:
    m = t.ask(r'username\s*"\s*(.+?)\s*"\s*and the\s*password\s*"\s*(.+?)\s*"')
    return m.group(1), m.group(2)


def _login_fields(t: Turn) -> tuple[Line, Line]:
    user = t.text_inputs()
    password = t.inputs("password")
    if not user or not password:
        raise GiveUp("no username or password field")
    return user[0], password[0]


@solver("login-user")
def login_user(t: Turn) -> None:
    name, password = _credentials(t)
    user_box, pass_box = _login_fields(t)
    t.type(user_box, name)
    t.type(pass_box, password)
    t.click(t.button("Login"))


@solver("login-user-popup")
def login_user_popup(t: Turn) -> None:
    """A popup may open when a field is focused, covering and disabling the form: cancel it first.

    One field a step until the popup has been seen (it shows at most once), so it is
    noticed before the next field is tried; after it, the whole form at once.
    """
    name, password = _credentials(t)
    if re.search(r"Exit to home page\?", t.instruction):
        t.click(t.element("the popup's Cancel button", lambda e: e.tag == "button" and e.name == "Cancel"))
        t.remember("login: popup closed")
        return
    user_box, pass_box = _login_fields(t)
    if t.remembers("login: popup closed"):
        # The field that opened the popup may not have taken its text: type both again.
        t.type(user_box, name)
        t.type(pass_box, password)
        t.click(t.button("OK"))
    elif not t.remembers("login: user typed"):
        t.type(user_box, name)
        t.remember("login: user typed")
    elif not t.remembers("login: password typed"):
        t.type(pass_box, password)
        t.remember("login: password typed")
    else:
        t.click(t.button("OK"))


@solver("focus-text")
def focus_text(t: Turn) -> None:
    t.ask(r"Focus into the textbox")
    t.click(t.element("the textbox", lambda e: e.tag == "input"))


_ORDINAL = {"1st": 0, "2nd": 1, "3rd": 2}


@solver("focus-text-2")
def focus_text_2(t: Turn) -> None:
    k = _ORDINAL[t.ask(r"Focus into the (1st|2nd|3rd) input textbox").group(1)]
    boxes = t.text_inputs()
    if len(boxes) <= k:
        raise GiveUp(f"only {len(boxes)} text inputs")
    t.click(boxes[k])


# ---- select, checkboxes, radios ------------------------------------------------------------
@solver("choose-list")
def choose_list(t: Turn) -> None:
    item = t.ask(r"Select (.+?) from the list and click Submit").group(1)
    t.select(t.element("the list", lambda e: e.tag == "select"), [item])
    t.click(t.button("Submit"))


def _split_items(wanted: str, box: Line) -> list[str]:
    """``"A, B"`` into items, trusting the list's options when an item itself has a comma.

    Two options next to each other read like one in the comma-joined options, so a
    split into two known options wins over the whole.
    """
    parts = wanted.split(", ")
    for cut in range(1, len(parts)):
        left, right = ", ".join(parts[:cut]), ", ".join(parts[cut:])
        if box.has_option(left) and box.has_option(right):
            return [left, right]
    return [wanted] if box.has_option(wanted) else parts


@solver("click-scroll-list")
def click_scroll_list(t: Turn) -> None:
    wanted = t.ask(r"Select (.+?) from the scroll list and click Submit").group(1)
    box = t.element("the scroll list", lambda e: e.tag == "select")
    t.select(box, _split_items(wanted, box))
    t.click(t.button("Submit"))


@solver("click-checkboxes")
def click_checkboxes(t: Turn) -> None:
    wanted = t.ask(r"Select (.+?) and click Submit\.").group(1)
    names = set() if wanted == "nothing" else set(wanted.split(", "))
    boxes = t.inputs("checkbox")
    missing = names - {b.name for b in boxes}
    if missing:
        raise GiveUp(f"no checkbox named {sorted(missing)}")
    for box in boxes:
        if (box.name in names) != box.checked:
            t.click(box)
    t.click(t.button("Submit"))


@solver("click-option")
def click_option(t: Turn) -> None:
    wanted = t.ask(r"Select (.+?) and click Submit\.").group(1)
    t.click(t.element(f"radio {wanted!r}", lambda e: e.type == "radio" and e.name == wanted))
    t.click(t.button("Submit"))


# ---- dialogs, tabs, collapsibles, trees ----------------------------------------------------
def _close_button(t: Turn) -> Line:
    return t.element("the dialog's close (x) button",
                     lambda e: e.tag == "button" and e.name.strip().lower() in ("close", "x", "×"))


@solver("click-dialog")
def click_dialog(t: Turn) -> None:
    t.ask(r'Close the dialog box by clicking the\s*"\s*x\s*"')
    t.click(_close_button(t))


@solver("click-dialog-2")
def click_dialog_2(t: Turn) -> None:
    label = _quoted(t, r"Click the button in the dialog box labeled")
    t.click(_close_button(t) if label == "x" else t.button(label))


@solver("click-tab")
def click_tab(t: Turn) -> None:
    tab = t.ask(r"Click on (Tab #\d)").group(1)
    t.click(t.named(tab, "a", "tab"))


def _find_behind_headers(t: Turn, word: str, header: Callable[[Line], bool], kind: str) -> None:
    """Click the clickable ``word`` if shown; else open the next header not opened yet (the next
    observation shows the section at rest, fully open)."""
    link = t.page.find(lambda e: e.name == word and not header(e) and e.role != "tabpanel")
    if link is not None:
        t.click(link)
        return
    for h in t.page.each(header):
        note = f"opened {kind} {h.name}"
        if h.expanded() is not True and not t.remembers(note):
            t.click(h)
            t.remember(note)
            return
    raise GiveUp(f"{word!r} is in no {kind}")


@solver("click-tab-2")
def click_tab_2(t: Turn) -> None:
    word = _quoted(t, r"find and click on the link")
    _find_behind_headers(t, word, lambda e: re.fullmatch(r"Tab #\d", e.name) is not None, "tab")


@solver("click-collapsible")
def click_collapsible(t: Turn) -> None:
    t.ask(r"Expand the section below and click submit")
    t.click(t.element("the section header", lambda e: e.name.startswith("Section #")))
    t.click(t.button("Submit"))


@solver("click-collapsible-2")
def click_collapsible_2(t: Turn) -> None:
    word = _quoted(t, r"find and click on the link")
    _find_behind_headers(t, word, lambda e: re.fullmatch(r"Section #\d+", e.name) is not None and e.role != "tabpanel",
                         "section")


@solver("navigate-tree")
def navigate_tree(t: Turn) -> None:
    """Click the name if shown; else open the next closed folder by its expander.

    A folder shows as a nameless clickable (the +/- box) right before its name; a
    folder marked ``expanded="false"`` counts too.
    """
    target = _quoted(t, r"Find and click on the folder or file named")
    shown = t.page.find(lambda e: e.name == target and e.tag != "li")
    shown = shown or t.page.find(lambda e: e.name == target)
    if shown is not None:
        t.click(shown)
        return
    elements = t.page.elements
    seen: dict[str, int] = {}  # folders may share a name: the k-th one of that name
    for i, e in enumerate(elements):
        name = elements[i + 1].name if i + 1 < len(elements) else ""
        expander = e.tag == "div" and not e.name and name
        if not (expander or e.expanded() is False):
            continue
        name = name or e.name
        seen[name] = seen.get(name, 0) + 1
        note = f"opened folder {name} #{seen[name]}"
        if not t.remembers(note):
            t.click(e)
            t.remember(note)
            return
    raise GiveUp(f"{target!r} is in no closed folder")


# ---- autocomplete, date and time -----------------------------------------------------------
@solver("use-autocomplete")
def use_autocomplete(t: Turn) -> None:
    """Type the start, click a fitting suggestion, then Submit (the open list covers Submit, so
    Submit comes a step later, when the list has closed)."""
    m = t.ask(r'starts with\s*"\s*(.+?)\s*"(?:\s*and ends with\s*"\s*(.+?)\s*")?')
    start, end = m.group(1), m.group(2) or ""
    submit = t.page.find(lambda e: e.tag == "button" and e.name == "Submit")
    if t.remembers("autocomplete: picked"):
        if submit is None:
            raise GiveUp("the Submit button is still covered after the suggestion was picked")
        t.click(submit)
        return
    box = t.element("the tags field", lambda e: e.tag == "input")
    suggestions = [e for e in t.page.after(box) if e.tag == "li" or e.role in ("option", "menuitem")]
    pick = next((e for e in suggestions if e.name.startswith(start) and e.name.endswith(end)), None)
    if pick is not None:
        t.click(pick)
        t.remember("autocomplete: picked")
    elif not t.remembers("autocomplete: typed"):
        t.type(box, start)
        t.remember("autocomplete: typed")
    else:
        t.wait()  # the suggestions come after the widget's delay


@solver("enter-date")
def enter_date(t: Turn) -> None:
    m = t.ask(r"Enter (\d\d)/(\d\d)/(\d{4}) as the date")
    box = t.element("the date field", lambda e: e.tag == "input" and e.type == "date")
    t.type(box, f"{m.group(3)}-{m.group(1)}-{m.group(2)}")
    t.click(t.button("Submit"))


@solver("enter-time")
def enter_time(t: Turn) -> None:
    m = t.ask(r"Enter (\d{1,2}):(\d\d)\s*(AM|PM) as the time")
    hour = int(m.group(1)) % 12 + (12 if m.group(3) == "PM" else 0)
    box = t.element("the time field", lambda e: e.tag == "input" and e.type == "time")
    t.type(box, f"{hour:02d}:{m.group(2)}")
    t.click(t.button("Submit"))


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


@solver("choose-date-easy")
def choose_date_easy(t: Turn) -> None:
    """Open the date picker, click the day (the picker shows the only allowed month), then Submit.

    The open picker covers the Submit button, so Submit comes in the step after the day.
    """
    m = t.ask(r"Select (\d\d)/(\d\d)/(\d{4}) as the date")
    month, day = _MONTHS[int(m.group(1)) - 1], str(int(m.group(2)))
    if t.remembers("date: day picked"):
        # The picker faded out over Submit; the observation came after it was gone.
        t.click(t.button("Submit"))
    elif f"{month} {m.group(3)}" in t.instruction:
        t.click(t.named(day, "a", "td", "button", "gridcell"))
        t.remember("date: day picked")
    else:
        t.click(t.element("the date field", lambda e: e.tag == "input"))
        t.remember("date: picker opened")


# ---- multi-step forms ----------------------------------------------------------------------
@solver("form-sequence-2")
def form_sequence_2(t: Turn) -> None:
    m = t.ask(r'Check the (1st|2nd|3rd) radio button and enter the number\s*"\s*(-?\d+)\s*"\s*into the '
              r"(1st|2nd|3rd) textbox")
    radios, boxes = t.inputs("radio"), t.text_inputs()
    if len(radios) < 3 or len(boxes) < 3:
        raise GiveUp(f"expected 3 radios and 3 textboxes, found {len(radios)} and {len(boxes)}")
    t.click(radios[_ORDINAL[m.group(1)]])
    t.type(boxes[_ORDINAL[m.group(3)]], m.group(2))
    t.click(t.button("Submit"))


def _email_icon(t: Turn, which: int) -> None:
    """The icons right of an email in the list: trash (0) and star (1), the nameless clickables
    that follow the sender's name (the row itself is listed before its text)."""
    sender = t.ask(r"Find the email by (.+?) and click the").group(1)
    at = next((i for i, line in enumerate(t.page.lines) if not line.is_element and line.text == sender), None)
    if at is None:
        raise GiveUp(f"no email from {sender!r} in the list")
    row = next((line for line in reversed(t.page.lines[:at]) if line.is_element), None)
    icons = []
    for line in t.page.lines[at + 1:]:
        if line.is_element and (line.name or (row is not None and line.tag == row.tag)):
            break  # the next email's row or another control: past this email's icons
        if line.is_element:
            icons.append(line)
        if len(icons) == 2:
            break
    if len(icons) < 2:  # the observation waits for the icons' images, so they are drawn by now
        raise GiveUp(f"the email from {sender!r} shows {len(icons)} of its 2 icons")
    t.click(icons[which])


@solver("email-inbox-delete")
def email_inbox_delete(t: Turn) -> None:
    _email_icon(t, 0)


@solver("email-inbox-important")
def email_inbox_important(t: Turn) -> None:
    _email_icon(t, 1)


# ---- the episode ---------------------------------------------------------------------------
def task_type(task: str) -> str | None:
    m = TASK_URL.search(task)
    return m.group(1) if m else None


def decide(task: str, page: PageView, memory: list[str], last_results: list[str], step: int) -> tuple[list[Call], str]:
    """The calls for this step and the thought to send with them (the policy's memory)."""
    kind = task_type(task)
    starts = memory.count(MEMORY + "start")
    instruction = " ".join(page.text.split())
    reward = _REWARD.search(instruction)
    if starts and reward is not None:
        value = float(reward.group(1))
        return [_done(value > 0, f"reward {value:.2f}")], ""
    cover = page.find(lambda e: e.name == "START")
    if cover is not None and starts < MAX_STARTS:
        # Before the episode, or a START click that did not take: click it (again), as a person would.
        return [("click", {"index": cover.index})], MEMORY + "start"
    if not starts:
        return [_done(False, "policy: no START element in the observation")], ""
    if step > MAX_STEPS:
        return [_done(False, f"policy: no reward after {MAX_STEPS} steps")], ""
    fn = SOLVERS.get(kind or "")
    if fn is None:
        return [_done(False, f"policy: no solver for MiniWoB task {kind!r}")], ""
    turn = Turn(page, instruction, [m.removeprefix(MEMORY) for m in memory], last_results, step)
    try:
        fn(turn)
    except GiveUp as exc:
        return [_done(False, f"policy ({kind}): {exc}")], ""
    if not turn.calls:
        return [_done(False, f"policy ({kind}): nothing to do")], ""
    return turn.calls, MEMORY + (turn.note or "act")


def _done(success: bool, text: str) -> Call:
    return "done", {"text": text, "success": success}
