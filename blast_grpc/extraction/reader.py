"""The code that runs inside the reader processes: read one chunk from shared memory, ask the mini model.

Each reader is a spawned process of the pool's ``ProcessPoolExecutor``.
``init_reader`` runs once per process: it builds the synchronous ``openai.OpenAI``
client from the config JSON, ignores SIGINT (the pool's owner stops it) and
starts a thread that exits the process if the worker that spawned it dies, so
a killed worker never leaves readers behind. Errors are raised as
``ExtractionError`` (plain, picklable); ``openai`` exceptions do not survive
pickling back to the worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait

import openai

from ..config import Config, model_name
from ..prompts import extract_message
from .blocks import ChunkRef, read_slice
from .errors import ExtractionError


class _Reader:
    """The per-process state ``init_reader`` sets up."""

    def __init__(self, config: Config, prompt: str) -> None:
        mini = config.constraints.llm_model_mini
        endpoint = config.endpoint_for(mini)
        api_key = os.environ.get(endpoint.api_key_env)
        self.model = model_name(mini)
        self.where = endpoint.base_url or "the OpenAI API"
        self.prompt = prompt
        # With no endpoint the reader still starts (the engine runs, and says so once);
        # each read then fails with the reason instead.
        self.problem = ""
        self.client: openai.OpenAI | None = None
        if endpoint.base_url is None and not api_key:
            self.problem = config.llm_problem() or f"no endpoint for the mini model {mini!r}"
            return
        self.client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=api_key or "not-needed",
            timeout=config.settings.llm_timeout_s,
            max_retries=config.settings.llm_max_retries,
        )


_reader: _Reader | None = None


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])  # readable (EOF) once the parent is gone
        os._exit(0)

    threading.Thread(target=watch, name="extraction-parent-watch", daemon=True).start()


def init_reader(config_json: str, prompt: str) -> None:
    """Process initializer: build the model client once (``config_json`` is ``Config.model_dump_json()``)."""
    global _reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    _reader = _Reader(Config.model_validate_json(config_json), prompt)


def ping() -> int:
    """A no-op task that makes the pool spawn its processes; returns the pid."""
    return os.getpid()


def _fail(reader: _Reader, exc: openai.OpenAIError) -> ExtractionError:
    who = f"mini model {reader.model!r} at {reader.where}"
    if isinstance(exc, openai.APIStatusError):
        return ExtractionError(f"{who} answered HTTP {exc.status_code}: {exc.message}")
    if isinstance(exc, openai.APITimeoutError):
        return ExtractionError(f"{who} timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ExtractionError(f"{who} is unreachable: {exc}")
    return ExtractionError(f"{who} failed: {type(exc).__name__}: {exc}")


def read_chunk(ref: ChunkRef, query: str) -> tuple[int, str, int, int]:
    """Read ``ref``'s text and ask the mini model ``query`` about it.

    Returns ``(pid, answer_text, prompt_tokens, completion_tokens)``.
    """
    if _reader is None:
        raise ExtractionError("reader process was not initialised")
    if _reader.client is None:
        raise ExtractionError(_reader.problem)
    try:
        text = read_slice(ref)
    except FileNotFoundError:
        raise ExtractionError(f"shared-memory block {ref.block} is gone (the extraction ended)") from None
    try:
        reply = _reader.client.chat.completions.create(
            model=_reader.model,
            messages=[
                {"role": "system", "content": _reader.prompt},
                {"role": "user", "content": extract_message(query, text)},
            ],
        )
    except openai.OpenAIError as exc:
        raise _fail(_reader, exc) from None
    answer = (reply.choices[0].message.content or "").strip() if reply.choices else ""
    usage = reply.usage
    return os.getpid(), answer, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0
