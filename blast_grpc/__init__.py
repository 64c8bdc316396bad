"""blast-grpc: a serving engine for web-browsing AI, over gRPC.

Public surface: ``Client`` (talk to a running engine), ``Engine`` (start one
locally), ``load_config`` / ``Config`` / ``ConfigError``.
"""

import os as _os

# Workers are spawned with fork+exec; gRPC's fork handlers only add noise there.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    from .client import Client
    from .config import Config, ConfigError, load_config
    from .engine import Engine, EngineStartError

__all__ = ["Client", "Config", "ConfigError", "Engine", "EngineStartError", "load_config"]

# Imported on first use: the package is also imported by every worker, extraction and
# gateway process, which should not pay for grpc and the engine unless they use them.
_LAZY = {"Client": "client", "Config": "config", "ConfigError": "config", "load_config": "config",
         "Engine": "engine", "EngineStartError": "engine"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'blast_grpc' has no attribute {name!r}")
