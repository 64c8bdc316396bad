"""Talking to OpenAI-compatible model endpoints, and counting what it costs.

One ``AsyncOpenAI`` client per endpoint. The SDK retries 429 and 5xx answers with
exponential backoff (``settings.llm_max_retries`` times, honouring ``retry-after``);
each call has ``settings.llm_timeout_s``. ``UsageMeter`` accumulates tokens per model
so the worker can report them to the coordinator as deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessage

from .config import Config, model_name


class LLMUnavailable(RuntimeError):
    """No endpoint is configured, or the endpoint failed after its retries."""


@dataclass
class ModelUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0


@dataclass
class UsageMeter:
    """Tokens per model; ``take()`` returns what accrued since the last call."""

    total: dict[str, ModelUsage] = field(default_factory=dict)
    _pending: dict[str, ModelUsage] = field(default_factory=dict)

    def add(self, model: str, prompt: int, completion: int, requests: int = 1) -> None:
        for book in (self.total, self._pending):
            u = book.setdefault(model, ModelUsage())
            u.prompt_tokens += prompt
            u.completion_tokens += completion
            u.requests += requests

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
                max_retries=s.llm_max_retries,
            )
        return self._clients[key]

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
        try:
            resp = await self._client(model).chat.completions.create(**kwargs)
        except openai.APIStatusError as exc:
            raise LLMUnavailable(f"model {name!r} answered HTTP {exc.status_code}: {exc.message}") from exc
        except openai.APITimeoutError as exc:
            raise LLMUnavailable(
                f"model {name!r} did not answer within {self._config.settings.llm_timeout_s}s"
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMUnavailable(f"cannot reach the endpoint for model {name!r}: {exc}") from exc
        if resp.usage is not None:
            meter.add(name, resp.usage.prompt_tokens, resp.usage.completion_tokens)
        else:
            meter.add(name, 0, 0)
        if not resp.choices:
            raise LLMUnavailable(f"model {name!r} returned no choices")
        return resp.choices[0].message

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
