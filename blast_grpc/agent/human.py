"""The agent's side of people in the loop: the ``ask_human`` tool and pausing between steps.

With ``constraints.require_human_in_loop`` the model is offered ``ask_human(question)``
(last in the fixed tool order). The agent hands the question to a ``Human`` (the worker's
client of the coordinator, ``worker/human_client.py``), which parks the task's browser
context until a person answers; the answer is the tool's result.

A person may also pause a running task (``PauseTask``): the agent notices between steps,
asks with kind ``paused``, and the answer becomes the model's next user message
(``INSTRUCTION_PREFIX`` + the text), before the next observation. Either way a person
who never answers ends the task: the coordinator fails it after
``settings.human_response_timeout_s``.
"""

from __future__ import annotations

from typing import Any, Protocol

from .tools import _fn

QUESTION, PAUSED = "question", "paused"
ASK_HUMAN_TOOL: dict[str, Any] = _fn(
    "ask_human",
    "Ask the person you work for and wait for the answer: a choice only they can make, information "
    "you cannot find, a confirmation before something that cannot be undone. Ask one clear question.",
    {"question": {"type": "string"}},
    ["question"],
)
ANSWER_PREFIX = "The person answered: "
INSTRUCTION_PREFIX = "INSTRUCTION FROM THE PERSON YOU WORK FOR (they paused the task): "


def paused_question(step: int) -> str:
    return f"The task is paused before step {step}. What should it do next?"


class Human(Protocol):
    async def ask(self, kind: str, question: str) -> str:
        """Wait for a person's answer (kind ``question`` or ``paused``); ``HumanUnavailable`` if none can come."""
        ...


class HumanUnavailable(RuntimeError):
    """No answer can come (the engine refused the question): the task cannot go on."""
