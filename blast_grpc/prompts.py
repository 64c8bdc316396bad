"""The text the engine sends its model, written once: the agent writes it, the simulated model parses it.

The simulated model (``blast_grpc.sim``) decides only from what the engine sends, so the
agent (``agent/``), the extraction readers (``extraction/``) and the simulated model's parser
(``sim/protocol.py``) and message builders (``sim/messages.py``) all take the headers and the
layouts from here; a change here changes both sides. The formats::

    TASK: <task>                         first user message of an agent request
    COPY: k/N                            (a racing copy only)
    CONTEXT (earlier tasks ...):         (a follow-up only) then "1. Task: ..." / "   Result: ..."

    PLAN FOR TASK: <task> ...            the planner's user message (the task message, prefixed)

    OBSERVATION                          the last user message of each step
    URL: <url>
    TITLE: <title>
    TABS: [0] ... | [1] ...              (more than one tab only)
    NOTE: <note>                         (zero or more)
    SCROLL: <where>                      (when known)
    PAGE:
    <text lines and [n] <tag ...>name lines>
    STEP: n/max

    QUERY: <query>                       an extraction request (no tools), one chunk of a page
    CONTENT:
    <text>

Tool results the simulated model reads back: ``Launched subtask <id>``, ``Subtask results:``
/ ``First subtask result:``, ``Opened <url>``, ``Went back to <url>``; a person's words
(``The person answered: ...`` after ``ask_human``, a paused task's ``INSTRUCTION FROM THE PERSON ...``).
"""

from __future__ import annotations

from typing import Iterable

# --- headers ----------------------------------------------------------------------
TASK = "TASK:"
COPY = "COPY:"
CONTEXT_HEADER = "CONTEXT (earlier tasks in this conversation, oldest first):"
PLAN_PREFIX = "PLAN FOR "  # + the task message: "PLAN FOR TASK: ..."
OBSERVATION = "OBSERVATION"
URL, TITLE, TABS, NOTE, SCROLL = "URL:", "TITLE:", "TABS:", "NOTE:", "SCROLL:"
PAGE = "PAGE:"
STEP = "STEP:"
QUERY = "QUERY:"
CONTENT = "CONTENT:"

# --- tool results the simulated model reads back -------------------------------------
LAUNCHED = "Launched subtask"
SUBTASK_RESULTS = "Subtask results:"
FIRST_SUBTASK_RESULT = "First subtask result:"
OPENED = "Opened"
WENT_BACK = "Went back to"
HUMAN_ANSWER = "The person answered: "  # the ask_human tool's result
HUMAN_INSTRUCTION = "INSTRUCTION FROM THE PERSON YOU WORK FOR (they paused the task): "  # a user message

EXTRACT_PROMPT = (
    "You extract information from web page text. Answer the QUERY using only the CONTENT. "
    "Reply with JSON when the query asks for structured data; say plainly when the content "
    "does not contain the answer."
)


def task_message(task: str, prior: Iterable[tuple[str, str]] = (), copy: int = 0, copies: int = 0) -> str:
    """``TASK: ...``; ``COPY: k/N`` for a racing copy; then earlier turns of the conversation."""
    lines = [f"{TASK} {task}"]
    if copies > 1:
        lines.append(f"{COPY} {copy}/{copies}")
    prior = list(prior)
    if prior:
        lines.append(CONTEXT_HEADER)
        for i, (description, result) in enumerate(prior, 1):
            lines += [f"{i}. Task: {description}", f"   Result: {result}"]
    return "\n".join(lines)


def observation_message(url: str, title: str, page: Iterable[str], step: int, max_steps: int, *,
                        tabs: Iterable[str] = (), notes: Iterable[str] = (), scroll: str = "") -> str:
    """An ``OBSERVATION`` block; ``page`` is its PAGE lines as they are to be shown."""
    tab_list = list(tabs)
    return "\n".join([
        OBSERVATION,
        f"{URL} {url}",
        f"{TITLE} {title}",
        *([f"{TABS} {' | '.join(tab_list)}"] if len(tab_list) > 1 else []),
        *(f"{NOTE} {n}" for n in notes),
        *([f"{SCROLL} {scroll}"] if scroll else []),
        PAGE,
        *page,
        f"{STEP} {step}/{max_steps}",
    ])


def extract_message(query: str, text: str) -> str:
    """The user message of an extraction request (one chunk, or the whole page)."""
    return f"{QUERY} {query}\n{CONTENT}\n{text}"
