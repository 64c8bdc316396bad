"""The REST gateway of blast-grpc: OpenAI's Responses and Chat Completions APIs over the engine.

A thin translator: each request becomes a ``TaskSpec`` for ``blast.v1.BlastService``
and each reply is rebuilt from the task's record and events, with the ``openai``
package's own types, so the official SDKs work unchanged. Run it with
``python -m gateway --grpc-address HOST:PORT`` (see ``gateway.main``); build the app
in-process with ``create_app``.
"""

from .app import create_app

__all__ = ["create_app"]
