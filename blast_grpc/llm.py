"""Talking to OpenAI-compatible model endpoints, and counting what it costs.

One ``AsyncOpenAI`` client per endpoint. Every request has a hard deadline of
``settings.llm_timeout_s`` (the whole answer, not just the time between two bytes,
so an endpoint that stalls mid-answer or trickles is cut off too). Timeouts,
connection errors, 408/409/429 and 5xx answers are retried ``settings.llm_max_retries``
times with exponential backoff (``retry-after`` honoured up to ``BACKOFF_MAX_S``);
then ``LLMUnavailable`` says what went wrong and how often it was tried. Other
answers (400, 401, 404, ...) fail at once. So one ``chat`` call takes at most about
``(llm_max_retries + 1) * llm_timeout_s`` plus the backoff. A 200 that is not a chat
completion fails at once too, naming the model and the endpoint: a body that is not JSON
(a web page at the base URL, a proxy's error page), or an answer over
``settings.llm_max_answer_bytes`` (everything a model says travels on in gRPC messages and
events, so it is refused here rather than breaking a channel later). ``UsageMeter`` accumulates
tokens per model so the worker can report them to the coordinator as deltas.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import openai
from openai import AsyncOpenAI
from openai._constants import RAW_RESPONSE_HEADER
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from pydantic import ValidationError

from .config import Config, model_name

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0


class LLMUnavailable(RuntimeError):
    """No endpoint is configured, or the endpoint failed after its retries."""


def _retryable(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _backoff(attempt: int, exc: openai.APIStatusError | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: ``retry-after`` if given, else exponential."""
    if exc is not None:
        raw = exc.response.headers.get("retry-after")
        try:
            return min(max(float(raw), 0.0), BACKOFF_MAX_S) if raw is not None else _backoff(attempt)
        except ValueError:
            pass
    return min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_MAX_S)


@dataclass
class ModelUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    seconds: float = 0.0  # time spent in the timed calls (``calls``)
    # Each timed call's duration: the coordinator's model-latency histogram observes them one by one.
    calls: list[float] = field(default_factory=list)


@dataclass
class UsageMeter:
    """Tokens per model; ``take()`` returns what accrued since the last call."""

    total: dict[str, ModelUsage] = field(default_factory=dict)
    _pending: dict[str, ModelUsage] = field(default_factory=dict)

    def add(self, model: str, prompt: int, completion: int, requests: int = 1, seconds: float | None = None) -> None:
        """Record usage; ``seconds``: how long this one call took (None: not timed here, e.g. the
        extraction pool's calls, which run in other processes and report only their tokens)."""
        for book in (self.total, self._pending):
            u = book.setdefault(model, ModelUsage())
            u.prompt_tokens += prompt
            u.completion_tokens += completion
            u.requests += requests
            if seconds is not None:
                u.seconds += seconds
                if book is self._pending:  # the running total needs no per-call list
                    u.calls.append(seconds)

    def take(self) -> dict[str, ModelUsage]:
        out, self._pending = self._pending, {}
        return out


class LLM:
    """Chat completions against the configured endpoints, with usage recorded."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._clients: dict[tuple[str | None, str], AsyncOpenAI] = {}

    def _client(self, model: str) -> AsyncOpenAI:
        ep = self._config.endpoint_for(model)
        key = (ep.base_url, ep.api_key_env)
        if key not in self._clients:
            import os

            api_key = os.environ.get(ep.api_key_env)
            if ep.base_url is None and not api_key:
                raise LLMUnavailable(self._config.llm_problem() or f"no endpoint for {model}")
            s = self._config.settings
            self._clients[key] = AsyncOpenAI(
                base_url=ep.base_url,
                api_key=api_key or "not-needed",
                timeout=s.llm_timeout_s,
                max_retries=0,  # retried in chat(), where each attempt has a hard deadline
            )
        return self._clients[key]

    def prepare(self, models: list[str]) -> None:
        """Make the clients of ``models`` now (at start-up): the first one costs the import of the
        HTTP stack, which would otherwise land on the first task's first model call."""
        for model in models:
            try:
                self._client(model)
            except LLMUnavailable:
                pass  # said again, with its cause, by the first call that needs it

    async def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        meter: UsageMeter,
        tools: list[dict[str, Any]] | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> ChatCompletionMessage:
        """One chat completion; raises ``LLMUnavailable`` with the cause when it fails for good.

        ``gate`` is awaited first: it holds the call back while the engine is over its cost limits.
        """
        if gate is not None:
            await gate()
        name = model_name(model)
        kwargs: dict[str, Any] = {"model": name, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        client = self._client(model)
        s = self._config.settings
        attempts = s.llm_max_retries + 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                async with asyncio.timeout(s.llm_timeout_s):
                    # What ``chat.completions.with_raw_response.create`` sends, minus its
                    # ``maybe_transform`` of the body: our messages and tools are plain JSON
                    # already, and that walk over the whole history cost more than the rest of
                    # a step's engine time (issue 13's profile).
                    raw = await client.post("/chat/completions", cast_to=ChatCompletion, body=kwargs,
                                            options={"headers": {RAW_RESPONSE_HEADER: "true"}})
                break
            except (TimeoutError, openai.APITimeoutError):
                problem = f"did not answer within settings.llm_timeout_s = {s.llm_timeout_s:g}s"
                wait = _backoff(attempt)
            except openai.APIStatusError as exc:
                problem = f"answered HTTP {exc.status_code}: {exc.message}"
                if not _retryable(exc.status_code):
                    raise LLMUnavailable(f"model {name!r} {problem}") from exc
                wait = _backoff(attempt, exc)
            except openai.APIConnectionError as exc:
                problem, wait = f"cannot be reached at {client.base_url}: {exc}", _backoff(attempt)
            if attempt == attempts:
                tries = "once" if attempts == 1 else f"{attempts} times"
                raise LLMUnavailable(f"model {name!r} {problem} (tried {tries}; settings.llm_max_retries = "
                                     f"{s.llm_max_retries})")
            await asyncio.sleep(wait)
        # The model's latency: the answered attempt only (failed ones and back-off are not the model's speed).
        seconds = time.monotonic() - started
        resp = self._completion(raw, name, str(client.base_url).rstrip("/"))
        if resp.usage is not None:
            meter.add(name, resp.usage.prompt_tokens, resp.usage.completion_tokens, seconds=seconds)
        else:
            meter.add(name, 0, 0, seconds=seconds)
        if not resp.choices:
            raise LLMUnavailable(f"model {name!r} returned no choices")
        return resp.choices[0].message

    def _completion(self, raw: Any, name: str, where: str) -> ChatCompletion:
        """The parsed completion of a 200 answer, or ``LLMUnavailable`` saying what was wrong with it."""
        limit = self._config.settings.llm_max_answer_bytes
        body: bytes = raw.content
        if len(body) > limit:
            raise LLMUnavailable(f"the model {name} at {where} sent a {len(body):,}-byte answer; answers over "
                                 f"settings.llm_max_answer_bytes = {limit:,} bytes are refused")
        kind = raw.headers.get("content-type", "no content-type")
        try:
            resp = raw.parse()
        except (json.JSONDecodeError, ValidationError, UnicodeDecodeError, TypeError):
            resp = None
        if not isinstance(resp, ChatCompletion):
            shown = body[:80].decode("utf-8", "replace")
            raise LLMUnavailable(f"the model {name} at {where} returned a non-JSON body (HTTP {raw.status_code}, "
                                 f"{kind}), not a chat completion: {shown!r}")
        return resp

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
